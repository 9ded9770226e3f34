"""AlterMOMA's reactivation (docs/pruning.md, "AlterMOMA"): with one modality masked, a briefly trained copy of the
dense model makes the fuser take from the remaining branch what the masked one used to provide, reactivating that
branch's fusion-redundant features. The dense model itself is not changed. Plain SGD with BatchNorm statistics
frozen, as the paper's derivation assumes (docs/pruning.md, "AlterMOMA")."""
from __future__ import annotations

import copy
from typing import Iterator

import torch
from torch import nn

from ..calibration import masked, task_loss
from ..training_batches import CLIP_NORM, sampled_batches


def reactivated(model: nn.Module, dataset, masked_modality: str, steps: int, lr: float, batch_size: int,
                seed: int) -> nn.Module:
    """A copy of `model` trained for `steps` steps with `masked_modality` masked."""
    for _, work in reactivation_trajectory(model, dataset, masked_modality, (steps,), lr, batch_size, seed):
        pass
    return work


def reactivation_trajectory(model: nn.Module, dataset, masked_modality: str, checkpoints: tuple, lr: float,
                            batch_size: int, seed: int) -> Iterator[tuple]:
    """Train one copy as `reactivated` does and yield (B, the copy in eval mode) after each step count B in
    `checkpoints`: the first B steps of a longer run are a B-step run (the same seeded batch order, a constant
    learning rate), so one run gives theta_B for every B of a B sweep. Training resumes after each yield."""
    work = copy.deepcopy(model)
    # Plain SGD: each weight moves by lr times its own gradient, so the change the ReRI term reads is the gradient's
    # doing. Adam's normalised step would move every weight by about lr whatever its gradient.
    optimizer = torch.optim.SGD(work.parameters(), lr=lr, momentum=0.0)
    todo = sorted(set(checkpoints))
    if todo and todo[0] == 0:
        yield 0, work.eval()
        todo.pop(0)
    for step, batch in enumerate(sampled_batches(dataset, todo[-1] if todo else 0, batch_size, seed), start=1):
        frozen_statistics(work)
        loss = task_loss(work, masked(batch, masked_modality))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(work.parameters(), CLIP_NORM)
        optimizer.step()
        if step == todo[0]:
            yield step, work.eval()
            todo.pop(0)


def frozen_statistics(model: nn.Module) -> None:
    """Train mode with every BatchNorm in eval mode: reactivation moves the weights only. Batch statistics of
    masked-modality batches would otherwise replace the running statistics theta0 was scored with, and the ReRI
    term would read that shift as reactivation."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
