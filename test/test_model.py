"""The detector: shapes, single-modality graphs, targets, decoding, preprocessing geometry, export parity."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.data.frame import load_frame
from fusion_prune_ros.export.onnx_export import export_all, parity
from fusion_prune_ros.model.decode import DecodeConfig, decode
from fusion_prune_ros.model.detector import FusionDetector, SingleModality
from fusion_prune_ros.model.flops import count_flops, example_inputs
from fusion_prune_ros.model.pillars import lidar_bev
from fusion_prune_ros.model.preprocess import ImageTransform, camera_grid, camera_images
from fusion_prune_ros.model.targets import build_targets, flip_boxes

SMALL = Path(__file__).parents[1] / "config" / "detector" / "small.yaml"


@pytest.fixture(scope="module")
def cfg():
    return load_yaml(DetectorConfig, SMALL)


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    m = FusionDetector(cfg).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that equalities below are not vacuous
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
    return m


def _random_inputs(cfg, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(t.shape, generator=gen) * 2 - 1 for t in example_inputs(cfg)["fused"]]


def test_output_shapes(cfg, model):
    lidar, images, grid, _ = _random_inputs(cfg)
    heat, reg = model(lidar, images, grid, torch.ones(1, 2))
    n = cfg.grid.head_cells
    assert heat.shape == (1, 10, n, n) and reg.shape == (1, 10, n, n)


@pytest.mark.parametrize("modality, presence", [("lidar", (1.0, 0.0)), ("camera", (0.0, 1.0))])
def test_single_modality_graph_equals_fused_with_other_sensor_missing(cfg, model, modality, presence):
    lidar, images, grid, _ = _random_inputs(cfg)
    with torch.no_grad():
        fused = model(lidar, images, grid, torch.tensor([presence]))
        single = SingleModality(model, modality)(*((lidar,) if modality == "lidar" else (images, grid)))
    for a, b in zip(fused, single):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_missing_modality_changes_the_output(cfg, model):
    inputs = _random_inputs(cfg)
    with torch.no_grad():
        full = model(*inputs[:3], torch.ones(1, 2))[0]
        no_cam = model(*inputs[:3], torch.tensor([[1.0, 0.0]]))[0]
    assert (full - no_cam).abs().max() > 1e-3


def _boxes():
    return np.array([[10.3, -4.6, -1.0, 1.9, 4.5, 1.7, 0.3, 2.0, -1.0],
                     [-20.1, 15.7, -1.2, 0.7, 0.7, 1.8, -2.0, np.nan, np.nan],
                     [3.9, 30.2, -0.5, 2.5, 0.5, 1.0, 1.5, 0.0, 0.0]], np.float32)


def test_targets_peak_at_centres(cfg):
    boxes, labels = _boxes(), np.array([0, 8, 5])
    heat, reg, reg_mask, vel_mask = build_targets(boxes, labels, cfg.grid)
    assert reg_mask.sum() == 3 and vel_mask.sum() == 2
    for box, label in zip(boxes, labels):
        ix = int((box[0] + cfg.grid.bev_range) // cfg.grid.head_cell)
        iy = int((box[1] + cfg.grid.bev_range) // cfg.grid.head_cell)
        assert heat[label, iy, ix] == 1.0 and reg_mask[iy, ix] == 1.0
        np.testing.assert_allclose(np.exp(reg[3:6, iy, ix]), box[3:6], rtol=1e-5)
    assert heat.max() == 1.0 and (heat == 1.0).sum() == 3


def test_decoder_round_trip(cfg):
    """targets -> (perfect) head outputs -> decode -> the same boxes."""
    boxes, labels = _boxes(), np.array([0, 8, 5])
    heat, reg, _, _ = build_targets(boxes, labels, cfg.grid)
    logits = np.where(heat == 1.0, 10.0, -10.0).astype(np.float32)[None]
    (det,) = decode(logits, reg[None], cfg.grid, DecodeConfig(score_threshold=0.5))
    order = np.argsort(det.boxes[:, 0])
    expected = boxes[np.argsort(boxes[:, 0])]
    expected[:, 7:9] = np.nan_to_num(expected[:, 7:9])
    expected[:, 6] = np.arctan2(np.sin(expected[:, 6]), np.cos(expected[:, 6]))
    np.testing.assert_allclose(det.boxes[order], expected, atol=1e-4)
    assert sorted(det.labels.tolist()) == sorted(labels.tolist())


def test_flip_is_an_involution_and_mirrors_yaw():
    boxes = _boxes()
    for fx, fy in [(True, False), (False, True), (True, True)]:
        twice = flip_boxes(flip_boxes(boxes, fx, fy), fx, fy)
        np.testing.assert_allclose(np.cos(twice[:, 6]), np.cos(boxes[:, 6]), atol=1e-6)
        np.testing.assert_allclose(twice[:, [0, 1, 7, 8]], boxes[:, [0, 1, 7, 8]])
    flipped = flip_boxes(boxes, True, False)
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], 1)
    heading_f = np.stack([np.cos(flipped[:, 6]), np.sin(flipped[:, 6])], 1)
    np.testing.assert_allclose(heading_f, heading * [-1, 1], atol=1e-6)


def test_lidar_bev_counts_points(cfg):
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-60, 60, (5000, 2)), rng.uniform(-2.1, 1.7, 5000), rng.uniform(0, 100, 5000),
                rng.choice([0.0, 0.05], 5000)].astype(np.float32)
    pts[:10] = np.nan  # NaN points are dropped, not binned
    bev = lidar_bev(pts, cfg.grid)
    inside = (np.abs(pts[10:, :2]) < cfg.grid.bev_range).all(1)
    assert bev.shape == (14, cfg.grid.lidar_cells, cfg.grid.lidar_cells)
    assert np.expm1(bev[12]).sum() == pytest.approx(inside.sum(), rel=1e-4)
    # A point at (x, y) lands in row y, column x.
    one = lidar_bev(np.array([[30.0, -40.0, 0.0, 50.0, 0.0]], np.float32), cfg.grid)
    iy, ix = np.argwhere(one[12] > 0)[0]
    cell = cfg.grid.lidar_cell
    assert -51.2 + ix * cell <= 30.0 < -51.2 + (ix + 1) * cell and -51.2 + iy * cell <= -40.0 < -51.2 + (iy + 1) * cell


def test_camera_grid_samples_where_the_point_projects(cfg, tiny_nusc):
    """A 3D point at a grid cell's centre appears in the image at the location the grid samples."""
    frame = load_frame(tiny_nusc, tiny_nusc.sample[0]["token"], 1)
    src = (frame.images.shape[2], frame.images.shape[1])
    grid = camera_grid(frame.intrinsics, frame.cam_from_lidar, frame.camera_present, src, cfg.grid, cfg.camera)
    f, z = cfg.grid.fused_cells, len(cfg.grid.lift_heights)
    g = grid.reshape(f, f, z, 2)
    valid = (g[..., 0] > -1.5)
    assert valid.mean() > 0.5  # most of the BEV is seen by some camera
    tf = ImageTransform.for_source(*src, cfg.camera)
    cell = 2 * cfg.grid.bev_range / f
    checked = 0
    for iy, ix, k in np.argwhere(valid)[::97]:
        p = np.array([-cfg.grid.bev_range + (ix + 0.5) * cell, -cfg.grid.bev_range + (iy + 0.5) * cell,
                      cfg.grid.lift_heights[k], 1.0])
        cam = int((g[iy, ix, k, 1] + 1) / 2 * 6)
        q = frame.cam_from_lidar[cam] @ p
        u = (frame.intrinsics[cam][0, 0] * q[0] / q[2] + frame.intrinsics[cam][0, 2]) * tf.scale
        assert q[2] > 0 and (g[iy, ix, k, 0] + 1) / 2 * tf.width == pytest.approx(u, abs=1e-2)
        checked += 1
    assert checked > 3
    # Mirroring the BEV mirrors the grid: flipped cell (iy, F-1-ix) samples where cell (iy, ix) did.
    flipped = camera_grid(frame.intrinsics, frame.cam_from_lidar, frame.camera_present, src, cfg.grid,
                          cfg.camera, flip_x=True).reshape(f, f, z, 2)
    np.testing.assert_allclose(flipped[:, ::-1], g, atol=1e-5)
    # A missing camera is never sampled.
    present = frame.camera_present.copy()
    present[0] = False
    g0 = camera_grid(frame.intrinsics, frame.cam_from_lidar, present, src, cfg.grid, cfg.camera).reshape(-1, 2)
    band = (g0[:, 1] + 1) / 2 * 6
    assert not ((band >= 0) & (band < 1) & (g0[:, 0] > -1.5)).any()


