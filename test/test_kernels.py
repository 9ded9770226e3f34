"""Pillar statistics, image preparation, the camera sampling grid and decoding give what the straightforward numpy
/ torch code gives, on real frames and on random inputs.

The references below are the implementations the compiled ones replaced, kept here as the specification."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.data.classes import DETECTION_CLASSES
from fusion_prune_ros.data.frame import load_frame
from fusion_prune_ros.detections import Detections
from fusion_prune_ros.model.decode import DecodeConfig, circle_nms, decode
from fusion_prune_ros.model.detector import FusionDetector
from fusion_prune_ros.model.pillars import lidar_bev
from fusion_prune_ros.model.preprocess import (ImageTransform, camera_grid, camera_images, decode_reduction,
                                               normalise_images, normalised_planes)

CONFIGS = Path(__file__).parents[1] / "config" / "detector"


def reference_lidar_bev(points, grid):
    n = grid.lidar_cells
    out = np.zeros((14, n * n), np.float32)
    if len(points):
        pts = points[np.isfinite(points).all(1)]
        with np.errstate(invalid="ignore", over="ignore"):  # far points overflow, and are dropped below
            ix = np.floor((pts[:, 0] + grid.bev_range) / grid.lidar_cell).astype(np.int64)
            iy = np.floor((pts[:, 1] + grid.bev_range) / grid.lidar_cell).astype(np.int64)
        zn = (pts[:, 2] - grid.z_min) / (grid.z_max - grid.z_min)
        keep = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n) & (zn >= 0) & (zn < 1)
        pts, cell, zn = pts[keep], (iy * n + ix)[keep], zn[keep]
        if len(pts):
            size = n * n
            count = np.bincount(cell, minlength=size).astype(np.float32)
            sl = np.minimum((zn * grid.height_slices).astype(np.int64), grid.height_slices - 1)
            per_slice = np.bincount(sl * size + cell, minlength=grid.height_slices * size).astype(np.float32)
            out[:grid.height_slices] = np.log1p(per_slice.reshape(grid.height_slices, size))
            np.maximum.at(out[8], cell, zn.astype(np.float32))
            nz = np.maximum(count, 1.0)
            intensity = pts[:, 3] / 100.0
            out[9] = np.bincount(cell, intensity, size) / nz
            np.maximum.at(out[10], cell, intensity.astype(np.float32))
            out[11] = np.bincount(cell, pts[:, 4] / 0.5, size) / nz
            out[12] = np.log1p(count)
            out[13] = np.bincount(cell, (pts[:, 4] < 1e-3).astype(np.float64), size) / nz
    return out.reshape(14, n, n)


def reference_camera_images(images, cfg):
    tf = ImageTransform.for_source(images.shape[2], images.shape[1], cfg)
    size = (cfg.width, int(round(images.shape[1] * tf.scale)))
    out = np.zeros((len(images), cfg.height, cfg.width, 3), np.uint8)
    for i, image in enumerate(images):
        crop = cv2.resize(image, size, interpolation=cv2.INTER_AREA)[tf.crop_top:tf.crop_top + cfg.height]
        out[i, :len(crop)] = crop
    return out


def reference_camera_grid(intrinsics, cam_from_lidar, present, src_size, grid, cam, flip_x=False, flip_y=False):
    f = grid.fused_cells
    heights = np.asarray(grid.lift_heights, np.float64)
    centres = -grid.bev_range + (np.arange(f) + 0.5) * (2 * grid.bev_range / f)
    yy, xx, zz = np.meshgrid(centres, centres, heights, indexing="ij")
    pts = np.stack([xx, yy, zz, np.ones_like(xx)], -1).reshape(-1, 4)
    pts[:, 0] *= -1 if flip_x else 1
    pts[:, 1] *= -1 if flip_y else 1
    tf = ImageTransform.for_source(src_size[0], src_size[1], cam)
    best, gx, gy = np.full(len(pts), np.inf), np.full(len(pts), -2.0), np.full(len(pts), -2.0)
    margin = cam.feature_stride / 2
    for c in range(len(intrinsics)):
        if not present[c]:
            continue
        p = pts @ cam_from_lidar[c].T.astype(np.float64)
        depth = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (intrinsics[c][0, 0] * p[:, 0] / depth + intrinsics[c][0, 2]) * tf.scale
            v = (intrinsics[c][1, 1] * p[:, 1] / depth + intrinsics[c][1, 2]) * tf.scale - tf.crop_top
        ok = (depth > 0.5) & (u >= 0) & (u < tf.width) & (v >= margin) & (v < tf.height - margin)
        centrality = np.abs(u / tf.width - 0.5)
        better = ok & (centrality < best)
        best[better] = centrality[better]
        gx[better] = u[better] / tf.width * 2 - 1
        gy[better] = (c * tf.height + v[better]) / (len(intrinsics) * tf.height) * 2 - 1
    return np.stack([gx, gy], -1).reshape(f, f * len(heights), 2).astype(np.float32)


def reference_numpy_decode(heatmap_logits, regression, grid, cfg):
    """The numpy decoding over the whole peak map (a 3x3 max-pool of the sigmoid)."""
    heat = 1.0 / (1.0 + np.exp(-heatmap_logits[0]))
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    _, h, w = heat.shape
    pooled = heat
    for dy in range(3):
        for dx in range(3):
            pooled = np.maximum(pooled, padded[:, dy:dy + h, dx:dx + w])
    flat = np.where(pooled == heat, heat, 0).ravel()
    thresholds = cfg.thresholds()
    index = np.flatnonzero(flat >= thresholds.min())
    index = index[np.argsort(-flat[index], kind="stable")[:cfg.top_k]]
    label, cell = np.divmod(index, h * w)
    keep = flat[index] >= thresholds[label]
    index, label, cell = index[keep], label[keep], cell[keep]
    iy, ix = np.divmod(cell, w)
    r = regression[0][:, iy, ix]
    boxes = np.stack([(ix.astype(np.float32) + r[0]) * np.float32(grid.head_cell) - np.float32(grid.bev_range),
                      (iy.astype(np.float32) + r[1]) * np.float32(grid.head_cell) - np.float32(grid.bev_range),
                      r[2], np.exp(r[3]), np.exp(r[4]), np.exp(r[5]), np.arctan2(r[6], r[7]), r[8], r[9]], 1)
    det = Detections(boxes.astype(np.float32), flat[index].astype(np.float32), label.astype(np.int64))
    return circle_nms(det) if cfg.circle_nms else det


def reference_decode(heatmap_logits, regression, grid, cfg):
    heat = torch.sigmoid(heatmap_logits.float())
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    b, c, h, w = peaks.shape
    scores, index = peaks.view(b, -1).topk(min(cfg.top_k, c * h * w))
    thresholds = torch.tensor([cfg.class_thresholds.get(n, cfg.score_threshold) for n in DETECTION_CLASSES])
    out = []
    for i in range(b):
        label, cell = index[i] // (h * w), index[i] % (h * w)
        keep = scores[i] >= thresholds[label]
        label, cell, score = label[keep], cell[keep], scores[i][keep]
        iy, ix = cell // w, cell % w
        r = regression[i][:, iy, ix].float()
        boxes = torch.stack([
            (ix + r[0]) * grid.head_cell - grid.bev_range, (iy + r[1]) * grid.head_cell - grid.bev_range, r[2],
            r[3].exp(), r[4].exp(), r[5].exp(), torch.atan2(r[6], r[7]), r[8], r[9]], 1)
        det = Detections(boxes.numpy().astype(np.float32), score.numpy().astype(np.float32),
                         label.numpy().astype(np.int64))
        out.append(circle_nms(det) if cfg.circle_nms else det)
    return out


@pytest.fixture(scope="module", params=["small", "base"])
def cfg(request):
    return load_yaml(DetectorConfig, CONFIGS / f"{request.param}.yaml")


@pytest.fixture(scope="module")
def frames(tiny_nusc, cfg):
    return [load_frame(tiny_nusc, s["token"], cfg.grid.n_sweeps) for s in tiny_nusc.sample[::4]]


def test_pillar_statistics_equal_the_numpy_reference_on_real_frames(cfg, frames):
    for frame in frames:
        assert len(frame.points) > 1000
        np.testing.assert_array_equal(lidar_bev(frame.points, cfg.grid), reference_lidar_bev(frame.points, cfg.grid))


def test_pillar_statistics_on_edge_points(cfg):
    g = cfg.grid
    rng = np.random.default_rng(1)
    pts = np.c_[rng.uniform(-60, 60, (20000, 2)), rng.uniform(-2.5, 2.0, 20000), rng.uniform(-5, 255, 20000),
                rng.choice([0.0, 0.0005, 0.05, 0.3], 20000)].astype(np.float32)
    edges = np.array([-g.bev_range, g.bev_range, np.nextafter(np.float32(g.bev_range), np.float32(0)), 0.0])
    pts[:400, 0] = rng.choice(edges, 400)
    pts[400:800, 2] = rng.choice([g.z_min, g.z_max, np.nextafter(np.float32(g.z_max), np.float32(0))], 400)
    pts[800:810, rng.integers(0, 5, 10)] = np.nan
    pts[810:820, 1] = np.inf
    pts[820:830, 0] = 3e38
    np.testing.assert_array_equal(lidar_bev(pts, g), reference_lidar_bev(pts, g))
    empty = np.zeros((0, 5), np.float32)
    np.testing.assert_array_equal(lidar_bev(empty, g), reference_lidar_bev(empty, g))


def test_pillar_statistics_with_crowded_cells(cfg):
    """Thousands of points in a few cells: every count's log comes from the per-count table."""
    rng = np.random.default_rng(6)
    centres = rng.uniform(-40, 40, (20, 2))
    xy = centres[rng.integers(0, 20, 50000)] + rng.uniform(-0.1, 0.1, (50000, 2))
    pts = np.c_[xy, rng.uniform(-2.1, 1.7, 50000), rng.uniform(0, 100, 50000),
                rng.choice([0.0, 0.05], 50000)].astype(np.float32)
    np.testing.assert_array_equal(lidar_bev(pts, cfg.grid), reference_lidar_bev(pts, cfg.grid))


