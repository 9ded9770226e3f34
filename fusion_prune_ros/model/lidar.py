"""LiDAR branch: the pillar pseudo-image (computed in preprocessing) -> a 2D BEV backbone at the fused grid."""
from __future__ import annotations

from torch import nn

from .blocks import ConvBNReLU


class LidarBranch(nn.Module):
    """Two stride-2 convs take the 0.4 m pseudo-image to the 1.6 m fused grid, where a 3x3 conv sets the width
    that enters the fuser. Cheap on purpose: at these resolutions every 3x3 conv costs as much as a camera stage."""

    def __init__(self, in_channels: int, channels: tuple, out_channels: int):
        super().__init__()
        c1, c2 = channels
        self.stem = ConvBNReLU(in_channels, c1, 3, 2)
        self.down = ConvBNReLU(c1, c2, 3, 2)
        self.out = ConvBNReLU(c2, out_channels, 3)

    def forward(self, bev):
        return self.out(self.down(self.stem(bev)))
