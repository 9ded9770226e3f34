"""The head-output distortion of pruning one unit, measured by forward passes: what DM3D's forward scale and
MMPrune4U's curves price, and what the curve-shape study compares (docs/pruning.md, "DM3D-style", "MMPrune4U-style").

The output of a frame is what the detector is trained on: its confidence (sigmoid heatmaps) at every cell, and its
locality (regression maps) only at the cells where the dense model's heatmap marks an object (`object_mask`).
Training supervises regression at object centres only (model/targets.py `reg_mask`, model/losses.py
`regression_loss`); elsewhere the regression maps are never trained and the decoder never reads them, so a change
there is no distortion of the detector. A unit is pruned temporarily by zeroing a fraction of its weights in a given
order (least important first) and restored after.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .calibration import PruneContext, outputs
from .gradients import objective_gradients
from .object_cells import object_mask
from .units import Unit, prunable_units


def output_vector(heat: torch.Tensor, reg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, D): per frame, the confidence (sigmoid heatmaps) at every cell and the locality (regression maps) at the
    cells of `mask` (`object_mask` of the dense model's heatmap), flattened."""
    return torch.cat([torch.sigmoid(heat).flatten(1), (reg * mask).flatten(1)], 1)


@dataclass
class DenseOutputs:
    """The dense model's outputs on one batch, the reference a pruned model is measured against: its output
    vector and the object mask that selects the regression cells of both."""

    vector: torch.Tensor  # (B, D), `output_vector`
    mask: torch.Tensor  # (B, 1, H, W), `object_mask` of the dense heatmap


def dense_outputs(heat: torch.Tensor, reg: torch.Tensor) -> DenseOutputs:
    """The reference of the dense model's heatmap logits and regression maps on one batch."""
    mask = object_mask(heat)
    return DenseOutputs(output_vector(heat, reg, mask).detach(), mask)


def dense_references(model: nn.Module, batches: list) -> list:
    """`dense_outputs` of every batch, without gradients (the caller sets the model's mode)."""
    with torch.no_grad():
        return [dense_outputs(*outputs(model, b)) for b in batches]


def distortion(heat: torch.Tensor, reg: torch.Tensor, dense: DenseOutputs) -> torch.Tensor:
    """(B,) ||y - y'||^2 per frame of a model's outputs against the dense reference, regression masked by the dense
    object mask."""
    return ((output_vector(heat, reg, dense.mask) - dense.vector) ** 2).sum(1)


def prune_count(numel: int, phi: float) -> int:
    """Weights removed at pruned fraction phi, matching the top-k of granularity.unstructured_masks."""
    return numel - int(round((1.0 - phi) * numel))


@contextmanager
def zeroed(unit: Unit, order: torch.Tensor, phi: float):
    """Temporarily zero the fraction phi of `unit`'s weights first in `order` (flat indices, least important
    first); the weights are restored on exit."""
    weight = unit.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.view(-1)[order[:prune_count(weight.numel(), phi)]] = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def output_distortion(model: nn.Module, batches: list, dense: list) -> float:
    """E||y - y'||^2 per frame of the model's head outputs (`distortion`) against `dense`, the dense model's
    `DenseOutputs` on the same batches."""
    return float(np.mean([float(distortion(*outputs(model, b), d).mean()) for b, d in zip(batches, dense)]))


def pruned_distortions(model: nn.Module, batches: list, cases: list) -> list:
    """Measured E||y - y'||^2 per frame (`distortion`) for every case (unit, order, phi): only that unit pruned,
    its weights first in `order` (flat indices, least important first) zeroed at fraction phi, restored after. The
    dense outputs are computed once for all cases; eval mode throughout."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        dense = dense_references(model, batches)
        for unit, order, phi in cases:
            with zeroed(unit, order, float(phi)):
                out.append(output_distortion(model, batches, dense))
    model.train(was_training)
    return out


def forward_curve(model: nn.Module, ctx: PruneContext, unit_name: str, ratios, scores: torch.Tensor | None = None,
                  batches: list | None = None) -> np.ndarray:
    """Measured E||y - y_u(phi)||^2 per frame for every phi in `ratios`, pruning only `unit_name` (its lowest-score
    weights zeroed; scores default to DM3D's |w g|). y: `output_vector`; batches default to ctx.calibration."""
    batches = ctx.calibration if batches is None else batches
    unit = next(u for u in prunable_units(model) if u.name == unit_name)
    if scores is None:
        scores = (unit.weight.detach() * objective_gradients(model, batches)[unit_name]).abs()
    order = torch.argsort(scores.flatten(), stable=True)
    return np.array(pruned_distortions(model, batches, [(unit, order, phi) for phi in ratios]))
