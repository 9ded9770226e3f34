"""MMPrune4U-style layer-adaptive pruning that protects each modality's information (Das et al.,
BMVC 2024; docs/pruning.md, "MMPrune4U-style").

Known from the abstract only; reconstructed. Per unit u and pruned fraction phi on a coarse grid, with u's
lowest-magnitude weights zeroed:

    cost_u(phi) = D_u(phi) / D_ref + gamma * R_u(phi)
    D_u(phi)    = E ||y - y_u(phi)||^2          y: sigmoid heatmaps and regression maps per frame (forward-measured)
    R_u(phi)    = sum_m |FFI_m(pruned) - FFI_m(dense)| / FFI_m(dense)
    FFI_m       = E[ ||grad_{x_m} f||^2 / f ]   functional Fisher information (Gat et al., NeurIPS 2020)

f is the mean sigmoid heatmap score of a frame (a positive scalar) and x_m the modality's BEV map at the fuser
input, perturbed with Gaussian noise of std `noise` x the map's std. The perturbation is injected by a forward
pre-hook on `model.fuser` (its inputs are (lidar_bev, camera_bev)); the gradient is taken against the perturbed
maps, so the backward pass stops at the fuser. The allocation is the knapsack of `allocate` under a
parameter budget (1 - sparsity) x prunable parameters; weights are ranked by magnitude within a unit.

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
- The optional fine-tuning regulariser gamma * sum_m 1 / FFI_m (Gat-style: keep every modality informative) is
  normalised by the dense model's FFI_m (so it starts at 2 gamma; raw FFI is about 1e-10 here). It runs its own
  forward pass on the batch, in eval mode, with the noisy fuser inputs (the training forward's fuser inputs are
  not reachable from its outputs), and needs double backward; it is off by default (`regularise=False`).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
from torch import nn

from ..allocate import ALLOCATORS, check_allocator
from ..calibration import PruneContext, outputs
from ..channel_zeroing import channels_zeroed
from ..units import prunable_units
from . import register
from .base import Scorer, Scores, weights_of
from .dm3d import by_modality, output_vector, sparsity_of, zeroed

GRID = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)
MODALITIES = ("lidar", "camera")  # the fuser's inputs, in order


@contextmanager
def noisy_fuser_inputs(model: nn.Module, make_noise):
    """Inside: the fuser's inputs are x_m + noise_m with noise = make_noise((lidar, camera)); every forward pass
    appends ((perturbed lidar, perturbed camera), noise) to the yielded list. The perturbed maps require grad so
    that the gradient can be taken against them (autograd stops there: the branches are not traversed)."""
    captured = []

    def perturb(module, args):
        noise = make_noise(args)
        maps = tuple(x + n for x, n in zip(args, noise))
        maps = tuple(x if x.requires_grad else x.requires_grad_(True) for x in maps)
        captured.append((maps, noise))
        return maps

    handle = model.fuser.register_forward_pre_hook(perturb)
    try:
        yield captured
    finally:
        handle.remove()


def gaussian_noise(scale: float, generator: torch.Generator):
    """A make_noise drawing, per modality map, Gaussian noise of std = scale x that map's std."""
    def make_noise(maps: tuple) -> list:
        return [torch.randn(x.shape, generator=generator) * scale * float(x.detach().std()) for x in maps]
    return make_noise


def measure(model: nn.Module, batch: dict, make_noise, create_graph: bool = False) -> tuple:
    """(y per frame, {modality: FFI per frame}, the noise used) of one noisy forward pass. FFI_m = ||grad_{x_m}
    f||^2 / f with f the mean sigmoid heatmap score of each frame (frames are independent in eval mode, so one
    backward of sum f gives every frame's gradient). create_graph keeps FFI differentiable (the regulariser)."""
    with noisy_fuser_inputs(model, make_noise) as captured:
        heat, reg = outputs(model, batch)
    (maps, noise), = captured
    f = torch.sigmoid(heat).flatten(1).mean(1)
    grads = torch.autograd.grad(f.sum(), list(maps), create_graph=create_graph)
    ffi = {m: g.flatten(1).pow(2).sum(1) / f for m, g in zip(MODALITIES, grads)}
    if not create_graph:
        ffi = {m: v.detach() for m, v in ffi.items()}
    return output_vector(heat, reg).detach(), ffi, noise


