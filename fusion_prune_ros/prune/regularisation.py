"""Steps that act on the weights instead of ranking them (docs/pruning.md, "The framework").

- `WeightUpdate`: before pruning, new values for the prunable weights (CrossPrune's ADMM moves them towards the
  sparsity set); the importance then scores the moved weights, and the variant starts from them.
- `FineTuneLoss`: a term added to the fine-tuning loss (CrossPrune's feature distortion, MMPrune4U's information
  term). `bind` ties it to the pruned network before that trains, and to the dense model it compares with: a
  channel-pruned network has narrower maps than the dense one, and which channels it kept can only be read before
  fine-tuning changes them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from .calibration import PruneContext
from .target import Target


@dataclass
class Updated:
    """weights: unit name -> the new weight of that prunable unit. info: what the update measured, for the
    manifest."""

    weights: dict
    info: dict = field(default_factory=dict)


class WeightUpdate(ABC):
    @abstractmethod
    def __call__(self, ctx: PruneContext, target: Target, granularity: str) -> Updated:
        """New prunable weights for ctx.model (left unchanged) towards `target` at `granularity`."""


class FineTuneLoss(ABC):
    @abstractmethod
    def bind(self, ctx: PruneContext, student: nn.Module) -> Callable:
        """The term for fine-tuning `student` (the pruned network, not yet trained), pruned from ctx.model: a
        `FitHooks.regulariser` (model, batch, outputs) -> scalar tensor."""
