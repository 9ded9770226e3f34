"""Single-modal baselines (docs/pruning.md, "Baselines"): magnitude, first-order Taylor, SNIP, random."""
from __future__ import annotations

import torch

from ..calibration import PruneContext
from .base import Scorer, Scores, weight_gradients, weights_of


class MagnitudeScorer(Scorer):
    """|w|: the classic baseline, no data."""

    name = "magnitude"

    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        return Scores({k: w.abs() for k, w in weights_of(ctx.model).items()})


class TaylorScorer(Scorer):
    """|w * dL/dw| with the gradient averaged over the calibration batches (first-order Taylor estimate of the
    loss change when w is removed)."""

    name = "taylor"

    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        grads = weight_gradients(ctx.model, ctx.calibration)
        return Scores({k: (w * grads[k]).abs() for k, w in weights_of(ctx.model).items()})


class SnipScorer(Scorer):
    """SNIP's connection sensitivity |w * dL/dw| from one batch, normalised to sum 1 over all units. On a trained
    model this is close to Taylor (one batch instead of the average): the results say so."""

    name = "snip"

    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        grads = weight_gradients(ctx.model, ctx.calibration[:1])
        raw = {k: (w * grads[k]).abs() for k, w in weights_of(ctx.model).items()}
        total = sum(float(v.sum()) for v in raw.values()) or 1.0
        return Scores({k: v / total for k, v in raw.items()})


class RandomScorer(Scorer):
    """Uniform random scores: the floor every method must clear."""

    name = "random"

    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        gen = torch.Generator().manual_seed(ctx.seed)
        return Scores({k: torch.rand(w.shape, generator=gen) for k, w in weights_of(ctx.model).items()})
