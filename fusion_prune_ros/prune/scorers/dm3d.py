"""DM3D-style post-training pruning (Xu et al., 2024; docs/pruning.md, "DM3D-style"): keep the *detection* output,
not the loss.

Distortion lives on the head outputs: locality (all ten regression maps) plus confidence (sigmoid heatmaps), equal
weights: s(x) = ||y_loc||^2 + ||y_conf||^2 per frame. For every unit, g_u = ds/dW_u averaged over the calibration
batches (eval mode). With the first-order term dropped and the cheap Hessian H_u ~ g_u g_u^T + kappa I,

    delta_u(phi) = 0.5 dW^T H_u dW = 0.5 ((g . dW)^2 + kappa ||dW||^2),

dW = -w on the weights removed at ratio phi (ranked by |w g|, lowest first). The matrix is never formed: both terms
are read off cumulative sums over the ranked weights (the signed sum of g_i w_i, then squared; the sum of w_i^2).
The units' pruned fractions come from the knapsack of `allocate` under a FLOPs budget, the budget itself bisected
until the prunable-parameter sparsity is the requested one.

Departures from the paper (reconstructed where the paper is silent):
- kappa: the paper's value is not public. Ours is `kappa_scale` times the mean of g_i^2 over all prunable weights
  (the mean diagonal of g g^T), so the damping term is on the scale of the rank-one term for uncorrelated signs.
- The rank-one term (sum g_i w_i)^2 can *fall* as phi grows (signs cancel): an artefact of a rank-one Hessian, not
  a property of the network. We take its running maximum over phi, so every curve is non-decreasing (the
  allocator assumes pruning more never costs less).
- The parameter-sparsity target is met within 0.5 % of the prunable parameters (bisection over the FLOPs
  budget), not exactly; the realised value is in `info`.
- The curves are computed for unstructured pruning. Under `channel` granularity the keep ratios drive the
  per-unit channel ratios (granularity.py); under `nm24` they are ignored (2:4 is a fixed 50 %).
- The curves' scale across units is calibrated by one forward measurement per unit (`scale="forward"`, the
  default; `scale="hessian"` is the uncalibrated reconstruction). Measured on `models/base`: the ratio of the
  forward-measured distortion to the Hessian curve at phi = 0.5 spans 6e-5 (deep camera and BEV convs) to 1e-2
  (the LiDAR branch, bev.level0), so the raw curves charge the LiDAR branch about 100x too little relative to the
  camera branch, and the allocation removed 81 % of the LiDAR branch's weights (NDS 0.195 after fine-tuning at
  80 %). Each unit's curve keeps its Hessian *shape* (how distortion grows with phi: the part the Spearman check
  validates) and is multiplied by F_u(phi_ref) / delta_u(phi_ref), F_u measured with only that unit pruned at
  phi_ref on the first `scale_batches` calibration batches: units x scale_batches forward passes.
- Per-unit FLOPs are the MACs of one frame (`example_inputs`, six cameras). In the DP a unit costing under half a
  bin (budget / 1000) quantises to the same cost at every ratio: it keeps its least-distortion option unless its
  curve is flat (ties go to the cheaper option). The Lagrangian (`allocator="lagrangian"`) has no bins.
- `cost="latency"` (not in the paper, which budgets FLOPs; docs/pruning.md, "A measured latency table instead of FLOPs"): the knapsack
  spends measured milliseconds per (unit, ratio) from `latency_table`, and the target ("sparsity") is the fraction
  of the units' measured time to remove (`allocate_for_time`); the realised parameter sparsity is whatever that
  costs. The sweep keeps FLOPs and parameter targets, the paper's budget and the tables' axis.

What to expect (measured on the randomly initialised small detector): within a unit, the Hessian curve ranks the
ratios like the forward-measured E||y - y_u(phi)||^2 (Spearman 0.84 to 1.0 over 20 ratios, all 25 units), but
its scale relative to the forward curve varies by up to 1e7 between units: g = 2 J^T y weighs an output change by
the output itself, so coherent shifts of large outputs dominate. The allocation compares units on that scale.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ...errors import UserError
from ...model.flops import example_inputs
from ..allocate import ALLOCATORS, check_allocator
from ..calibration import PruneContext, outputs
from ..latency_table import latency_table
from ..units import Unit, observe_units, prunable_units
from . import register
from .base import Scorer, Scores, mean_gradients, weights_of

CURVE_SUMMARY_AT = (0.25, 0.5, 0.75, 0.9)


# ---- shared with MMPrune4U: head outputs, temporary pruning, forward-measured distortion ------------------------


def output_vector(heat: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """(B, D): per frame, the confidence (sigmoid heatmaps) and locality (regression maps) outputs, flattened."""
    return torch.cat([torch.sigmoid(heat).flatten(1), reg.flatten(1)], 1)


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
    """E||y - y'||^2 per frame of the model's head outputs (`output_vector`) against `dense`, the dense model's
    outputs on the same batches."""
    return float(np.mean([float(((output_vector(*outputs(model, b)) - y) ** 2).sum(1).mean())
                          for b, y in zip(batches, dense)]))


def pruned_distortions(model: nn.Module, batches: list, cases: list) -> list:
    """Measured E||y - y'||^2 per frame (y: `output_vector`) for every case (unit, order, phi): only that unit
    pruned, its weights first in `order` (flat indices, least important first) zeroed at fraction phi, restored
    after. The dense outputs are computed once for all cases; eval mode throughout."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        dense = [output_vector(*outputs(model, b)) for b in batches]
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


