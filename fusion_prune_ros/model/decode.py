"""Head outputs -> `Detections`: heatmap peaks (3x3 max-pool), top-K, per-class score thresholds, boxes in the
LiDAR frame, optional circle NMS. Runs outside the exported network, the same for every backend.

numpy on one frame's (10, H, W) maps, and compiled loops for the peak test and the greedy NMS: per frame this is
the sigmoid and one threshold pass over the heatmap, then work on the few cells at or above the lowest threshold
(only those can be selected, so only they are tested for being peaks), with no torch kernels (whose thread pool
competed with the inference runtime's for the same two cores) and no Python loop over boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..config import GridConfig
from ..data.classes import DETECTION_CLASSES
from ..detections import Detections

# CenterPoint's nuScenes circle-NMS radii (metres) per class; 0 disables NMS for the class.
NMS_RADIUS = {"car": 4.0, "truck": 12.0, "construction_vehicle": 12.0, "bus": 10.0, "trailer": 10.0,
              "barrier": 1.0, "motorcycle": 0.85, "bicycle": 0.85, "pedestrian": 0.175, "traffic_cone": 0.175}


@dataclass
class DecodeConfig:
    top_k: int = 300
    score_threshold: float = 0.05
    class_thresholds: dict = field(default_factory=dict)  # class name -> threshold overriding score_threshold
    circle_nms: bool = True

    def thresholds(self) -> np.ndarray:
        """(classes,) float32 score threshold per class."""
        return np.array([self.class_thresholds.get(n, self.score_threshold) for n in DETECTION_CLASSES], np.float32)


def decode(heatmap_logits: np.ndarray, regression: np.ndarray, grid: GridConfig,
           cfg: DecodeConfig = DecodeConfig()) -> list:
    """(B, 10, H, W) logits and (B, 10, H, W) regression (float32 arrays) on the head grid, or the head's sub-cell
    maps (`head_grid`), -> a list of B Detections."""
    heat = head_grid(np.asarray(heatmap_logits, np.float32), grid)
    reg = head_grid(np.asarray(regression, np.float32), grid)
    thresholds = cfg.thresholds()
    return [decode_frame(h, r, grid, cfg, thresholds) for h, r in zip(heat, reg)]


def head_grid(maps: np.ndarray, grid: GridConfig) -> np.ndarray:
    """(B, C, N, N) maps on the head grid as they are; (B, C * r * r, N / r, N / r) sub-cell maps, which the graphs
    of a detector with `subcells_to_decoder` end with, shuffled onto it: out[c, y r + i, x r + j] =
    in[c r r + i r + j, y, x], torch's pixel shuffle."""
    b, c, h, w = maps.shape
    if h == grid.head_cells:
        return maps
    r = grid.head_cells // h
    if r * h != grid.head_cells or h != w or c % (r * r):
        raise ValueError(f"maps of shape {maps.shape} fit neither the {grid.head_cells}-cell head grid nor its "
                         f"sub-cell layout")
    return maps.reshape(b, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(b, c // (r * r), h * r,
                                                                                         w * r)


def decode_frame(logits: np.ndarray, reg: np.ndarray, grid: GridConfig, cfg: DecodeConfig,
                 thresholds: np.ndarray) -> Detections:
    """One frame's (10, H, W) logits and regression -> Detections, highest score first (ties: lower class, then
    row-major cell, first)."""
    heat = np.exp(-logits)
    heat += 1.0
    np.divide(1.0, heat, out=heat)  # the sigmoid, without temporaries
    c, h, w = heat.shape
    index, score = _peaks_at_least(heat, thresholds.min())
    order = np.argsort(-score, kind="stable")[:min(cfg.top_k, c * h * w)]
    index, score = index[order], score[order]
    label, cell = np.divmod(index, h * w)
    keep = score >= thresholds[label]
    label, cell, score = label[keep], cell[keep], score[keep]
    iy, ix = np.divmod(cell, w)
    r = reg[:, iy, ix]
    cell_size, offset = np.float32(grid.head_cell), np.float32(grid.bev_range)
    boxes = np.stack([(ix.astype(np.float32) + r[0]) * cell_size - offset,
                      (iy.astype(np.float32) + r[1]) * cell_size - offset, r[2], np.exp(r[3]), np.exp(r[4]),
                      np.exp(r[5]), np.arctan2(r[6], r[7]), r[8], r[9]], 1).astype(np.float32)
    det = Detections(boxes, score.astype(np.float32), label.astype(np.int64))
    return circle_nms(det) if cfg.circle_nms else det


def _peaks_at_least(heat: np.ndarray, lowest: np.float32) -> tuple:
    """(flat indices in increasing order, scores) of the entries of the peak map (a cell's heat where it equals the
    3x3 max around it, as torch's max_pool2d(x, 3, 1, 1) finds it, else 0) that are >= `lowest`: only those can
    survive top-K and the thresholds. A positive threshold is only reached where the heat reaches it, so only
    those cells need the peak test; otherwise every cell does."""
    flat = heat.ravel()
    candidates = np.flatnonzero(flat >= lowest) if lowest > 0 else np.arange(flat.size)
    score = flat[candidates]
    score[~_is_peak(heat, candidates)] = 0
    keep = score >= lowest
    return candidates[keep], score[keep]


@njit(cache=True, nogil=True)
def _is_peak(heat, flat_index):
    """Whether each entry (flat indices, increasing) is the max of its 3x3 neighbourhood within its map: no
    neighbour above it and no NaN in the neighbourhood (which makes the max NaN), i.e. every entry there <= it
    (itself included, so a NaN is none). The row of each entry is found by walking the rows along with the
    increasing indices, without a division per entry."""
    _, h, w = heat.shape
    plane = heat.reshape(-1)
    out = np.empty(flat_index.shape[0], np.bool_)
    row_start, y = 0, 0  # the current entry's row: where it starts, and its y in its map
    for i in range(flat_index.shape[0]):
        at = flat_index[i]
        while at >= row_start + w:
            row_start += w
            y = y + 1 if y < h - 1 else 0
        x = at - row_start
        v = plane[at]
        left = -1 if x > 0 else 0  # offsets of the neighbours inside the map (0: the entry's own column / row)
        right = 1 if x < w - 1 else 0
        peak = True
        for centre in (at - w if y > 0 else at, at, at + w if y < h - 1 else at):
            peak &= plane[centre + left] <= v
            peak &= plane[centre] <= v
            peak &= plane[centre + right] <= v
        out[i] = peak
    return out


NMS_RADIUS_SQ = np.array([NMS_RADIUS[n] ** 2 for n in DETECTION_CLASSES], np.float64)


def circle_nms(det: Detections) -> Detections:
    """Per class, greedily drop detections whose centre lies within the class radius of a higher-scoring one."""
    order = np.argsort(-det.scores, kind="stable")
    keep = _greedy_circle_keep(det.boxes[:, :2].astype(np.float64), det.labels.astype(np.int64), NMS_RADIUS_SQ,
                               order)
    return det.select(keep)


@njit(cache=True, nogil=True)
def _greedy_circle_keep(xy, labels, radius_sq, order):
    """Visiting detections by descending score, keep one unless a kept detection of its class lies within the
    class radius (a radius of 0 keeps the whole class)."""
    keep = np.zeros(len(labels), np.bool_)
    kept = np.empty(len(order), np.int64)
    n_kept = 0
    for i in order:
        r2 = radius_sq[labels[i]]
        suppressed = False
        if r2 > 0:
            for k in range(n_kept):
                j = kept[k]
                if labels[j] == labels[i]:
                    dx = xy[i, 0] - xy[j, 0]
                    dy = xy[i, 1] - xy[j, 1]
                    if dx * dx + dy * dy <= r2:
                        suppressed = True
                        break
        if not suppressed:
            keep[i] = True
            kept[n_kept] = i
            n_kept += 1
    return keep
