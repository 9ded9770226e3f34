"""What every pruning method gets: the same calibration frames, the task loss, and modality masking
(docs/pruning.md, "The framework").

Masking a modality is the network's own 'sensor missing' state: its presence flag is set to 0, which zeroes that
branch's BEV features at the fuser input. This is the clean reading of "the masked backbone produces no features";
zeroing the branch's parameters would still leak BatchNorm biases into the fuser.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import DetectorConfig
from ..data.dataset import DetectionDataset, collate
from ..model.losses import detection_loss

MODALITY_INDEX = {"lidar": 0, "camera": 1}


@dataclass
class PruneContext:
    """Inputs of every step of a method. `model` is the trained dense detector (after a method's weight update,
    the copy carrying the new weights); a step that changes weights must restore them (a weight update returns
    its new weights instead: regularisation.WeightUpdate)."""

    model: torch.nn.Module
    cfg: DetectorConfig
    calibration: list  # collated batches, the same frames for every method
    train_set: DetectionDataset  # for methods that train while scoring (AlterMOMA's reactivation, CrossPrune)
    seed: int = 0
    # The variant's channel width multiple (PruneConfig.round_to; None: none): a method that selects channels
    # itself (CrossPrune's projection) must select what the channel granularity will remove.
    round_to: int | None = None


def calibration_batches(dataset: DetectionDataset, n_frames: int, batch_size: int, seed: int) -> list:
    """A fixed random subset of the training frames, without augmentation, as collated batches."""
    rng = np.random.default_rng([seed, 7])
    idx = sorted(rng.choice(len(dataset), size=min(n_frames, len(dataset)), replace=False).tolist())
    return [collate([dataset[i] for i in idx[k:k + batch_size]]) for k in range(0, len(idx), batch_size)]


def masked(batch: dict, modality: str | None) -> dict:
    """The batch with one modality's presence flag set to 0 (None: unchanged)."""
    if modality is None:
        return batch
    out = dict(batch)
    out["presence"] = batch["presence"].clone()
    out["presence"][:, MODALITY_INDEX[modality]] = 0.0
    return out


def outputs(model, batch: dict):
    return model(batch["lidar_bev"], batch["images"], batch["cam_grid"], batch["presence"])


def task_loss(model, batch: dict) -> torch.Tensor:
    heat, reg = outputs(model, batch)
    return detection_loss(heat, reg, batch)[0]