# ---- DM3D's Hessian curves ------------------------------------------------------------------------------------


def objective_gradients(model: nn.Module, batches: list, lambdas: tuple = (1.0, 1.0)) -> dict:
    """Mean over batches of ds/dW_u, s = lambdas[0] ||y_loc||^2 + lambdas[1] ||y_conf||^2 per frame (eval mode)."""
    def objective(m, batch):
        heat, reg = outputs(m, batch)
        loc = reg.flatten(1).pow(2).sum(1).mean()
        conf = torch.sigmoid(heat).flatten(1).pow(2).sum(1).mean()
        return lambdas[0] * loc + lambdas[1] * conf

    return mean_gradients(model, batches, objective)


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


def unit_macs(model: nn.Module, inputs: tuple, units: list | None = None) -> dict:
    """unit name -> multiply-accumulates of its conv for one forward of `inputs` (forward hooks): output pixels x
    weight numel for a conv, input pixels x weight numel for a transposed conv (each input pixel scatters the
    whole kernel). units: default the model's prunable units."""
    macs = {}

    def record(name, module, args, out):
        if isinstance(module, nn.ConvTranspose2d):
            pixels = args[0].numel() // args[0].shape[1]
        else:
            pixels = out.numel() // out.shape[1]
        macs[name] = pixels * module.weight.numel()

    observe_units(model, inputs, prunable_units(model) if units is None else units, record)
    return macs


def sparsity_of(choice: dict, numels: dict) -> float:
    """Fraction of the units' parameters removed by the pruned fractions in `choice`."""
    return sum(choice[n] * numels[n] for n in choice) / sum(numels[n] for n in choice)


def flops_costs(flops: dict, ratios: np.ndarray) -> dict:
    """unit -> its FLOPs at each pruned fraction (linear: the weights kept)."""
    return {n: f * (1.0 - np.asarray(ratios, float)) for n, f in flops.items()}


