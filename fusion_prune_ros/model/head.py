"""Fuser, BEV backbone + neck, and the CenterPoint-style head."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBNReLU

REG_CHANNELS = 10  # offset x, y (cells), z, log w, log l, log h, sin yaw, cos yaw, vx, vy
HEATMAP_BIAS = -2.19  # sigmoid(-2.19) = 0.1: CenterNet's prior, keeps the focal loss stable at the start


class ConvFuser(nn.Module):
    """BEVFusion's ConvFuser: concatenate the two BEV maps, 3x3 conv. A missing modality arrives as zeros."""

    def __init__(self, lidar: int, camera: int, out: int):
        super().__init__()
        self.conv = ConvBNReLU(lidar + camera, out, 3)

    def forward(self, lidar_bev, camera_bev):
        return self.conv(torch.cat([lidar_bev, camera_bev], 1))


class BevBackbone(nn.Module):
    """Three levels (fused grid, 1/2, 1/4), each a stride-2 conv + a 3x3 conv, upsampled back and summed
    (SECOND-FPN style). The coarse levels hold most parameters for few FLOPs: context for large vehicles."""

    def __init__(self, cin: int, channels: tuple):
        super().__init__()
        c0, c1, c2 = channels
        self.level0 = ConvBNReLU(cin, c0, 3)
        self.level1 = nn.Sequential(ConvBNReLU(c0, c1, 3, 2), ConvBNReLU(c1, c1, 3))
        self.level2 = nn.Sequential(ConvBNReLU(c1, c2, 3, 2), ConvBNReLU(c2, c2, 3))
        self.up2 = _up(c2, c1)
        self.up1 = _up(c1, c0)
        self.out = ConvBNReLU(c0, c0, 3)

    def forward(self, x):
        x0 = self.level0(x)
        x1 = self.level1(x0)
        x1 = x1 + self.up2(self.level2(x1))
        return self.out(x0 + self.up1(x1))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CenterHead(nn.Module):
    """Shared 3x3 conv, then 1x1 convs predicting 2x2 sub-cells each; pixel shuffle gives the head grid at twice
    the fused resolution for the cost of 1x1 convs (a 3x3 conv at the head grid would cost as much as the rest).

    `shuffle_outputs` False returns the sub-cell maps unshuffled, (num_classes * 4, H, W) and (10 * 4, H, W): how
    the exported graphs of a detector with `subcells_to_decoder` end (`deployed_outputs`), leaving the shuffle, a
    pure permutation, to the decoder (`decode.HeadLayout`): in the graph it is two DepthToSpace nodes and a layout
    reorder that no pruning narrows."""

    shuffle_outputs = True  # a class default: detectors pickled whole before the option existed read it too

    def __init__(self, cin: int, mid: int, num_classes: int, upscale: int = 2):
        super().__init__()
        self.upscale = upscale
        self.shared = ConvBNReLU(cin, mid, 3)
        self.heatmap = nn.Conv2d(mid, num_classes * upscale ** 2, 1)
        self.regression = nn.Conv2d(mid, REG_CHANNELS * upscale ** 2, 1)
        nn.init.constant_(self.heatmap.bias, HEATMAP_BIAS)
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, x):
        x = self.shared(x)
        heat, reg = self.heatmap(x), self.regression(x)
        return (self.shuffle(heat), self.shuffle(reg)) if self.shuffle_outputs else (heat, reg)
