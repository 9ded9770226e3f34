"""`FusionDetector`: LiDAR branch + camera branch -> ConvFuser -> BEV backbone -> CenterPoint head.

Modality presence is an input: each branch's BEV output is multiplied by its presence flag before the fuser, so a
missing sensor is a first-class state the network was trained on (modality dropout), not garbage input. For real
speed under sensor loss, `SingleModality` runs one branch only with the fuser's weights sliced to that branch's
input channels: exactly what the fused network computes when the other branch is zero, without computing it.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DetectorConfig
from ..data.classes import DETECTION_CLASSES
from .camera import CameraBranch
from .head import BevBackbone, CenterHead, ConvFuser
from .lidar import LidarBranch
from .pillars import LIDAR_FEATURES

MODES = ("fused", "lidar", "camera")


class FusionDetector(nn.Module):
    # Class defaults, so that detectors pickled whole before these options existed read them too.
    prunable_input_convs = False  # see ModelConfig
    subcells_to_decoder = False

    def __init__(self, cfg: DetectorConfig):
        super().__init__()
        m, g = cfg.model, cfg.grid
        self.prunable_input_convs = m.prunable_input_convs
        self.subcells_to_decoder = m.subcells_to_decoder
        self.lidar = LidarBranch(LIDAR_FEATURES, m.lidar_channels, m.lidar_bev)
        self.camera = CameraBranch(m.camera_channels, m.camera_out, m.camera_bev, len(g.lift_heights))
        self.fuser = ConvFuser(m.lidar_bev, m.camera_bev, m.fused)
        self.bev = BevBackbone(m.fused, m.bev_channels)
        self.head = CenterHead(m.bev_channels[0], m.head_channels, len(DETECTION_CLASSES))

    def forward(self, lidar_bev, images, cam_grid, presence):
        """lidar_bev (B, 14, N, N); images (B*6, 3, H, W); cam_grid (B, N/4, N/4*Z, 2); presence (B, 2) as
        [lidar, camera] in {0, 1}. Returns heatmap logits (B, 10, N/2, N/2) and regression (B, 10, N/2, N/2)."""
        lidar = self.lidar(lidar_bev) * presence[:, 0].view(-1, 1, 1, 1)
        camera = self.camera(images, cam_grid) * presence[:, 1].view(-1, 1, 1, 1)
        return self.head(self.bev(self.fuser(lidar, camera)))


class SingleModality(nn.Module):
    """The detector with one branch only (a graph of its own for export: the other branch is not computed)."""

    def __init__(self, detector: FusionDetector, modality: str):
        super().__init__()
        if modality not in ("lidar", "camera"):
            raise ValueError(f"modality must be lidar or camera, not {modality}")
        self.detector = detector
        self.modality = modality

    def _fuse(self, x):
        conv, bn, relu = self.detector.fuser.conv
        split = self.detector.lidar.out[0].out_channels  # read from the module: channel pruning changes it
        weight = conv.weight[:, :split] if self.modality == "lidar" else conv.weight[:, split:]
        return relu(bn(F.conv2d(x, weight, None, conv.stride, conv.padding)))

    def forward(self, *inputs):
        """lidar: (lidar_bev,); camera: (images, cam_grid)."""
        d = self.detector
        x = d.lidar(*inputs) if self.modality == "lidar" else d.camera(*inputs)
        return d.head(d.bev(self._fuse(x)))


@contextmanager
def deployed_outputs(model: FusionDetector):
    """Within it, the detector's outputs are laid out as its exported graphs give them: sub-cell maps for a
    detector with `subcells_to_decoder` (the decoder reads them through `decode.HeadLayout`), the head grid
    otherwise."""
    head = model.head
    head.shuffle_outputs = not model.subcells_to_decoder
    try:
        yield model
    finally:
        del head.shuffle_outputs  # back to the class default


def build_detector(cfg: DetectorConfig) -> FusionDetector:
    torch.manual_seed(cfg.train.seed)
    return FusionDetector(cfg)
