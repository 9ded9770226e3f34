"""FrameInputs -> the network's input tensors. The same code serves training, evaluation, bag replay and the node.

- `lidar_bev`: the pillar pseudo-image. Points are binned into 0.4 m pillars and each pillar is described by
  statistics (per-height-slice occupancy, max height, intensity, time lag, count): PIXOR-style hand-made pillar
  features rather than a learned PointNet, because on a CPU the scatter of a learned per-point MLP costs more
  than the whole LiDAR backbone, and a dense input keeps the exported network free of dynamic shapes.
- `camera_images`: resize to the network width, crop the configured rows, normalise.
- `camera_grid`: for every fused-grid cell x lift height, where to sample the stacked image features: the camera
  that sees the point nearest its image centre, among the cameras present. Computed from the calibration here,
  outside the network, so the exported network serves any calibration and any subset of cameras.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from ..config import CameraInputConfig, GridConfig

LIDAR_FEATURES = 14  # channels of the pillar pseudo-image (`lidar_bev`)
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
INTENSITY_SCALE = 100.0
MAX_TIME_LAG = 0.5
KEY_SWEEP_LAG = 1e-3  # points with a smaller time lag are from the key sweep


def lidar_bev(points: np.ndarray, grid: GridConfig) -> np.ndarray:
    """(N, 5) float32 points (x, y, z, intensity, time lag) -> (14, N, N) float32 pillar features.

    Channels: 0..7 log(1 + count) per height slice; 8 max height (0..1 over [z_min, z_max]); 9 mean and 10 max
    intensity (/100); 11 mean time lag (/0.5 s); 12 log(1 + count); 13 fraction of points from the key sweep.
    Rows index y, columns index x, both increasing, cell i centred at -range + (i + 0.5) * cell.

    One compiled pass over the points accumulates every statistic (a numpy pass per statistic, with scatter-max
    calls, costs several times more); its arithmetic is numpy's on float32 points (float32, sums in float64), so
    the features are exactly those numpy computes. Points with a non-finite field are skipped.
    """
    n = grid.lidar_cells
    out = np.zeros((LIDAR_FEATURES, n * n), np.float32)
    pts = np.asarray(points, np.float32)
    if len(pts):
        f32 = np.float32
        counts = _pillar_statistics(pts, out, f32(grid.bev_range), f32(grid.lidar_cell), n, f32(grid.z_min),
                                    f32(grid.z_max - grid.z_min), grid.height_slices, f32(INTENSITY_SCALE),
                                    f32(MAX_TIME_LAG), f32(KEY_SWEEP_LAG))
        occupied = np.flatnonzero(counts[:, -1])
        # numpy's float32 log1p, on the occupied cells only
        out[:grid.height_slices, occupied] = np.log1p(counts[occupied, :-1].T.astype(np.float32))
        out[12, occupied] = np.log1p(counts[occupied, -1].astype(np.float32))
    return out.reshape(LIDAR_FEATURES, n, n)


@njit(cache=True, nogil=True)
def _pillar_statistics(pts, out, bev_range, cell, n, z_min, z_span, slices, intensity_scale, lag_scale, key_lag):
    """Fills out[8..11, 13] (max height, mean / max intensity, mean lag, key-sweep fraction); returns the point
    counts per cell and height slice (n * n, slices + 1), the last column the total. The accumulators are
    cell-major, so that a point's updates share cache lines."""
    size = n * n
    counts = np.zeros((size, slices + 1), np.int32)
    sums = np.zeros((size, 3), np.float64)  # intensity, time lag, key-sweep points
    peaks = np.zeros((size, 2), np.float32)  # height, intensity
    top = np.float32(slices)
    for p in range(pts.shape[0]):
        x, y, z, intensity, lag = pts[p, 0], pts[p, 1], pts[p, 2], pts[p, 3], pts[p, 4]
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z) and np.isfinite(intensity)
                and np.isfinite(lag)):
            continue
        fx = np.floor((x + bev_range) / cell)
        fy = np.floor((y + bev_range) / cell)
        zn = (z - z_min) / z_span
        if not (fx >= 0 and fx < n and fy >= 0 and fy < n and zn >= 0 and zn < 1):
            continue
        c = int(fy) * n + int(fx)
        counts[c, min(int(zn * top), slices - 1)] += 1
        counts[c, slices] += 1
        scaled = intensity / intensity_scale
        peaks[c, 0] = max(peaks[c, 0], zn)
        peaks[c, 1] = max(peaks[c, 1], scaled)
        sums[c, 0] += scaled
        sums[c, 1] += lag / lag_scale
        if lag < key_lag:
            sums[c, 2] += 1.0
    for c in range(size):
        if counts[c, slices]:
            nz = np.float64(np.float32(counts[c, slices]))
            out[8, c] = peaks[c, 0]
            out[9, c] = sums[c, 0] / nz
            out[10, c] = peaks[c, 1]
            out[11, c] = sums[c, 1] / nz
            out[13, c] = sums[c, 2] / nz
    return counts