def information_regulariser(gamma: float, noise_scale: float, seed: int, reference: dict):
    """The Gat-style fine-tuning term gamma * sum_m FFI_m(dense) / FFI_m on a batch, as a callable
    (model, batch, outputs). FFI with f a *mean* score is tiny (about 1e-10 on the small detector), so 1 / FFI_m is
    divided by the dense model's value (`reference`, per modality): the term is 2 gamma at the start.

    It runs its own forward pass in eval mode (BatchNorm statistics untouched, frames independent; the training
    forward's fuser inputs are not reachable from its outputs, which are therefore unused) and restores the mode."""
    make_noise = gaussian_noise(noise_scale, torch.Generator().manual_seed(seed))

    def regulariser(model: nn.Module, batch: dict, outputs_=None) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            _, ffi, _ = measure(model, batch, make_noise, create_graph=True)
        finally:
            model.train(was_training)
        return gamma * sum(reference[m] / ffi[m].mean().clamp(min=1e-30) for m in MODALITIES)

    return regulariser


class MMPrune4UScorer(Scorer):
    """|w| within a unit; per-unit keep ratios from forward-measured output distortion plus the modality
    information term, allocated under a parameter budget."""

    name = "mmprune4u"

    def __init__(self, gamma: float = 1.0, noise: float = 0.1, curve_batches: int = 2, grid: tuple = GRID,
                 allocator: str = "dp", regularise: bool = False, channel_curves: bool = False):
        check_allocator(allocator)
        self.gamma, self.noise, self.curve_batches = gamma, noise, curve_batches
        self.grid, self.allocator, self.regularise = np.asarray(grid, dtype=float), allocator, regularise
        self.channel_curves = channel_curves

    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        start = time.perf_counter()
        model, batches = ctx.model, ctx.calibration[:self.curve_batches]
        units = prunable_units(model)
        was_training = model.training
        model.eval()
        try:
            make_noise = gaussian_noise(self.noise, torch.Generator().manual_seed(ctx.seed))
            by_channel = self.channel_curves and granularity == "channel"
            dense = [measure(model, b, make_noise) for b in batches]
            ffi_dense = {m: float(np.mean([float(ffi[m].mean()) for _, ffi, _ in dense])) for m in MODALITIES}
            distortion, change = {}, {}
            for u in units:
                order = torch.argsort(u.weight.detach().abs().flatten(), stable=True)
                prune = partial(channels_zeroed, model, u) if by_channel else partial(zeroed, u, order)
                distortion[u.name], change[u.name] = self._curves(model, prune, batches, dense, ffi_dense)
        finally:
            model.train(was_training)
        d_ref = float(np.mean([d[-1] for d in distortion.values()])) or 1.0
        curves = {n: distortion[n] / d_ref + self.gamma * change[n] for n in distortion}
        numels = {u.name: u.numel for u in units}
        costs = {n: numels[n] * (1.0 - self.grid) for n in numels}
        choice = ALLOCATORS[self.allocator](curves, self.grid, costs, (1.0 - sparsity) * sum(numels.values()))
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
            "seconds": round(time.perf_counter() - start, 2),
        }
        regulariser = information_regulariser(self.gamma, self.noise, ctx.seed, ffi_dense) if self.regularise else None
        return Scores(weights={n: w.abs() for n, w in weights_of(model).items()}, keep=keep,
                      regulariser=regulariser, info=info)

    def _curves(self, model, prune, batches, dense, ffi_dense) -> tuple:
        """D_u and R_u on the grid for one unit, `prune(phi)` the context that removes its fraction phi; every
        batch reuses the noise of its dense pass."""
        d, r = np.zeros(len(self.grid)), np.zeros(len(self.grid))
        for k, phi in enumerate(self.grid):
            if phi == 0.0:
                continue  # the dense model: D = R = 0 by construction
            with prune(float(phi)):
                measured = [measure(model, b, lambda maps, n=noise: n) for b, (_, _, noise) in zip(batches, dense)]
            d[k] = np.mean([float(((y - y0) ** 2).sum(1).mean()) for (y, _, _), (y0, _, _) in zip(measured, dense)])
            r[k] = sum(abs(np.mean([float(ffi[m].mean()) for _, ffi, _ in measured]) - ffi_dense[m]) / ffi_dense[m]
                       for m in MODALITIES)
        return d, r


register("mmprune4u", MMPrune4UScorer)
