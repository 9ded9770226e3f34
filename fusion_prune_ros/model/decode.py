"""Head outputs -> `Detections`: heatmap peaks (3x3 max-pool), top-K, per-class score thresholds, boxes in the
LiDAR frame, optional circle NMS. Runs outside the exported network, the same for every backend.

numpy on one frame's maps and a compiled loop for the greedy NMS: per frame this is one threshold pass over the
logits, then work on the few cells whose logit can reach the lowest threshold (only those can be selected, so only
they, with their neighbourhoods, get a sigmoid and the peak test), with no torch kernels (whose thread pool competed
with the inference runtime's for the same two cores), no pass over a whole map but the threshold, and no Python
loop over boxes.
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
    maps (`HeadLayout`), -> a list of B Detections."""
    heat = np.asarray(heatmap_logits, np.float32)
    reg = np.asarray(regression, np.float32)
    layout = HeadLayout.of(heat.shape, grid)
    thresholds = cfg.thresholds()
    return [decode_frame(h, r, layout, grid, cfg, thresholds) for h, r in zip(heat, reg)]


@dataclass(frozen=True)
class HeadLayout:
    """Where a head-grid entry (channel, row, column) sits in the maps a graph returns: the head grid itself, or the
    sub-cell maps of a detector with `subcells_to_decoder`, (C r r, N / r, N / r) with entry [c r r + i r + j, y, x]
    holding head cell (y r + i, x r + j) of channel c (torch's pixel shuffle undone). The decoder reads the few cells
    it needs in place (`_stored_index`) instead of shuffling whole maps."""

    cells: int  # N, the head grid's side
    subcells: int  # r; 1: the maps are the head grid

    @staticmethod
    def of(shape: tuple, grid: GridConfig) -> "HeadLayout":
        _, c, h, w = shape
        n = grid.head_cells
        r = n // h
        if h != w or r * h != n or c % (r * r):
            raise ValueError(f"maps of shape {shape} fit neither the {n}-cell head grid nor its sub-cell layout")
        return HeadLayout(n, r)


def decode_frame(logits: np.ndarray, reg: np.ndarray, layout: HeadLayout, grid: GridConfig, cfg: DecodeConfig,
                 thresholds: np.ndarray) -> Detections:
    """One frame's logits and regression maps (`layout`) -> Detections, highest score first (ties: lower class,
    then row-major cell, first)."""
    label, iy, ix, score = _peaks_at_least(logits, layout, thresholds.min())
    order = np.argsort(-score, kind="stable")[:cfg.top_k]
    label, iy, ix, score = label[order], iy[order], ix[order], score[order]
    keep = score >= thresholds[label]
    label, iy, ix, score = label[keep], iy[keep], ix[keep], score[keep]
    r = regression_at(reg, layout, iy, ix)
    cell_size, offset = np.float32(grid.head_cell), np.float32(grid.bev_range)
    boxes = np.stack([(ix.astype(np.float32) + r[0]) * cell_size - offset,
                      (iy.astype(np.float32) + r[1]) * cell_size - offset, r[2], np.exp(r[3]), np.exp(r[4]),
                      np.exp(r[5]), np.arctan2(r[6], r[7]), r[8], r[9]], 1).astype(np.float32)
    det = Detections(boxes, score.astype(np.float32), label.astype(np.int64))
    return circle_nms(det) if cfg.circle_nms else det


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """float32 sigmoid, without temporaries."""
    heat = np.exp(-logits)
    heat += 1.0
    return np.divide(1.0, heat, out=heat)