def test_camera_images_and_planes_equal_the_references(cfg, frames):
    """Bit for bit: the resize and crop, and the normalisation through lookup tables."""
    rng = np.random.default_rng(3)
    short = np.full((6, 40, 400, 3), 77, np.uint8)  # shorter than the crop: rows past the image are black
    random = [rng.integers(0, 256, (6, h, w, 3), dtype=np.uint8) for h, w in ((225, 400), (90, 160), (37, 301))]
    for images in [frame.images for frame in frames] + [short] + random:
        network = camera_images(images, cfg.camera)
        np.testing.assert_array_equal(network, reference_camera_images(images, cfg.camera))
        planes = np.stack([normalised_planes(image) for image in network])
        np.testing.assert_array_equal(planes, normalise_images(network))


def _random_calibration(rng, n_cam=6):
    """Cameras around the vehicle, looking outwards with a random tilt and offset, and some missing."""
    k, t = [], []
    for c in range(n_cam):
        yaw = 2 * np.pi * c / n_cam + rng.uniform(-0.2, 0.2)
        forward = np.array([np.cos(yaw), np.sin(yaw), rng.uniform(-0.1, 0.1)])
        right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
        down = np.cross(forward, right)
        rot = np.stack([right, down / np.linalg.norm(down), forward / np.linalg.norm(forward)])
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = rot, -rot @ rng.uniform(-1, 1, 3)
        k.append([[rng.uniform(150, 400), 0, rng.uniform(150, 250)], [0, rng.uniform(150, 400), rng.uniform(80, 140)],
                  [0, 0, 1]])
        t.append(m)
    return np.array(k, np.float32), np.array(t, np.float32), rng.random(n_cam) > 0.2


