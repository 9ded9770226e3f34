"""DM3D-style post-training pruning (Xu et al., 2024; docs/pruning.md, "DM3D-style"): keep the *detection* output,
not the loss.

Distortion lives on the head outputs: locality (the ten regression maps at the dense model's object centres,
`object_cells.object_mask`, the only cells where training supervises regression) plus confidence (sigmoid heatmaps,
every cell), equal weights: s(x) = ||y_loc||^2 + ||y_conf||^2 per frame. For every unit, g_u = ds/dW_u averaged over the calibration
batches (eval mode). With the first-order term dropped and the cheap Hessian H_u ~ g_u g_u^T + kappa I,

    delta_u(phi) = 0.5 dW^T H_u dW = 0.5 ((g . dW)^2 + kappa ||dW||^2),

dW = -w on the weights removed at ratio phi (ranked by |w g|, lowest first). The matrix is never formed: both terms
are read off cumulative sums over the ranked weights (the signed sum of g_i w_i, then squared; the sum of w_i^2).
The units' pruned fractions come from the knapsack of `knapsack.py` under a FLOPs budget, the budget itself
bisected until the prunable-parameter sparsity is the requested one. The method is the importance |w g|
(`OutputTaylorImportance`) and this allocation (`HessianCurveAllocator`), both reading the same g
(`OutputGradients`).

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
- A time target (not in the paper, which budgets FLOPs; docs/pruning.md, "A measured latency table instead of
  FLOPs"): the knapsack spends measured milliseconds per (unit, ratio) from `latency_table`, and the target is the
  fraction of the units' measured time to remove (`allocate_for_time`); the parameters removed are whatever that
  costs, and the granularity prunes to that parameter fraction. The sweep keeps FLOPs and parameter targets, the
  paper's budget and the tables' axis.

What to expect (measured on the randomly initialised small detector): within a unit, the Hessian curve ranks the
ratios like the forward-measured E||y - y_u(phi)||^2 (Spearman 0.84 to 1.0 over 20 ratios, all 25 units), but
its scale relative to the forward curve varies by up to 1e7 between units: g = 2 J^T y weighs an output change by
the output itself, so coherent shifts of large outputs dominate. The allocation compares units on that scale.
"""
from __future__ import annotations

import numpy as np

from ...model.flops import example_inputs
from ..allocation import Allocation, Allocator
from ..calibration import PruneContext
from ..gradients import objective_gradients
from ..importance import Importance, Scores
from ..knapsack import allocate_for_sparsity, allocate_for_time, by_modality, check_allocator, sparsity_of
from ..latency_table import LatencyTable, latency_table
from ..method import Method
from ..target import PARAMS, TIME, Target
from ..unit_flops import budget_used, flops_costs
from ..units import prunable_units, weights_of
from .hessian_curves import Curves, distortion_curves, forward_scaled

CURVE_SUMMARY_AT = (0.25, 0.5, 0.75, 0.9)


def dm3d(steps: int = 100, kappa_scale: float = 1.0, allocator: str = "dp", lambdas: tuple = (1.0, 1.0),
         scale: str = "forward", scale_ratio: float = 0.5, scale_batches: int = 2, latency_round_to: int = 8) -> Method:
    """|w g| within a unit; per-unit keep ratios from the Hessian distortion curves, allocated under a FLOPs budget
    for a parameter target or under the measured latency table (widths rounded to `latency_round_to`) for a time
    target. `steps`: grid size (phi = 0, 1/steps, ..., (steps-1)/steps). `scale`: "forward" puts each unit's curve
    on the forward-measured scale at phi = `scale_ratio` (`scale_batches` calibration batches), "hessian" allocates
    on the raw curves."""
    gradients = OutputGradients(tuple(lambdas))
    return Method(OutputTaylorImportance(gradients),
                  HessianCurveAllocator(gradients, steps, kappa_scale, allocator, scale, scale_ratio, scale_batches,
                                        latency_round_to))


class OutputGradients:
    """g = ds/dW of the output objective (`objective_gradients`) on ctx.calibration, measured once per model and
    calibration set: DM3D's importance and its curves read the same g, and the backward passes over every
    calibration batch are the costliest step the two share."""

    def __init__(self, lambdas: tuple):
        self.lambdas = lambdas
        self._measured = None  # (model, calibration, gradients)

    def __call__(self, ctx: PruneContext) -> dict:
        m = self._measured
        if m is None or m[0] is not ctx.model or m[1] is not ctx.calibration:
            self._measured = (ctx.model, ctx.calibration,
                              objective_gradients(ctx.model, ctx.calibration, self.lambdas))
        return self._measured[2]


