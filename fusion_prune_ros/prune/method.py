"""A pruning method as a composition: an optional weight update, an importance, an allocator and an optional
fine-tuning loss (docs/pruning.md, "The framework"). registry.py names every method and its composition.

`Method.plan` runs the steps that decide what to prune, in order: the update moves the weights, the importance
scores the (moved) weights, the allocator splits the target over the units. The granularity then prunes
(variant._apply) and the fine-tuning loss is bound to the result (`FineTuneLoss.bind`).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..errors import UserError
from .allocation import Allocation, Allocator, GlobalThreshold
from .calibration import PruneContext
from .importance import Importance, Scores
from .regularisation import FineTuneLoss, WeightUpdate
from .target import Target

# The info key under which every method records the optimiser steps its own steps take before pruning
# (CrossPrune's ADMM W-steps, AlterMOMA's reactivation), beside the fine-tuning every method gets alike: one name,
# 0 where a method takes none, so the results table can count it.
EXTRA_OPTIMISER_STEPS = "extra_optimiser_steps"


@dataclass
class Plan:
    """What to prune. model: the network the granularity prunes (ctx.model, or a copy carrying the updated
    weights). info: what every step measured and chose, for the variant manifest."""

    model: nn.Module
    scores: Scores
    allocation: Allocation
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    importance: Importance
    allocator: Allocator = field(default_factory=GlobalThreshold)
    update: WeightUpdate | None = None
    loss: FineTuneLoss | None = None

    @property
    def targets(self) -> tuple:
        """The target kinds this method can prune to: its allocator's."""
        return self.allocator.targets

    def plan(self, ctx: PruneContext, target: Target, granularity: str) -> Plan:
        if target.kind not in self.targets:
            raise UserError(f"{type(self.allocator).__name__} cannot meet a {target.kind} target "
                            f"(it meets {', '.join(self.targets)})")
        seconds = {}
        start = time.perf_counter()
        info = {"composition": self.composition()}
        if self.update is not None:
            updated = self.update(ctx, target, granularity)
            ctx = replace(ctx, model=with_weights(ctx.model, updated.weights))
            info.update(updated.info)
            seconds["update"], start = round(time.perf_counter() - start, 2), time.perf_counter()
        scores = self.importance(ctx)
        seconds["importance"], start = round(time.perf_counter() - start, 2), time.perf_counter()
        allocation = self.allocator(ctx, scores, target, granularity)
        seconds["allocation"] = round(time.perf_counter() - start, 2)
        steps = sum(part.get(EXTRA_OPTIMISER_STEPS, 0) for part in (info, scores.info, allocation.info))
        return Plan(ctx.model, scores, allocation, {**info, **scores.info, **allocation.info, "step_seconds": seconds,
                                                    EXTRA_OPTIMISER_STEPS: steps})

    def composition(self) -> dict:
        """step -> the class that does it (None: the method has no such step)."""
        return {step: type(part).__name__ if part is not None else None
                for step, part in (("update", self.update), ("importance", self.importance),
                                   ("allocator", self.allocator), ("loss", self.loss))}


def with_weights(model: nn.Module, weights: dict) -> nn.Module:
    """A copy of `model` whose named modules carry `weights` (module name -> weight)."""
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    with torch.no_grad():
        for name, w in weights.items():
            modules[name].weight.copy_(w)
    return work
