"""Importance: how much each prunable weight matters, one criterion per class (docs/pruning.md, "The framework").

A criterion only ranks. How much each unit loses is the allocator's decision (allocation.py), what moves the weights
or joins the fine-tuning loss is regularisation.py's, and how a ranking becomes masks or a smaller network is the
granularity's (granularity.py): Torch-Pruning draws the same lines (`pruner/importance.py` beside its pruners).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from .calibration import PruneContext


@dataclass
class Scores:
    """weights: unit name -> per-weight importance (the weight's shape); higher = keep. info: what the criterion
    measured to get there (timings, statistics), for the variant manifest. channel_weights: where a criterion
    scores whole output channels rather than weights (random channels), unit name -> the weight's shape holding
    one score per output channel; the channel granularity ranks by it instead of `weights`."""

    weights: dict
    info: dict = field(default_factory=dict)
    channel_weights: dict | None = None

    def for_channels(self) -> dict:
        """The per-weight scores the channel granularity ranks channels by."""
        return self.channel_weights if self.channel_weights is not None else self.weights


class Importance(ABC):
    @abstractmethod
    def __call__(self, ctx: PruneContext) -> Scores:
        """The importance of every prunable weight of ctx.model."""
