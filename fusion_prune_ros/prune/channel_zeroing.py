"""Remove a unit's output channels in place, reversibly, so that a forward pass sees what Torch-Pruning's physical
removal would give: the channel's conv weights, its bias and its BatchNorm's scale and shift are zeroed, so the
channel is exactly zero after the norm (and after ReLU), as if it were not there.

Why: the layer-adaptive allocators (MMPrune4U, DM3D) measure a unit's distortion curve by zeroing its
lowest-magnitude *weights*, but under `channel` granularity the framework removes whole channels. Zeroing a
conv's weights alone would leave the BatchNorm's shift feeding the next layer, which a removed channel does not.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from .granularity import MIN_KEEP
from .units import Unit


def channel_fraction(phi: float) -> float:
    """The fraction of a unit's output channels the framework removes for a parameter fraction phi: 1 - sqrt(1 - phi)
    (a conv's parameters scale with input x output channels, granularity.prune_channels at factor 0.5), capped as
    there so that MIN_KEEP of the channels stay."""
    return min(1.0 - MIN_KEEP, 1.0 - math.sqrt(max(1.0 - phi, 0.0)))


def following_norm(model: nn.Module, unit: Unit) -> nn.Module | None:
    """The BatchNorm right after the unit's conv in its nn.Sequential (conv, norm, activation), or None."""
    parent_name, _, index = unit.name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential) and index.isdigit() and int(index) + 1 < len(parent):
        norm = parent[int(index) + 1]
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            return norm
    return None


def output_channel_norms(unit: Unit) -> torch.Tensor:
    """L1 norm of each output channel's weights (ConvTranspose2d keeps output channels in dim 1)."""
    w = unit.weight.detach().abs()
    out_dim = 1 if isinstance(unit.module, nn.ConvTranspose2d) else 0
    return w.transpose(0, out_dim).flatten(1).sum(1)


@contextmanager
def channels_zeroed(model: nn.Module, unit: Unit, phi: float):
    """Inside: the `channel_fraction(phi)` of the unit's output channels with the smallest L1 norm (at least one
    channel stays) output exactly zero; everything is restored on exit."""
    channels = output_channel_norms(unit).numel()
    with weakest_channels_zeroed(model, unit, min(round(channel_fraction(phi) * channels), channels - 1)) as idx:
        yield idx


@contextmanager
def weakest_channels_zeroed(model: nn.Module, unit: Unit, n: int):
    """Inside: the n output channels of the unit with the smallest L1 norm output exactly zero (yields their
    indices); everything is restored on exit."""
    idx = torch.argsort(output_channel_norms(unit), stable=True)[:n]
    out_dim = 1 if isinstance(unit.module, nn.ConvTranspose2d) else 0
    norm = following_norm(model, unit)
    if norm is not None and not norm.affine:
        raise ValueError(f"{unit.name}: a BatchNorm without scale and shift cannot zero a channel")
    tensors = [unit.weight] + [t for t in (unit.module.bias,) if t is not None]
    if norm is not None:
        tensors += [norm.weight, norm.bias]
    saved = [t.detach().clone() for t in tensors]
    with torch.no_grad():
        unit.weight.index_fill_(out_dim, idx, 0.0)
        for t in tensors[1:]:
            t[idx] = 0.0
    try:
        yield idx
    finally:
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)