@dataclass(frozen=True)
class ImageTransform:
    """How a source image maps to the network image: scale, then rows [crop_top, crop_top + height) kept."""

    scale: float
    crop_top: int
    width: int
    height: int

    @staticmethod
    def for_source(src_width: int, src_height: int, cfg: CameraInputConfig) -> "ImageTransform":
        scale = cfg.width / src_width
        crop_top = int(round(src_height * scale * cfg.crop_top_fraction))
        crop_top = min(crop_top, max(0, int(round(src_height * scale)) - cfg.height))
        return ImageTransform(scale, crop_top, cfg.width, cfg.height)


def camera_images(images: np.ndarray, cfg: CameraInputConfig) -> np.ndarray:
    """(C, H, W, 3) uint8 RGB -> (C, height, width, 3) uint8, resized and cropped (normalised later, in float)."""
    tf = ImageTransform.for_source(images.shape[2], images.shape[1], cfg)
    size = (cfg.width, int(round(images.shape[1] * tf.scale)))
    out = np.zeros((len(images), cfg.height, cfg.width, 3), np.uint8)
    for i, image in enumerate(images):
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        crop = resized[tf.crop_top:tf.crop_top + cfg.height]
        out[i, :len(crop)] = crop
    return out


def normalise_images(images_u8: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32, ImageNet mean / std."""
    x = (images_u8.astype(np.float32) - IMAGE_MEAN) / IMAGE_STD
    return np.moveaxis(x, -1, -3)


# Per channel, the float32 `normalise_images` gives each uint8 value.
NORMALISED_VALUES = [((np.arange(256, dtype=np.float32) - IMAGE_MEAN[c]) / IMAGE_STD[c]).reshape(1, 256)
                     for c in range(3)]


def camera_tensor(images: np.ndarray, cfg: CameraInputConfig) -> np.ndarray:
    """(C, H, W, 3) uint8 RGB -> (C, 3, height, width) float32, the network's image input: exactly
    normalise_images(camera_images(...)), written channel by channel through a lookup table (the node's path,
    several times cheaper than the float arithmetic and the transposing copy; training normalises after its
    float-valued augmentation instead)."""
    cropped = camera_images(images, cfg)
    out = np.empty((len(cropped), 3, cfg.height, cfg.width), np.float32)
    for i, image in enumerate(cropped):
        for c, plane in enumerate(cv2.split(image)):
            out[i, c] = cv2.LUT(plane, NORMALISED_VALUES[c])
    return out


def decode_reduction(src_width: int, cfg: CameraInputConfig) -> int:
    """The largest factor (1, 2, 4 or 8) a JPEG `src_width` wide can be decoded smaller by (`compressed_to_rgb`)
    while keeping at least the network's image width: the network never sees more pixels than that, and the
    resize to it then never enlarges."""
    return next((r for r in (8, 4, 2) if -(-src_width // r) >= cfg.width), 1)


def camera_grid(intrinsics: np.ndarray, cam_from_lidar: np.ndarray, present: np.ndarray, src_size: tuple,
                grid: GridConfig, cam: CameraInputConfig, flip_x: bool = False, flip_y: bool = False) -> np.ndarray:
    """Sampling grid (F, F * Z, 2) for `grid_sample` over the camera features stacked along the height.

    src_size: (width, height) of the source images. Points no present camera sees get (-2, -2) (zeros).
    flip_x / flip_y: the BEV is mirrored (augmentation); the points are mirrored back before projection, so
    image and LiDAR stay consistent.
    """
    f = grid.fused_cells
    heights = np.asarray(grid.lift_heights, np.float64)
    cell = 2 * grid.bev_range / f
    centres = -grid.bev_range + (np.arange(f) + 0.5) * cell
    yy, xx, zz = np.meshgrid(centres, centres, heights, indexing="ij")  # (F rows = y, F cols = x, Z)
    pts = np.stack([xx, yy, zz, np.ones_like(xx)], -1).reshape(-1, 4)
    if flip_x:
        pts[:, 0] = -pts[:, 0]
    if flip_y:
        pts[:, 1] = -pts[:, 1]
    tf = ImageTransform.for_source(src_size[0], src_size[1], cam)
    n_cam = len(intrinsics)
    best = np.full(len(pts), np.inf)
    gx = np.full(len(pts), -2.0)
    gy = np.full(len(pts), -2.0)
    half_feature = cam.feature_stride / 2  # keep samples off the band edges: no bleeding into the next camera
    for c in range(n_cam):
        if not present[c]:
            continue
        p = pts @ cam_from_lidar[c].T.astype(np.float64)
        depth = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (intrinsics[c][0, 0] * p[:, 0] / depth + intrinsics[c][0, 2]) * tf.scale
            v = (intrinsics[c][1, 1] * p[:, 1] / depth + intrinsics[c][1, 2]) * tf.scale - tf.crop_top
        ok = (depth > 0.5) & (u >= 0) & (u < tf.width) & (v >= half_feature) & (v < tf.height - half_feature)
        centrality = np.abs(u / tf.width - 0.5)
        better = ok & (centrality < best)
        best[better] = centrality[better]
        gx[better] = u[better] / tf.width * 2 - 1
        gy[better] = (c * tf.height + v[better]) / (n_cam * tf.height) * 2 - 1
    return np.stack([gx, gy], -1).reshape(f, f * len(heights), 2).astype(np.float32)
