"""Mean weight gradients of the prunable units over calibration batches: of the task loss (Taylor, SNIP,
AlterMOMA), optionally with one modality masked, and of the head-output energy (DM3D's objective, also the default
ranking of `output_distortion.forward_curve`), which counts what `output_distortion` counts: the heatmaps
everywhere, the regression maps at the object centres only."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .calibration import masked, outputs, task_loss
from .object_cells import object_mask
from .units import prunable_units


def mean_gradients(model: nn.Module, batches: list, objective: Callable) -> dict:
    """Mean over batches of d objective(model, batch) / dW for every prunable unit, in eval mode (BatchNorm
    statistics untouched)."""
    units = prunable_units(model)
    grads = {u.name: torch.zeros_like(u.weight) for u in units}
    was_training = model.training
    model.eval()
    for batch in batches:
        model.zero_grad(set_to_none=True)
        objective(model, batch).backward()
        for u in units:
            if u.weight.grad is not None:
                grads[u.name] += u.weight.grad.detach() / len(batches)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return grads


def weight_gradients(model: nn.Module, batches: list, modality: str | None = None) -> dict:
    """Mean dL/dW of the task loss, optionally with one modality masked."""
    return mean_gradients(model, batches, lambda m, b: task_loss(m, masked(b, modality)))


def objective_gradients(model: nn.Module, batches: list, lambdas: tuple = (1.0, 1.0)) -> dict:
    """Mean over batches of ds/dW_u, s = lambdas[0] ||y_loc||^2 + lambdas[1] ||y_conf||^2 per frame (eval mode):
    y_loc the regression maps at the model's own object centres (`object_mask`, fixed: no gradient through it; the
    model is the dense one, so these are the cells its distortion counts), y_conf the sigmoid heatmaps."""
    def objective(m, batch):
        heat, reg = outputs(m, batch)
        loc = (reg * object_mask(heat)).flatten(1).pow(2).sum(1).mean()
        conf = torch.sigmoid(heat).flatten(1).pow(2).sum(1).mean()
        return lambdas[0] * loc + lambdas[1] * conf

    return mean_gradients(model, batches, objective)
