"""Single-modal baselines (docs/pruning.md, "Baselines"): magnitude, first-order Taylor, SNIP and random
importance, each pruned by one global threshold."""
from __future__ import annotations

import torch
from torch import nn

from ..calibration import PruneContext
from ..gradients import weight_gradients
from ..importance import Importance, Scores
from ..units import prunable_units, weights_of


class MagnitudeImportance(Importance):
    """|w|: the classic baseline, no data."""

    def __call__(self, ctx: PruneContext) -> Scores:
        return Scores({k: w.abs() for k, w in weights_of(ctx.model).items()})


class TaylorImportance(Importance):
    """|w * dL/dw| with the gradient averaged over the calibration batches (first-order Taylor estimate of the
    loss change when w is removed)."""

    def __call__(self, ctx: PruneContext) -> Scores:
        grads = weight_gradients(ctx.model, ctx.calibration)
        return Scores({k: (w * grads[k]).abs() for k, w in weights_of(ctx.model).items()})


class SnipImportance(Importance):
    """SNIP's connection sensitivity |w * dL/dw| from one batch, normalised to sum 1 over all units. On a trained
    model this is close to Taylor (one batch instead of the average): the results say so."""

    def __call__(self, ctx: PruneContext) -> Scores:
        grads = weight_gradients(ctx.model, ctx.calibration[:1])
        raw = {k: (w * grads[k]).abs() for k, w in weights_of(ctx.model).items()}
        total = sum(float(v.sum()) for v in raw.values()) or 1.0
        return Scores({k: v / total for k, v in raw.items()})


class RandomImportance(Importance):
    """The floor every method must clear: uniform random scores from generators seeded by ctx.seed.

    Per weight for the unstructured and 2:4 granularities. For the channel granularity one i.i.d. uniform score per
    output channel, the same for every weight of that channel: the granularity ranks a channel by the mean score of
    the weights it removes, and independent per-weight draws averaged over a channel concentrate around 0.5 the
    more weights the channel has, so they would rank channels by fan-in rather than at random. With one draw per
    output channel, the weights a consumer conv loses with channel c score the mean of that conv's channel draws,
    the same for every c, and the ranking within a group is the draws' own."""

    def __call__(self, ctx: PruneContext) -> Scores:
        gen = torch.Generator().manual_seed(ctx.seed)
        weights = {k: torch.rand(w.shape, generator=gen) for k, w in weights_of(ctx.model).items()}
        channel_gen = torch.Generator().manual_seed(ctx.seed)
        channels = {}
        for u in prunable_units(ctx.model):
            out_dim = 1 if isinstance(u.module, nn.ConvTranspose2d) else 0
            draws = torch.rand(u.weight.shape[out_dim], generator=channel_gen)
            shape = [1] * u.weight.dim()
            shape[out_dim] = -1
            channels[u.name] = draws.view(shape).expand(u.weight.shape).clone()
        return Scores(weights, channel_weights=channels)
