"""Functional Fisher information of each modality at the fuser input (Gat et al., NeurIPS 2020), as MMPrune4U
measures it (docs/pruning.md, "MMPrune4U-style"), and the fine-tuning term built on it.

FFI_m = E[ ||grad_{x_m} f||^2 / f ], f the mean sigmoid heatmap score of a frame (a positive scalar) and x_m the
modality's BEV map at the fuser input, perturbed with Gaussian noise of std `noise` x the map's std. The
perturbation is injected by a forward pre-hook on `model.fuser` (its inputs are (lidar_bev, camera_bev)); the
gradient is taken against the perturbed maps, so the backward pass stops at the fuser.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..calibration import PruneContext, outputs
from ..object_cells import object_mask
from ..output_distortion import output_vector
from ..regularisation import FineTuneLoss

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


@dataclass
class Measurement:
    """One noisy forward pass on a batch: what MMPrune4U's curves and its fine-tuning term read."""

    y: torch.Tensor  # (B, D) `output_vector`, regression at the cells of `mask`
    ffi: dict  # modality -> (B,) FFI per frame
    noise: list  # the noise added to each modality's map, reused for the pruned passes
    mask: torch.Tensor  # (B, 1, H, W) object centres (`object_mask`) of the dense model's heatmap


def measure(model: nn.Module, batch: dict, make_noise, create_graph: bool = False,
            mask: torch.Tensor | None = None) -> Measurement:
    """One noisy forward pass. FFI_m = ||grad_{x_m} f||^2 / f with f the mean sigmoid heatmap score of each frame
    (frames are independent in eval mode, so one backward of sum f gives every frame's gradient). create_graph keeps
    FFI differentiable (the regulariser). `mask`: the dense model's object centres, which select the regression of
    y (None: this pass is the dense one, its own heatmap's)."""
    with noisy_fuser_inputs(model, make_noise) as captured:
        heat, reg = outputs(model, batch)
    (maps, noise), = captured
    f = torch.sigmoid(heat).flatten(1).mean(1)
    grads = torch.autograd.grad(f.sum(), list(maps), create_graph=create_graph)
    ffi = {m: g.flatten(1).pow(2).sum(1) / f for m, g in zip(MODALITIES, grads)}
    if not create_graph:
        ffi = {m: v.detach() for m, v in ffi.items()}
    mask = object_mask(heat) if mask is None else mask
    return Measurement(output_vector(heat, reg, mask).detach(), ffi, noise, mask)


def dense_measures(model: nn.Module, batches: list, noise_scale: float, seed: int) -> list:
    """`measure` of every batch in eval mode, the noise drawn from a generator seeded by `seed`: MMPrune4U's dense
    reference, which its curves and its fine-tuning term both read (the same draws, so the same values)."""
    make_noise = gaussian_noise(noise_scale, torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    try:
        return [measure(model, b, make_noise) for b in batches]
    finally:
        model.train(was_training)


def mean_information(measured: list) -> dict:
    """modality -> FFI averaged over the frames of every measured batch (batches weighted equally)."""
    return {m: float(np.mean([float(x.ffi[m].mean()) for x in measured])) for m in MODALITIES}


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
            ffi = measure(model, batch, make_noise, create_graph=True).ffi
        finally:
            model.train(was_training)
        return gamma * sum(reference[m] / ffi[m].mean().clamp(min=1e-30) for m in MODALITIES)

    return regulariser


class InformationLoss(FineTuneLoss):
    """MMPrune4U's optional fine-tuning term, against the FFI of the dense model on the curves' calibration batches."""

    def __init__(self, gamma: float, noise: float, curve_batches: int):
        self.gamma, self.noise, self.curve_batches = gamma, noise, curve_batches

    def bind(self, ctx: PruneContext, student: nn.Module):
        reference = mean_information(dense_measures(ctx.model, ctx.calibration[:self.curve_batches], self.noise,
                                                    ctx.seed))
        return information_regulariser(self.gamma, self.noise, ctx.seed, reference)
