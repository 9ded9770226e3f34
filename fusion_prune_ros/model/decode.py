"""Head outputs -> `Detections`: heatmap peaks (3x3 max-pool), top-K, per-class score thresholds, boxes in the
LiDAR frame, optional circle NMS. Runs outside the exported network (numpy + torch), identical everywhere."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

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


def decode(heatmap_logits: torch.Tensor, regression: torch.Tensor, grid: GridConfig,
           cfg: DecodeConfig = DecodeConfig()) -> list:
    """(B, 10, H, H) logits and (B, 10, H, H) regression -> a list of B Detections."""
    heat = torch.sigmoid(heatmap_logits.float())
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    b, c, h, w = peaks.shape
    k = min(cfg.top_k, c * h * w)
    scores, index = peaks.view(b, -1).topk(k)
    thresholds = torch.tensor([cfg.class_thresholds.get(n, cfg.score_threshold) for n in DETECTION_CLASSES])
    out = []
    for i in range(b):
        label = index[i] // (h * w)
        cell = index[i] % (h * w)
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


def circle_nms(det: Detections) -> Detections:
    """Per class, greedily drop detections whose centre lies within the class radius of a higher-scoring one.

    The pairwise distances are one numpy matrix per class; only the greedy pass is a Python loop (n <= top_k), so an
    untrained or noisy head with hundreds of candidates costs about a millisecond, not hundreds."""
    keep = np.zeros(len(det), bool)
    order = np.argsort(-det.scores, kind="stable")
    for label in np.unique(det.labels):
        radius = NMS_RADIUS[DETECTION_CLASSES[label]]
        idx = order[det.labels[order] == label]
        if radius <= 0:
            keep[idx] = True
            continue
        xy = det.boxes[idx, :2].astype(np.float64)
        near = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1) <= radius ** 2
        suppressed = np.zeros(len(idx), bool)
        for i in range(len(idx)):
            if not suppressed[i]:
                keep[idx[i]] = True
                suppressed |= near[i]
    return det.select(keep)