def test_camera_images_keep_the_road(cfg):
    images = np.zeros((6, 225, 400, 3), np.uint8)
    images[:, 150:] = 200
    out = camera_images(images, cfg.camera)
    assert out.shape == (6, cfg.camera.height, cfg.camera.width, 3) and out[:, -1].mean() > 150


def test_onnx_parity_for_all_graphs(cfg, model, tmp_path):
    for mode, path in export_all(model, cfg, tmp_path).items():
        assert parity(model, cfg, mode, path) < 1e-3, mode


def test_flops_are_counted(cfg, model):
    flops = count_flops(model, cfg)
    assert flops["fused"]["gflops"] > flops["lidar"]["gflops"] > 0
    assert flops["fused"]["gflops"] == pytest.approx(2 * flops["fused"]["gmacs"], abs=2e-3)


def test_base_config_fits_the_cpu_budget():
    cfg = load_yaml(DetectorConfig, SMALL.parent / "base.yaml")
    flops = count_flops(FusionDetector(cfg), cfg)
    assert 1.0 <= flops["params_m"] <= 4.0
    assert 1.0 <= flops["fused"]["gflops"] <= 3.5


def test_circle_nms_is_the_greedy_per_class_rule():
    """The compiled NMS keeps exactly what the textbook greedy loop keeps: a box survives when no higher-scoring
    kept box of its class lies within the class radius."""
    from fusion_prune_ros.data.classes import DETECTION_CLASSES
    from fusion_prune_ros.detections import Detections
    from fusion_prune_ros.model.decode import NMS_RADIUS, circle_nms

    rng = np.random.default_rng(3)
    n = 300
    boxes = np.zeros((n, 9), np.float32)
    boxes[:, :2] = rng.uniform(-6, 6, (n, 2))
    det = Detections(boxes, rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, 10, n))
    kept = []
    for i in np.argsort(-det.scores, kind="stable"):
        r = NMS_RADIUS[DETECTION_CLASSES[det.labels[i]]]
        if all(det.labels[j] != det.labels[i] or np.sum((boxes[j, :2] - boxes[i, :2]) ** 2) > r ** 2 for j in kept):
            kept.append(i)
    out = circle_nms(det)
    assert sorted(out.scores.tolist()) == sorted(det.scores[kept].tolist())
    assert 0 < len(out) < n


