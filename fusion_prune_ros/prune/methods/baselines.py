"""Single-modal baselines (docs/pruning.md, "Baselines"): magnitude, first-order Taylor, SNIP and random
importance, each pruned by one global threshold."""
from __future__ import annotations

import torch

from ..calibration import PruneContext
from ..gradients import weight_gradients
from ..importance import Importance, Scores
from ..units import weights_of


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
    """Uniform random scores from a generator seeded by ctx.seed: the floor every method must clear."""

    def __call__(self, ctx: PruneContext) -> Scores:
        gen = torch.Generator().manual_seed(ctx.seed)
        return Scores({k: torch.rand(w.shape, generator=gen) for k, w in weights_of(ctx.model).items()})
