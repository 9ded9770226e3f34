"""CenterPoint's losses: penalty-reduced focal loss on the heatmaps, L1 on the regression at centre cells."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Per regression channel: offset x, y, z, log w, l, h, sin, cos, vx, vy (CenterPoint's code weights).
CODE_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
REG_WEIGHT = 0.25


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's focal loss (alpha 2, beta 4), normalised by the number of peaks."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * neg).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, reg_mask: torch.Tensor,
                    vel_mask: torch.Tensor) -> torch.Tensor:
    """Weighted L1 at the centre cells; velocity only where it is known."""
    weights = pred.new_tensor(CODE_WEIGHTS).view(1, -1, 1, 1)
    mask = reg_mask.unsqueeze(1).expand_as(pred).clone()
    mask[:, 8:] = vel_mask.unsqueeze(1)
    loss = (F.l1_loss(pred, target, reduction="none") * weights * mask).sum()
    return loss / reg_mask.sum().clamp(min=1.0)


def detection_loss(heatmap_logits, regression, batch) -> tuple[torch.Tensor, dict]:
    hm = focal_loss(heatmap_logits, batch["heatmap"])
    reg = regression_loss(regression, batch["regression"], batch["reg_mask"], batch["vel_mask"])
    total = hm + REG_WEIGHT * reg
    return total, {"heatmap": float(hm.detach()), "regression": float(reg.detach())}
