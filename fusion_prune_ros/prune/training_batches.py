"""What the methods that train before fine-tuning share (AlterMOMA's reactivation, CrossPrune's ADMM): seeded
training batches, so that their result depends on ctx.seed only, and the training loop's gradient clip."""
from __future__ import annotations

from typing import Iterator

import torch

from ..data.dataset import collate

CLIP_NORM = 10.0  # as in train.fit


def sampled_batches(dataset, steps: int, batch_size: int, seed: int) -> Iterator[dict]:
    """`steps` collated batches of distinct random frames from a generator seeded by `seed`."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(dataset), generator=gen)[:batch_size]
        yield collate([dataset[int(i)] for i in idx])
