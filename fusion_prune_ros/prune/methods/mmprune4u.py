"""MMPrune4U-style layer-adaptive pruning that protects each modality's information (Das et al.,
BMVC 2024; docs/pruning.md, "MMPrune4U-style").

Known from the abstract only; reconstructed. The method is magnitude importance, a layer-adaptive allocation over
per-unit cost curves, and an optional fine-tuning term. Per unit u and pruned fraction phi on a coarse grid, with
u's lowest-magnitude weights zeroed:

    cost_u(phi) = D_u(phi) / D_ref + gamma * R_u(phi)
    D_u(phi)    = E ||y - y_u(phi)||^2          y: sigmoid heatmaps, and regression maps at the dense model's
                                                object centres, per frame (forward-measured, `output_distortion`)
    R_u(phi)    = sum_m |FFI_m(pruned) - FFI_m(dense)| / FFI_m(dense)
    FFI_m       = E[ ||grad_{x_m} f||^2 / f ]   functional Fisher information (Gat et al., NeurIPS 2020)

f is the mean sigmoid heatmap score of a frame and x_m the modality's BEV map at the fuser input under Gaussian
noise (fisher_information.py). The allocation is the knapsack of `knapsack.py` under a parameter budget
(1 - sparsity) x prunable parameters; weights are ranked by magnitude within a unit.

Cost: units x grid x batches forward passes, each with a backward through fuser, BEV backbone and head only. To
bound it, the curves use only the first `curve_batches` (default 2) calibration batches and a coarse grid
(`GRID`, 7 points).

Choices where the abstract is silent (docs/pruning.md lists them beside the paper's):
- `channel_curves=True` (channel granularity only): a unit at phi loses its lowest-L1 output channels, the fraction
  the framework would remove (`channel_zeroing`), instead of its lowest-magnitude weights. The weight-zeroing curves
  are what the paper's allocation prices, but a channel-pruned variant never loses scattered weights: the curves then
  price a different network from the one deployed (measured in docs/pruning.md).
- D is normalised by D_ref, the mean over units of D_u at the largest grid ratio, so gamma is dimensionless:
  gamma = 1 weighs a 100 % change of one modality's FFI like the average unit's worst-case output distortion.
- D and FFI are measured in the same noisy forward pass; the dense reference uses the same noise draw, so the
  noise cancels in D and in R (a unit that does not influence the output gets D = R = 0 exactly).
- The optional fine-tuning term gamma * sum_m 1 / FFI_m (Gat-style: keep every modality informative) is
  normalised by the dense model's FFI_m (so it starts at 2 gamma; raw FFI is about 1e-10 here). It runs its own
  forward pass on the batch, in eval mode, with the noisy fuser inputs (the training forward's fuser inputs are
  not reachable from its outputs), and needs double backward; it is off by default (`regularise=False`).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from ..allocation import Allocation, Allocator
from ..calibration import PruneContext
from ..channel_zeroing import channels_zeroed
from ..importance import Scores
from ..knapsack import ALLOCATORS, by_modality, check_allocator, sparsity_of
from ..method import Method
from ..output_distortion import zeroed
from ..target import Target
from ..units import prunable_units
from .baselines import MagnitudeImportance
from .fisher_information import MODALITIES, InformationLoss, dense_measures, mean_information, measure

GRID = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)


def mmprune4u(gamma: float = 1.0, noise: float = 0.1, curve_batches: int = 2, grid: tuple = GRID,
              allocator: str = "dp", regularise: bool = False, channel_curves: bool = False) -> Method:
    """|w| within a unit; per-unit keep ratios from the forward-measured output distortion plus the modality
    information term, allocated under a parameter budget; with `regularise`, the information term in fine-tuning."""
    return Method(MagnitudeImportance(),
                  InformationCurveAllocator(gamma, noise, curve_batches, grid, allocator, channel_curves),
                  loss=InformationLoss(gamma, noise, curve_batches) if regularise else None)


class InformationCurveAllocator(Allocator):
    """MMPrune4U's allocation, with the options of `mmprune4u`; see the module docstring. A unit's curve prices
    removing its lowest-scoring weights (or, with `channel_curves` under channel granularity, its weakest output
    channels)."""

    def __init__(self, gamma: float, noise: float, curve_batches: int, grid: tuple, allocator: str,
                 channel_curves: bool):
        check_allocator(allocator)
        self.gamma, self.noise, self.curve_batches = gamma, noise, curve_batches
        self.grid, self.allocator = np.asarray(grid, dtype=float), allocator
        self.channel_curves = channel_curves

    def __call__(self, ctx: PruneContext, scores: Scores, target: Target, granularity: str) -> Allocation:
        model, batches = ctx.model, ctx.calibration[:self.curve_batches]
        units = prunable_units(model)
        by_channel = self.channel_curves and granularity == "channel"
        dense = dense_measures(model, batches, self.noise, ctx.seed)
        ffi_dense = mean_information(dense)
        was_training = model.training
        model.eval()
        try:
            distortion, change = {}, {}
            for u in units:
                order = torch.argsort(scores.weights[u.name].flatten(), stable=True)
                prune = partial(channels_zeroed, model, u) if by_channel else partial(zeroed, u, order)
                distortion[u.name], change[u.name] = self._curves(model, prune, batches, dense, ffi_dense)
        finally:
            model.train(was_training)
        d_ref = float(np.mean([d[-1] for d in distortion.values()])) or 1.0
        curves = {n: distortion[n] / d_ref + self.gamma * change[n] for n in distortion}
        numels = {u.name: u.numel for u in units}
        costs = {n: numels[n] * (1.0 - self.grid) for n in numels}
        choice = ALLOCATORS[self.allocator](curves, self.grid, costs, (1.0 - target.fraction) * sum(numels.values()))
        keep = {n: 1.0 - p for n, p in choice.items()}
        info = {
            "gamma": self.gamma, "noise_sigma_over_std": self.noise, "grid": self.grid.tolist(),
            "curve_batches": len(batches), "curves": "channels" if by_channel else "weights",
            "allocator": self.allocator, "d_ref": d_ref, "ffi_dense": ffi_dense,
            "realised_sparsity": round(sparsity_of(choice, numels), 4),
            "sparsity_by_modality": by_modality(units, choice),
            "keep_by_modality": {m: round(float(np.mean([keep[u.name] for u in units if u.modality == m])), 4)
                                 for m in sorted({u.modality for u in units})},
            "phi": {n: round(p, 4) for n, p in choice.items()},
            "cost_curves": {n: [float(f"{v:.4g}") for v in curves[n]] for n in curves},  # what the DP saw
        }
        return Allocation(target.fraction, keep, info)

    def _curves(self, model, prune, batches, dense, ffi_dense) -> tuple:
        """D_u and R_u on the grid for one unit, `prune(phi)` the context that removes its fraction phi; every
        batch reuses the noise and the object centres of its dense pass."""
        d, r = np.zeros(len(self.grid)), np.zeros(len(self.grid))
        for k, phi in enumerate(self.grid):
            if phi == 0.0:
                continue  # the dense model: D = R = 0 by construction
            with prune(float(phi)):
                measured = [measure(model, b, lambda maps, n=x0.noise: n, mask=x0.mask)
                            for b, x0 in zip(batches, dense)]
            d[k] = np.mean([float(((x.y - x0.y) ** 2).sum(1).mean()) for x, x0 in zip(measured, dense)])
            r[k] = sum(abs(np.mean([float(x.ffi[m].mean()) for x in measured]) - ffi_dense[m]) / ffi_dense[m]
                       for m in MODALITIES)
        return d, r
