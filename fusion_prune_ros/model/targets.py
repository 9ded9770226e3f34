"""CenterPoint target assignment on the head grid: class heatmaps with Gaussian peaks at box centres, and the
regression targets (sub-cell offset, z, log size, sin / cos yaw, velocity) at each centre cell."""
from __future__ import annotations

import numpy as np

from ..config import GridConfig
from ..data.classes import DETECTION_CLASSES

MIN_RADIUS = 1
MIN_OVERLAP = 0.1


def gaussian_radius(length: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's radius (in cells) within which a box shifted by it still overlaps the true one by min_overlap."""
    a1, b1 = 1.0, length + width
    c1 = width * length * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (length + width)
    c2 = (1 - min_overlap) * width * length
    r2 = (b2 + np.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (length + width)
    c3 = (min_overlap - 1) * width * length
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


def _draw(heatmap: np.ndarray, cx: int, cy: int, radius: int) -> None:
    sigma = (2 * radius + 1) / 6
    ys, xs = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    h, w = heatmap.shape
    x0, x1 = max(0, cx - radius), min(w, cx + radius + 1)
    y0, y1 = max(0, cy - radius), min(h, cy + radius + 1)
    patch = g[y0 - cy + radius:y1 - cy + radius, x0 - cx + radius:x1 - cx + radius]
    np.maximum(heatmap[y0:y1, x0:x1], patch, out=heatmap[y0:y1, x0:x1])


def build_targets(boxes: np.ndarray, labels: np.ndarray, grid: GridConfig):
    """boxes (N, 9) x, y, z, w, l, h, yaw, vx, vy in the LiDAR frame (velocity may be NaN), labels (N,).

    Returns heatmap (10, H, H), regression (10, H, H), reg_mask (H, H) and vel_mask (H, H) as float32, where H is
    the head grid size. Rows index y, columns x, as in the network's BEV.
    """
    n, cell, rng = grid.head_cells, grid.head_cell, grid.bev_range
    heatmap = np.zeros((len(DETECTION_CLASSES), n, n), np.float32)
    reg = np.zeros((10, n, n), np.float32)
    reg_mask = np.zeros((n, n), np.float32)
    vel_mask = np.zeros((n, n), np.float32)
    for box, label in zip(boxes, labels):
        x, y, z, w, l, h, yaw, vx, vy = (float(v) for v in box)
        fx, fy = (x + rng) / cell, (y + rng) / cell
        ix, iy = int(np.floor(fx)), int(np.floor(fy))
        if not (0 <= ix < n and 0 <= iy < n):
            continue
        radius = max(MIN_RADIUS, int(gaussian_radius(l / cell, w / cell)))
        _draw(heatmap[int(label)], ix, iy, radius)
        reg[:, iy, ix] = (fx - ix, fy - iy, z, np.log(w), np.log(l), np.log(h), np.sin(yaw), np.cos(yaw),
                          0.0 if np.isnan(vx) else vx, 0.0 if np.isnan(vy) else vy)
        reg_mask[iy, ix] = 1.0
        vel_mask[iy, ix] = float(np.isfinite(vx) and np.isfinite(vy))
    return heatmap, reg, reg_mask, vel_mask


def flip_boxes(boxes: np.ndarray, flip_x: bool, flip_y: bool) -> np.ndarray:
    """Mirror LiDAR-frame boxes with the BEV (augmentation): x -> -x turns yaw into pi - yaw, y -> -y into -yaw."""
    out = boxes.copy()
    if flip_x:
        out[:, 0] = -out[:, 0]
        out[:, 6] = np.pi - out[:, 6]
        out[:, 7] = -out[:, 7]
    if flip_y:
        out[:, 1] = -out[:, 1]
        out[:, 6] = -out[:, 6]
        out[:, 8] = -out[:, 8]
    return out