class OutputTaylorImportance(Importance):
    """|w g|: the first-order change of the head-output energy when w is removed."""

    def __init__(self, gradients: OutputGradients):
        self.gradients = gradients

    def __call__(self, ctx: PruneContext) -> Scores:
        grads = self.gradients(ctx)
        return Scores({n: (w * grads[n]).abs() for n, w in weights_of(ctx.model).items()})


class HessianCurveAllocator(Allocator):
    """DM3D's allocation, with the options of `dm3d`; see the module docstring."""

    targets = (PARAMS, TIME)

    def __init__(self, gradients: OutputGradients, steps: int, kappa_scale: float, allocator: str, scale: str,
                 scale_ratio: float, scale_batches: int, latency_round_to: int):
        check_allocator(allocator)
        if scale not in ("forward", "hessian"):
            raise ValueError(f"scale must be 'forward' or 'hessian', not {scale!r}")
        self.gradients, self.steps, self.kappa_scale, self.allocator = gradients, steps, kappa_scale, allocator
        self.scale, self.scale_ratio, self.scale_batches = scale, scale_ratio, scale_batches
        self.latency_round_to = latency_round_to

    def __call__(self, ctx: PruneContext, scores: Scores, target: Target, granularity: str) -> Allocation:
        c = distortion_curves(ctx.model, ctx.calibration, ctx.cfg, self.steps, self.kappa_scale,
                              self.gradients.lambdas, grads=self.gradients(ctx))
        factors = {}
        if self.scale == "forward":
            c, factors = forward_scaled(ctx.model, ctx.calibration[:self.scale_batches], c, self.scale_ratio)
        numels = {u.name: u.numel for u in prunable_units(ctx.model)}
        table = None
        if target.kind == TIME:
            table = latency_table(ctx.model, example_inputs(ctx.cfg)["fused"], round_to=self.latency_round_to)
            choice, _ = allocate_for_time(c.curves, c.ratios, table.on_grid(c.ratios), target.fraction,
                                          self.allocator)
        else:
            choice, _ = allocate_for_sparsity(c.curves, c.ratios, flops_costs(c.flops, c.ratios), numels,
                                              target.fraction, self.allocator)
        info = self._info(ctx, c, factors, choice, table)
        # Under a time target the granularity prunes the parameters the chosen ratios remove (as recorded).
        sparsity = info["realised_sparsity"] if table else target.fraction
        return Allocation(sparsity, {n: 1.0 - p for n, p in choice.items()}, info)

    def _info(self, ctx: PruneContext, c: Curves, factors: dict, choice: dict, table: LatencyTable | None) -> dict:
        """What the allocation measured and chose, for the variant manifest."""
        units = prunable_units(ctx.model)
        summary_idx = [int(np.argmin(np.abs(c.ratios - p))) for p in CURVE_SUMMARY_AT]
        return {
            "kappa": c.kappa, "kappa_scale": self.kappa_scale, "steps": self.steps, "allocator": self.allocator,
            "scale": self.scale, "scale_ratio": self.scale_ratio, "scale_batches": self.scale_batches,
            "scale_factors": {n: float(f"{f:.3g}") for n, f in factors.items()},
            "calibration_batches": len(ctx.calibration),
            "realised_sparsity": round(sparsity_of(choice, {u.name: u.numel for u in units}), 4),
            "flops_kept": round(budget_used(choice, c.flops) / sum(c.flops.values()), 4),
            "cost": "latency" if table else "flops",
            **({"unit_ms_kept": round(table.total(choice) / table.total({n: 0.0 for n in choice}), 4),
                "unit_ms": {n: [round(float(v), 4) for v in ms] for n, ms in table.ms.items()},
                "unit_ms_phis": list(table.phis)} if table else {}),
            "sparsity_by_modality": by_modality(units, choice),
            "phi": {n: round(p, 4) for n, p in choice.items()},
            "curves": {"phi": list(CURVE_SUMMARY_AT),
                       "delta": {n: [float(v[i]) for i in summary_idx] for n, v in c.curves.items()}},
        }