def test_sub_cell_maps_decode_as_their_pixel_shuffle(cfg):
    """The decoder reads sub-cell maps through `HeadLayout`: the same detections, in the same order, as decoding the
    maps torch's pixel shuffle makes of them; maps of neither layout are refused."""
    from fusion_prune_ros.model.decode import HeadLayout, regression_at

    shuffle = torch.nn.functional.pixel_shuffle
    n = cfg.grid.head_cells
    rng = np.random.default_rng(0)
    heat = torch.from_numpy(rng.normal(-4, 2, (2, 40, n // 2, n // 2)).astype(np.float32))
    reg = torch.from_numpy(rng.normal(0, 1, (2, 40, n // 2, n // 2)).astype(np.float32))
    shuffled = decode(shuffle(heat, 2).numpy(), shuffle(reg, 2).numpy(), cfg.grid, DecodeConfig())
    for got, ref in zip(decode(heat.numpy(), reg.numpy(), cfg.grid, DecodeConfig()), shuffled):
        assert len(ref) > 20
        np.testing.assert_array_equal(got.labels, ref.labels)
        np.testing.assert_array_equal(got.scores, ref.scores)
        np.testing.assert_array_equal(got.boxes, ref.boxes)
    layout = HeadLayout.of((1, 40, n // 2, n // 2), cfg.grid)
    y, x = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    every_cell = regression_at(heat[0].numpy(), layout, y, x)
    np.testing.assert_array_equal(shuffle(heat[:1], 2).numpy().reshape(10, -1), every_cell)
    with pytest.raises(ValueError, match="fit neither"):
        decode(np.zeros((1, 10, n // 2, n // 3), np.float32), np.zeros((1, 10, n // 2, n // 3), np.float32), cfg.grid)


def test_a_detector_leaving_the_shuffle_to_the_decoder_exports_sub_cell_maps_with_the_same_detections(cfg, tmp_path):
    """The graphs end with the head's 1x1 convs (no DepthToSpace); decoded, their outputs give the torch model's
    detections, and the torch model itself (training, evaluation, pruning) still gives head-grid maps."""
    import copy

    import onnx

    from fusion_prune_ros.export.onnx_export import onnx_session
    from fusion_prune_ros.model.graph_io import INPUT_NAMES

    sub_cfg = copy.deepcopy(cfg)
    sub_cfg.model.subcells_to_decoder = True
    torch.manual_seed(0)
    m = FusionDetector(sub_cfg).eval()
    inputs = _random_inputs(sub_cfg)
    inputs[3] = torch.ones_like(inputs[3])
    with torch.no_grad():
        heat, reg = m(*inputs)
    assert heat.shape[-1] == cfg.grid.head_cells
    paths = export_all(m, sub_cfg, tmp_path)
    for mode, path in paths.items():
        assert parity(m, sub_cfg, mode, path) < 1e-3, mode
        assert "DepthToSpace" not in {node.op_type for node in onnx.load(str(path)).graph.node}, mode
    got = onnx_session(paths["fused"]).run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES["fused"], inputs)})
    assert got[0].shape[1] == 40 and got[0].shape[-1] == cfg.grid.head_cells // 2
    dc = DecodeConfig(score_threshold=0.05)
    (from_graph,), (from_torch,) = decode(*got, sub_cfg.grid, dc), decode(heat.numpy(), reg.numpy(), sub_cfg.grid, dc)
    assert len(from_torch) > 0
    np.testing.assert_array_equal(from_graph.labels, from_torch.labels)
    np.testing.assert_allclose(from_graph.scores, from_torch.scores, atol=1e-4)
    np.testing.assert_allclose(from_graph.boxes, from_torch.boxes, atol=1e-3)
