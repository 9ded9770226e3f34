"""The cells whose regression the output distortion counts: the object centres of the dense model's heatmap
(docs/pruning.md, "What the distortion counts"). Shared by the distortion (`output_distortion.py`) and DM3D's
objective (`gradients.py`), which must count the same cells."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# A cell is an object centre for the distortion where the dense model's class-max sigmoid heatmap is a 3x3 local
# peak at or above this score. Regression is supervised only at centre cells, the focal loss's positives (target
# heatmap exactly 1); every other cell is a negative, its target Gaussian < 1. The centre is its Gaussian's unique
# peak, so a peak marks one supervised cell per object, as the decoder reads one; a score threshold alone would
# also take a large object's neighbours (targets 0.49 next to the centre at radius 2, 0.69 at radius 3), which were
# never regression-supervised.
# 0.5 is the sigmoid's boundary between the two targets: a peak at or above it is a cell the dense model classes
# as a positive, one below it a negative, where regression was never trained.
OBJECT_SCORE = 0.5


def object_mask(heat: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) float mask of the object centres in heatmap logits (B, classes, H, W), see `OBJECT_SCORE`;
    no gradient flows through it."""
    score = torch.sigmoid(heat.detach()).amax(1, keepdim=True)
    peak = F.max_pool2d(score, 3, stride=1, padding=1) == score
    return (peak & (score >= OBJECT_SCORE)).to(heat.dtype)
