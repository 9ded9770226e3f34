"""DM3D's per-unit distortion curves (docs/pruning.md, "DM3D-style"): the second-order estimate
delta_u(phi) = 0.5 ((g . dW)^2 + kappa ||dW||^2) of the head-output distortion when unit u loses the fraction phi
of its weights (ranked by |w g|), and the factor that puts each curve on the forward-measured scale."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ...model.flops import example_inputs
from ..gradients import objective_gradients
from ..output_distortion import prune_count, pruned_distortions
from ..unit_flops import unit_macs
from ..units import prunable_units, weights_of


def hessian_curve(weight: torch.Tensor, grad: torch.Tensor, kappa: float, ratios) -> np.ndarray:
    """delta(phi) = 0.5 (runmax_phi (sum g_i w_i)^2 + kappa sum w_i^2) over the weights removed at each phi, the
    weights ranked by |w g|: O(n log n) for the whole grid, from cumulative sums."""
    w = weight.detach().flatten().double()
    g = grad.detach().flatten().double()
    order = torch.argsort((w * g).abs(), stable=True)
    zero = torch.zeros(1, dtype=torch.float64)
    signed = torch.cat([zero, torch.cumsum((g * w)[order], 0)])
    energy = torch.cat([zero, torch.cumsum(w[order] ** 2, 0)])
    idx = torch.tensor([prune_count(w.numel(), float(phi)) for phi in ratios])
    rank_one = torch.cummax(signed[idx] ** 2, 0).values
    return (0.5 * (rank_one + kappa * energy[idx])).numpy()


@dataclass
class Curves:
    """Everything DM3D's allocation reads: per-unit weights, objective gradients, Hessian distortion curves on the
    ratio grid, and per-unit FLOPs (MACs of one frame)."""

    weights: dict
    grads: dict
    kappa: float
    ratios: np.ndarray
    curves: dict
    flops: dict


def distortion_curves(model: nn.Module, calibration: list, cfg, steps: int = 100, kappa_scale: float = 1.0,
                      lambdas: tuple = (1.0, 1.0), grads: dict | None = None) -> Curves:
    """DM3D's per-unit Hessian distortion curves (ratios 0, 1/steps, ..., (steps-1)/steps) and unit FLOPs. grads:
    the objective gradients on `calibration` when already measured (`objective_gradients` with `lambdas`)."""
    weights = weights_of(model)
    if grads is None:
        grads = objective_gradients(model, calibration, lambdas)
    kappa = kappa_scale * float(torch.cat([g.flatten() for g in grads.values()]).pow(2).mean())
    ratios = np.arange(steps) / steps
    curves = {u.name: hessian_curve(weights[u.name], grads[u.name], kappa, ratios) for u in prunable_units(model)}
    return Curves(weights, grads, kappa, ratios, curves, unit_macs(model, example_inputs(cfg)["fused"]))


def forward_scale(model: nn.Module, batches: list, c: Curves, phi_ref: float = 0.5) -> dict:
    """unit name -> F_u(phi_ref) / delta_u(phi_ref): the factor that puts unit u's Hessian curve on the measured
    scale at phi_ref (weights ranked by |w g| in both)."""
    k = int(np.argmin(np.abs(c.ratios - phi_ref)))
    orders = {n: torch.argsort((c.weights[n] * c.grads[n]).abs().flatten(), stable=True) for n in c.curves}
    units = {u.name: u for u in prunable_units(model)}
    names = list(c.curves)
    measured = dict(zip(names, pruned_distortions(model, batches, [(units[n], orders[n], c.ratios[k]) for n in names])))
    return {n: measured[n] / c.curves[n][k] if c.curves[n][k] > 0 else 0.0 for n in names}


def forward_scaled(model: nn.Module, batches: list, c: Curves, phi_ref: float = 0.5) -> tuple:
    """(Curves with every unit's curve multiplied by its `forward_scale` factor, the factors)."""
    factors = forward_scale(model, batches, c, phi_ref)
    return replace(c, curves={n: curve * factors[n] for n, curve in c.curves.items()}), factors