def test_camera_grid_equals_the_numpy_reference(cfg, frames):
    """Within 1e-6 and with the same cells unseen; the cameras' bands lie far more than 1e-6 apart in gy, so every
    cell also samples the same camera."""
    rng = np.random.default_rng(4)
    cases = [(f.intrinsics, f.cam_from_lidar, f.camera_present, (f.images.shape[2], f.images.shape[1]), False, False)
             for f in frames]
    cases += [(*_random_calibration(rng), (400, 225), bool(rng.random() < 0.5), bool(rng.random() < 0.5))
              for _ in range(6)]
    for k, t, present, src, flip_x, flip_y in cases:
        got = camera_grid(k, t, present, src, cfg.grid, cfg.camera, flip_x, flip_y)
        ref = reference_camera_grid(k, t, present, src, cfg.grid, cfg.camera, flip_x, flip_y)
        np.testing.assert_array_equal(got == -2, ref == -2)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
        assert (got > -2).mean() > 0.2


def test_decode_reduction_keeps_the_network_width(cfg):
    width = cfg.camera.width
    for src in (width - 1, width, 2 * width - 1, 2 * width, 1600, 4000, 8 * width, 20 * width):
        r = decode_reduction(src, cfg.camera)
        assert r == 1 or (r in (2, 4, 8) and -(-src // r) >= width)
        assert r == 8 or -(-src // (2 * r)) < width  # the next factor would lose pixels the network uses


def _assert_same_detections(got, ref):
    """Same detections: equal labels, scores within float32 rounding of the sigmoid, boxes within 1e-4."""
    assert len(got) == len(ref)
    key = lambda d: np.lexsort((d.boxes[:, 1], d.boxes[:, 0], d.labels, -d.scores))  # noqa: E731
    a, b = key(got), key(ref)
    np.testing.assert_array_equal(got.labels[a], ref.labels[b])
    np.testing.assert_allclose(got.scores[a], ref.scores[b], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.boxes[a], ref.boxes[b], rtol=0, atol=1e-4)


@pytest.mark.parametrize("threshold, top_k", [(0.05, 300), (0.3, 300), (0.05, 40)])
def test_decode_equals_the_torch_reference_on_real_frames(cfg, frames, threshold, top_k):
    torch.manual_seed(0)
    model = FusionDetector(cfg).eval()
    dcfg = DecodeConfig(top_k=top_k, score_threshold=threshold, class_thresholds={"pedestrian": threshold + 0.1})
    decoded = 0
    rng = np.random.default_rng(0)
    for frame in frames:
        src = (frame.images.shape[2], frame.images.shape[1])
        inputs = (torch.from_numpy(lidar_bev(frame.points, cfg.grid))[None],
                  torch.from_numpy(np.ascontiguousarray(normalise_images(camera_images(frame.images, cfg.camera)))),
                  torch.from_numpy(camera_grid(frame.intrinsics, frame.cam_from_lidar, frame.camera_present, src,
                                               cfg.grid, cfg.camera))[None], torch.ones(1, 2))
        with torch.no_grad():
            heat, reg = model(*inputs)
        # An untrained head's logits sit in a narrow band: spread them so that the thresholds bite. Over empty ground
        # its output is flat, and top-K and NMS may order equal scores either way: a little noise makes the order
        # unique.
        heat = (heat - heat.mean()) / heat.std() + torch.from_numpy(rng.normal(0, 1e-3, heat.shape).astype(np.float32))
        (got,), (ref,) = decode(heat.numpy(), reg.numpy(), cfg.grid, dcfg), reference_decode(heat, reg, cfg.grid, dcfg)
        _assert_same_detections(got, ref)
        decoded += len(got)
    assert decoded > 0


def test_decode_equals_the_torch_reference_on_peaked_maps(cfg):
    """Sparse Gaussian peaks over a low background, as a trained head gives, batch of two."""
    n = cfg.grid.head_cells
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:n, :n]
    heat = np.full((2, 10, n, n), -6.0, np.float32) + rng.normal(0, 0.3, (2, 10, n, n)).astype(np.float32)
    for b, c, y, x, a in zip(rng.integers(0, 2, 200), rng.integers(0, 10, 200), rng.integers(0, n, 200),
                             rng.integers(0, n, 200), rng.uniform(3, 9, 200)):
        heat[b, c] += (a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)).astype(np.float32)
    reg = rng.normal(0, 1, (2, 10, n, n)).astype(np.float32)
    dcfg = DecodeConfig()
    got = decode(heat, reg, cfg.grid, dcfg)
    ref = reference_decode(torch.from_numpy(heat), torch.from_numpy(reg), cfg.grid, dcfg)
    assert len(got) == 2 and all(len(d) > 10 for d in got)
    for g, r in zip(got, ref):
        _assert_same_detections(g, r)


def assert_same_boxes(got, ref):
    """Equal boxes, but for the yaw (column 6) within an ulp: numpy's float32 arctan2 may round the same inputs one
    ulp apart in different calls (seen between processes, and between calls in one process)."""
    yaw = 6
    np.testing.assert_array_equal(np.delete(got, yaw, 1), np.delete(ref, yaw, 1))
    np.testing.assert_allclose(got[:, yaw], ref[:, yaw], rtol=0, atol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.3])