def _peaks_at_least(logits: np.ndarray, layout: HeadLayout, lowest: np.float32) -> tuple:
    """(channel, y, x, score) of the entries of the peak map (a cell's heat where it equals the 3x3 max of the heat
    around it, as torch's max_pool2d(x, 3, 1, 1) finds it, else 0) that are >= `lowest`, in increasing head-grid
    order: only those can survive top-K and the thresholds. The heat is the sigmoid of the logits, which never
    decreases with them, so only logits at or above the logit of `lowest` (less a margin far wider than float32
    rounding) can reach it: the sigmoid is taken of those and their neighbourhoods only, the same float32 arithmetic
    on the same values as over the whole map. With a threshold of 0 or less every cell is a candidate."""
    flat = logits.ravel()
    p = float(lowest) * (1 - 1e-4) - 1e-6
    if p > 0:
        candidates = np.flatnonzero(flat >= np.float32(np.log(p / (1 - p)) if p < 1 else np.inf))
    else:
        candidates = np.arange(flat.size)
    head, around = _neighbourhoods(flat, candidates, layout.cells, layout.subcells)
    if layout.subcells > 1:  # back to head-grid order: score ties are broken by it
        order = np.argsort(head[:, 0])
        head, around = head[order], around[order]
    heat = _sigmoid(around)
    score = heat[:, 4]
    # A NaN in the neighbourhood makes the max NaN, so no peak: every comparison with a NaN is false.
    score = np.where((heat <= score[:, None]).all(1), score, np.float32(0))
    keep = score >= lowest
    return head[keep, 1], head[keep, 2], head[keep, 3], score[keep]


def regression_at(reg: np.ndarray, layout: HeadLayout, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(channels, len(y)) regression of head cells (y, x) from one frame's maps (`layout`)."""
    return _values_at(reg.ravel(), reg.shape[0] // layout.subcells ** 2, np.ascontiguousarray(y, np.int64),
                      np.ascontiguousarray(x, np.int64), layout.cells, layout.subcells)


@njit(cache=True, nogil=True, inline="always")
def _stored_index(channel, y, x, subcells, side, sub, coarse):
    """Flat index into one frame's maps of head entry (channel, y, x) (`HeadLayout`); sub / coarse: y % r and
    y // r per head row or column, looked up because the divisions by a run-time r cost more than the rest."""
    return ((channel * subcells + sub[y]) * subcells + sub[x]) * side * side + coarse[y] * side + coarse[x]


@njit(cache=True, nogil=True)
def _values_at(flat, channels, y, x, cells, subcells):
    side = cells // subcells
    sub, coarse = np.arange(cells) % subcells, np.arange(cells) // subcells
    out = np.empty((channels, y.shape[0]), np.float32)
    for c in range(channels):
        for k in range(y.shape[0]):
            out[c, k] = flat[_stored_index(c, y[k], x[k], subcells, side, sub, coarse)]
    return out


@njit(cache=True, nogil=True)
def _neighbourhoods(flat, stored, cells, subcells):
    """For entries at flat indices `stored` of one frame's maps (`HeadLayout`): their (head-grid flat index,
    channel, y, x), and the logits of their 3x3 neighbourhoods on the head grid, row by row (a neighbour off the
    map: the entry itself, which leaves the max unchanged)."""
    side = cells // subcells
    sub, coarse = np.arange(cells) % subcells, np.arange(cells) // subcells
    head = np.empty((stored.shape[0], 4), np.int64)
    around = np.empty((stored.shape[0], 9), np.float32)
    for k in range(stored.shape[0]):
        plane, at = divmod(stored[k], side * side)
        channel, i = divmod(plane, subcells * subcells)
        y = at // side * subcells + i // subcells
        x = at % side * subcells + i % subcells
        head[k, 0] = (channel * cells + y) * cells + x
        head[k, 1], head[k, 2], head[k, 3] = channel, y, x
        for dy in range(3):
            yy = min(max(y + dy - 1, 0), cells - 1)
            for dx in range(3):
                xx = min(max(x + dx - 1, 0), cells - 1)
                around[k, dy * 3 + dx] = flat[_stored_index(channel, yy, xx, subcells, side, sub, coarse)]
    return head, around


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
