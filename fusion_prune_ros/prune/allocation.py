"""Allocation: how much of a target each prunable unit pays (docs/pruning.md, "The framework").

An `Allocator` turns the importance scores and a target into an `Allocation`: per-unit keep ratios (a
layer-adaptive allocator: DM3D's and MMPrune4U's knapsacks over distortion curves, knapsack.py), or one global
ranking of the scores (`GlobalThreshold`), which the granularity applies because only it knows what one pruned
element is (a weight, or a channel with everything its dependency group deletes). Either way the granularity gets
the fraction of prunable parameters to remove, also when the target was time.

`global_threshold` and `uniform` are the same two score-based rules as keep ratios per unit.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterable

import torch

from .calibration import PruneContext
from .importance import Scores
from .target import PARAMS, Target


@dataclass(frozen=True)
class Allocation:
    """sparsity: the fraction of prunable parameters the granularity removes (under a time target, what the chosen
    ratios remove). keep: unit name -> keep ratio, or None for one global ranking of the scores. info: what the
    allocator measured and chose, for the variant manifest."""

    sparsity: float
    keep: dict | None = None
    info: dict = field(default_factory=dict)


class Allocator(ABC):
    targets: tuple = (PARAMS,)  # the target kinds it can meet

    @abstractmethod
    def __call__(self, ctx: PruneContext, scores: Scores, target: Target, granularity: str) -> Allocation:
        """Split `target` over the prunable units of ctx.model, given the importance `scores`."""


class GlobalThreshold(Allocator):
    """One threshold over all units' scores: a unit keeps what scores above it."""

    def __call__(self, ctx: PruneContext, scores: Scores, target: Target, granularity: str) -> Allocation:
        return Allocation(target.fraction)


def global_threshold(scores: dict, sparsity: float) -> dict:
    """unit name -> keep ratio when the `sparsity` fraction of all weights with the lowest scores goes.

    Exact under ties: weights are ranked by (score, position), so exactly round(sparsity * total) weights go."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().flatten().float() for n in names])
    owner = torch.cat([torch.full((scores[n].numel(),), i) for i, n in enumerate(names)])
    n_prune = int(round(sparsity * flat.numel()))
    lowest = torch.argsort(flat, stable=True)[:n_prune]
    pruned = torch.bincount(owner[lowest], minlength=len(names))
    return {n: 1.0 - float(pruned[i]) / scores[n].numel() for i, n in enumerate(names)}


def uniform(units: Iterable, sparsity: float) -> dict:
    """unit name -> 1 - sparsity for every unit (`units`: `Unit`s or names)."""
    return {getattr(u, "name", u): 1.0 - sparsity for u in units}