def test_decode_equals_the_numpy_reference_exactly(cfg, threshold):
    """The same detections in the same order as decoding over the whole peak map, also with plateaus (equal
    neighbours, and unequal logits whose sigmoids round to the same value), NaN logits and a threshold of 0 (every
    cell a candidate): labels, scores and boxes bit for bit but for the yaw (`assert_same_boxes`)."""
    n = cfg.grid.head_cells
    rng = np.random.default_rng(5)
    heat = rng.normal(-3, 1.5, (1, 10, n, n)).astype(np.float32)
    heat[0, 1, 5:8, 5:8] = 4.0
    heat[0, 2, :2, :2] = 6.0
    heat[0, 3, 10, 10] = np.nan
    heat[0, 3, 11, 11] = 7.0
    # Logits far enough apart whose sigmoids round to the same float32 (1.0): both are peaks of the heat.
    heat[0, 4, 20, 20], heat[0, 4, 20, 21] = 20.0, 25.0
    heat[0, 5, 30, 30], heat[0, 5, 31, 30] = 17.5, 17.25
    reg = rng.normal(0, 1, (1, 10, n, n)).astype(np.float32)
    dcfg = DecodeConfig(score_threshold=threshold, class_thresholds={"car": threshold + 0.2})
    (got,), ref = decode(heat, reg, cfg.grid, dcfg), reference_numpy_decode(heat, reg, cfg.grid, dcfg)
    assert len(got) > 0
    np.testing.assert_array_equal(got.labels, ref.labels)
    np.testing.assert_array_equal(got.scores, ref.scores)
    assert_same_boxes(got.boxes, ref.boxes)