def allocate_for_sparsity(curves: dict, ratios: np.ndarray, costs: dict, numels: dict, sparsity: float,
                          allocator: str = "dp", tolerance: float = 0.005, iterations: int = 40) -> tuple:
    """(pruned fractions, budget): the allocation under a cost budget that removes `sparsity` of the parameters
    (within `tolerance`), the budget found by bisection (less budget -> more pruning). costs[u][k]: unit u's cost
    (FLOPs, or measured ms from a latency table) at ratios[k]."""
    allocate = ALLOCATORS[allocator]
    lo = sum(float(c.min()) for c in costs.values())
    hi = sum(float(c.max()) for c in costs.values())
    best = None
    for _ in range(iterations):
        budget = (lo + hi) / 2
        choice = allocate(curves, ratios, costs, budget)
        realised = sparsity_of(choice, numels)
        if best is None or abs(realised - sparsity) < abs(best[2] - sparsity):
            best = (choice, budget, realised)
        if abs(realised - sparsity) <= tolerance:
            break
        lo, hi = (lo, budget) if realised < sparsity else (budget, hi)
    return best[0], best[1]


def allocate_for_time(curves: dict, ratios: np.ndarray, ms: dict, fraction: float, allocator: str = "dp") -> tuple:
    """(pruned fractions, budget in ms): the least-distortion allocation whose summed unit time is at most
    (1 - fraction) of the dense units' time. With a latency table the target is time, not parameters: where a
    conv's time does not fall with its width, no parameter count would buy anything, and the knapsack should not
    be made to cut it (the bisection over a parameter target would)."""
    dense = sum(float(c[0]) for c in ms.values())
    floor = sum(float(c.min()) for c in ms.values())
    budget = (1.0 - fraction) * dense
    if budget < floor:
        raise UserError(f"a {fraction:.0%} cut of the units' measured time ({dense:.2f} ms) is below what channel "
                        f"pruning can reach here: every unit at its fastest width still takes {floor:.2f} ms "
                        f"({1 - floor / dense:.0%} cut at most)")
    return ALLOCATORS[allocator](curves, ratios, ms, budget), budget


def forward_scale(model: nn.Module, batches: list, c: "Curves", phi_ref: float = 0.5) -> dict:
    """unit name -> F_u(phi_ref) / delta_u(phi_ref): the factor that puts unit u's Hessian curve on the measured
    scale at phi_ref (weights ranked by |w g| in both)."""
    k = int(np.argmin(np.abs(c.ratios - phi_ref)))
    orders = {n: torch.argsort((c.weights[n] * c.grads[n]).abs().flatten(), stable=True) for n in c.curves}
    units = {u.name: u for u in prunable_units(model)}
    names = list(c.curves)
    measured = dict(zip(names, pruned_distortions(model, batches, [(units[n], orders[n], c.ratios[k]) for n in names])))
    return {n: measured[n] / c.curves[n][k] if c.curves[n][k] > 0 else 0.0 for n in names}


def forward_scaled(model: nn.Module, batches: list, c: "Curves", phi_ref: float = 0.5) -> tuple:
    """(Curves with every unit's curve multiplied by its `forward_scale` factor, the factors)."""
    factors = forward_scale(model, batches, c, phi_ref)
    return replace(c, curves={n: curve * factors[n] for n, curve in c.curves.items()}), factors


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
                      lambdas: tuple = (1.0, 1.0)) -> Curves:
    """DM3D's per-unit Hessian distortion curves (ratios 0, 1/steps, ..., (steps-1)/steps) and unit FLOPs."""
    weights = weights_of(model)
    grads = objective_gradients(model, calibration, lambdas)
    kappa = kappa_scale * float(torch.cat([g.flatten() for g in grads.values()]).pow(2).mean())
    ratios = np.arange(steps) / steps
    curves = {u.name: hessian_curve(weights[u.name], grads[u.name], kappa, ratios) for u in prunable_units(model)}
    return Curves(weights, grads, kappa, ratios, curves, unit_macs(model, example_inputs(cfg)["fused"]))


