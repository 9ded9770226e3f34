"""Staged training as BEVFusion trains: a LiDAR-only detector, a camera-only detector, then the fusion model
initialised from both and trained with its fuser.

BEVFusion (Liu et al., 2023) starts its fusion model from a LiDAR-only detector (TransFusion-L: LiDAR backbone,
BEV decoder and head) and an image backbone trained on its own (nuImages), then trains the fuser with everything
else. Here each stage is a run of `fusion-prune train` with its own config (`train.stage`), resumable like any run:

- `lidar`: the LiDAR branch, the fuser's LiDAR input channels, the BEV backbone and the head, on LiDAR alone (the
  graph the node runs as LiDAR-only, `SingleModality`);
- `camera`: the camera branch, the fuser's camera input channels, the BEV backbone and the head, on the cameras
  alone;
- `fused`: the whole detector, initialised from both (`initialise_fusion`): everything of the LiDAR stage (its
  branch, fuser, BEV backbone and head, as BEVFusion takes the decoder from its LiDAR model), then the camera
  branch and the fuser's camera input channels of the camera stage. Modality dropout in this stage keeps the
  sensor-loss behaviour and the three exported graphs.

The two single-modality stages are what gives the fusion model the redundancy AlterMOMA and CrossPrune start from:
each branch was trained to detect on its own before the two were fused.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import DetectorConfig, TrainConfig, to_dict
from ..errors import UserError
from ..model.checkpoint import load_detector
from ..model.detector import FusionDetector, SingleModality
from ..model.inference import CONDITIONS

STAGES = ("lidar", "camera", "fused")
# The official metrics scored after each stage: a single-modality stage is the fused network with the other
# sensor absent (SingleModality computes exactly that).
STAGE_CONDITIONS = {"lidar": ("camera_lost",), "camera": ("lidar_lost",), "fused": tuple(CONDITIONS)}
# The modalities a stage's training frames carry, those of its first condition: the other one is neither read nor
# augmented (DetectionDataset).
STAGE_PRESENCE = {stage: CONDITIONS[conditions[0]] for stage, conditions in STAGE_CONDITIONS.items()}


class SingleStageForward(nn.Module):
    """A single-modality stage's training forward (`SingleModality`) with the fused detector's signature, which
    the training loop calls."""

    def __init__(self, detector: FusionDetector, stage: str):
        super().__init__()
        self.single = SingleModality(detector, stage)

    def forward(self, lidar_bev, images, cam_grid, presence):
        return self.single(lidar_bev) if self.single.modality == "lidar" else self.single(images, cam_grid)


def trained_module(detector: FusionDetector, stage: str) -> nn.Module:
    """What the training loop optimises in a stage: the detector itself in the fused stage (its checkpoints are
    those of a run without stages), the single-modality forward otherwise."""
    return detector if stage == "fused" else SingleStageForward(detector, stage)


def check_stage(train: TrainConfig) -> None:
    """A stage's settings that cannot work are a one-line error before anything is built."""
    if train.stage not in STAGES:
        raise UserError(f"train.stage {train.stage!r}: expected one of {', '.join(STAGES)}")
    if train.stage == "lidar" and train.drop_lidar > 0:
        raise UserError("train.stage lidar trains on the LiDAR alone: set train.drop_lidar to 0")
    if train.stage == "camera" and train.drop_camera > 0:
        raise UserError("train.stage camera trains on the cameras alone: set train.drop_camera to 0")
    if train.stage != "fused" and (train.init_lidar or train.init_camera):
        raise UserError(f"train.init_lidar / init_camera start the fused stage; train.stage is {train.stage}")
    if train.stage == "fused" and bool(train.init_lidar) != bool(train.init_camera):
        raise UserError("the fused stage starts from both single-modality stages: give train.init_lidar and "
                        "train.init_camera, or neither (training from scratch)")


def initialise_fusion(detector: FusionDetector, cfg: DetectorConfig, lidar: str | Path,
                      camera: str | Path) -> dict:
    """Load the fused detector's starting weights from the LiDAR stage's and the camera stage's model.pt (see the
    module docstring); returns what was taken from where, for the run's metadata. Stages of another architecture
    are an error."""
    sources = {}
    for stage, path in (("lidar", lidar), ("camera", camera)):
        model, stage_cfg, meta = load_detector(path)
        if to_dict(stage_cfg.model) != to_dict(cfg.model) or to_dict(stage_cfg.grid) != to_dict(cfg.grid):
            raise UserError(f"{path}: its model or grid differs from this config's; the stages must share them")
        trained = meta.get("training", {}).get("stage")
        if trained != stage:
            raise UserError(f"{path} was trained as stage {trained!r}, not {stage!r}")
        sources[stage] = {"path": str(path), "state": model.state_dict()}
    state = dict(sources["lidar"]["state"])
    camera_state = sources["camera"]["state"]
    state.update({k: v for k, v in camera_state.items() if k.startswith("camera.")})
    fuser = "fuser.conv.0.weight"
    split = cfg.model.lidar_bev
    state[fuser] = torch.cat([state[fuser][:, :split], camera_state[fuser][:, split:]], 1)
    detector.load_state_dict(state)
    return {"lidar": str(lidar), "camera": str(camera),
            "rule": "LiDAR stage: lidar.*, fuser (LiDAR input channels, BatchNorm), bev.*, head.*; camera stage: "
                    "camera.*, fuser (camera input channels)"}
