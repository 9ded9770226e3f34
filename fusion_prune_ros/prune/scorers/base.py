"""The scorer interface (docs/pruning.md, "The framework") and gradient helpers shared by the scorers."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ...data.dataset import collate

from ..calibration import PruneContext, masked, task_loss
from ..units import prunable_units


@dataclass
class Scores:
    """What a scorer returns.

    weights: unit name -> per-weight importance (the weight's shape); higher = keep.
    keep: unit name -> keep ratio chosen by a layer-adaptive allocator (DM3D, MMPrune4U); None lets the caller
    apply one global threshold over all units.
    state: unit name -> replacement weights (CrossPrune's ADMM moves the weights before masking); None = dense.
    regulariser: extra fine-tuning loss (model, batch, outputs) -> tensor (MMPrune4U's information term). One with a
    `bind(model)` method is bound to the network it will fine-tune before that trains (CrossPrune's distortion
    term finds which teacher channels a channel-pruned student kept).
    info: what the scorer measured (timings, settings), for the variant manifest.
    sparsity: the fraction of prunable parameters the allocation removes, when the scorer's target was not a
    parameter count (DM3D under a time budget): the granularity prunes to it instead of the requested value, or a
    time target would be read as a parameter target.
    """

    weights: dict
    keep: dict | None = None
    state: dict | None = None
    regulariser: Callable | None = None
    info: dict = field(default_factory=dict)
    sparsity: float | None = None


class Scorer(ABC):
    name: str = ""

    @abstractmethod
    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        """Importance of every prunable weight of ctx.model for a target sparsity at a granularity."""


def mean_gradients(model: torch.nn.Module, batches: list, objective: Callable) -> dict:
    """Mean over batches of d objective(model, batch) / dW for every prunable unit, in eval mode (BatchNorm
    statistics untouched)."""
    units = prunable_units(model)
    grads = {u.name: torch.zeros_like(u.weight) for u in units}
    was_training = model.training
    model.eval()
    for batch in batches:
        model.zero_grad(set_to_none=True)
        objective(model, batch).backward()
        for u in units:
            if u.weight.grad is not None:
                grads[u.name] += u.weight.grad.detach() / len(batches)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return grads


def weight_gradients(model: torch.nn.Module, batches: list, modality: str | None = None) -> dict:
    """Mean dL/dW of the task loss, optionally with one modality masked."""
    return mean_gradients(model, batches, lambda m, b: task_loss(m, masked(b, modality)))


def weights_of(model: torch.nn.Module) -> dict:
    return {u.name: u.weight.detach().clone() for u in prunable_units(model)}


CLIP_NORM = 10.0  # as in train.fit


def sampled_batches(dataset, steps: int, batch_size: int, seed: int) -> Iterator[dict]:
    """`steps` collated batches of distinct random frames from a seeded generator: a scorer that trains while
    scoring then depends on ctx.seed only."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(dataset), generator=gen)[:batch_size]
        yield collate([dataset[int(i)] for i in idx])