class DM3DScorer(Scorer):
    """Weights ranked by |w g| within a unit; per-unit keep ratios from the Hessian distortion curves allocated
    under a FLOPs budget. `steps`: grid size (phi = 0, 1/steps, ..., (steps-1)/steps). `scale`: "forward" puts
    each unit's curve on the forward-measured scale at phi = `scale_ratio` (`scale_batches` calibration batches),
    "hessian" allocates on the raw curves."""

    name = "dm3d"

    def __init__(self, steps: int = 100, kappa_scale: float = 1.0, allocator: str = "dp",
                 lambdas: tuple = (1.0, 1.0), scale: str = "forward", scale_ratio: float = 0.5,
                 scale_batches: int = 2, cost: str = "flops", latency_round_to: int = 8):
        check_allocator(allocator)
        if scale not in ("forward", "hessian"):
            raise ValueError(f"scale must be 'forward' or 'hessian', not {scale!r}")
        if cost not in ("flops", "latency"):
            raise ValueError(f"cost must be 'flops' or 'latency', not {cost!r}")
        self.steps, self.kappa_scale, self.allocator, self.lambdas = steps, kappa_scale, allocator, tuple(lambdas)
        self.scale, self.scale_ratio, self.scale_batches = scale, scale_ratio, scale_batches
        self.cost, self.latency_round_to = cost, latency_round_to

    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        start = time.perf_counter()
        units = prunable_units(ctx.model)
        c = distortion_curves(ctx.model, ctx.calibration, ctx.cfg, self.steps, self.kappa_scale, self.lambdas)
        factors = {}
        if self.scale == "forward":
            c, factors = forward_scaled(ctx.model, ctx.calibration[:self.scale_batches], c, self.scale_ratio)
        weights, grads, kappa, ratios, curves, flops = c.weights, c.grads, c.kappa, c.ratios, c.curves, c.flops
        numels = {u.name: u.numel for u in units}
        table = None
        if self.cost == "latency":
            table = latency_table(ctx.model, example_inputs(ctx.cfg)["fused"], round_to=self.latency_round_to)
            choice, budget = allocate_for_time(curves, ratios, table.on_grid(ratios), sparsity, self.allocator)
        else:
            choice, budget = allocate_for_sparsity(curves, ratios, flops_costs(flops, ratios), numels, sparsity,
                                                   self.allocator)
        summary_idx = [int(np.argmin(np.abs(ratios - p))) for p in CURVE_SUMMARY_AT]
        info = {
            "kappa": kappa, "kappa_scale": self.kappa_scale, "steps": self.steps, "allocator": self.allocator,
            "scale": self.scale, "scale_ratio": self.scale_ratio, "scale_batches": self.scale_batches,
            "scale_factors": {n: float(f"{f:.3g}") for n, f in factors.items()},
            "calibration_batches": len(ctx.calibration),
            "realised_sparsity": round(sparsity_of(choice, numels), 4),
            "flops_kept": round(budget_used(choice, flops) / sum(flops.values()), 4),
            "cost": self.cost,
            **({"unit_ms_kept": round(table.total(choice) / table.total({n: 0.0 for n in choice}), 4),
                "unit_ms": {n: [round(float(v), 4) for v in ms] for n, ms in table.ms.items()},
                "unit_ms_phis": list(table.phis)} if table else {}),
            "sparsity_by_modality": by_modality(units, choice),
            "phi": {n: round(p, 4) for n, p in choice.items()},
            "curves": {"phi": list(CURVE_SUMMARY_AT),
                       "delta": {n: [float(c[i]) for i in summary_idx] for n, c in curves.items()}},
            "seconds": round(time.perf_counter() - start, 2),
        }
        return Scores(weights={n: (w * grads[n]).abs() for n, w in weights.items()},
                      keep={n: 1.0 - p for n, p in choice.items()}, info=info,
                      sparsity=info["realised_sparsity"] if table else None)


def budget_used(choice: dict, flops: dict) -> float:
    return sum(flops[n] * (1.0 - p) for n, p in choice.items())


def by_modality(units: list, choice: dict) -> dict:
    """modality -> fraction of that modality's prunable parameters removed."""
    out = {}
    for modality in sorted({u.modality for u in units}):
        members = [u for u in units if u.modality == modality]
        out[modality] = round(sum(choice[u.name] * u.numel for u in members) / sum(u.numel for u in members), 4)
    return out


register("dm3d", DM3DScorer)
