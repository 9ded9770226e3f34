"""Camera branch: a small ResNet-style backbone shared by the six cameras, an FPN-lite neck to stride 8, and the
parameter-free lift to BEV by bilinear sampling (Simple-BEV).

The lift samples the image features at 3D points (BEV cell centres x a few heights) projected into the camera that
sees them best. The sampling grid is computed from intrinsics and extrinsics *outside* the network
(`preprocess.camera_grid`) and fed as an input, so one exported network serves any calibration, a missing camera
is just a grid that never points at it, and `grid_sample` (opset 16, supported by TensorRT) is the only op
between image and BEV. To sample all cameras with one `grid_sample`, their feature maps are stacked along the
image height.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .blocks import BasicBlock, ConvBNReLU


class ImageBackbone(nn.Module):
    """Stem (stride 2) then three residual stages (strides 4, 8, 16); returns the stride-8 and stride-16 maps."""

    def __init__(self, channels: tuple):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.stem = ConvBNReLU(3, c0, 3, 2)
        self.stage1 = BasicBlock(c0, c1, 2)
        self.stage2 = BasicBlock(c1, c2, 2)
        self.stage3 = BasicBlock(c2, c3, 2)

    def forward(self, x):
        s8 = self.stage2(self.stage1(self.stem(x)))
        return s8, self.stage3(s8)


class ImageNeck(nn.Module):
    """FPN-lite: the stride-16 map, upsampled, is added to the stride-8 map (both projected to `out` channels)."""

    def __init__(self, c8: int, c16: int, out: int):
        super().__init__()
        self.lat8 = ConvBNReLU(c8, out, 1)
        self.lat16 = ConvBNReLU(c16, out, 1)
        self.smooth = ConvBNReLU(out, out, 3)

    def forward(self, s8, s16):
        up = F.interpolate(self.lat16(s16), size=s8.shape[-2:], mode="bilinear", align_corners=False)
        return self.smooth(self.lat8(s8) + up)


class CameraBranch(nn.Module):
    """Six images -> image features -> lifted BEV features on the fused grid."""

    def __init__(self, channels: tuple, feat: int, bev: int, n_heights: int, n_cameras: int = 6):
        super().__init__()
        self.n_cameras = n_cameras
        self.n_heights = n_heights
        self.backbone = ImageBackbone(channels)
        self.neck = ImageNeck(channels[2], channels[3], feat)
        # Collapse the heights with a (1, Z) conv of stride (1, Z) over the lifted map, whose columns are
        # (BEV column, height) pairs: the same as a 1x1 conv over C x Z channels, but with no reshape that merges
        # channels and heights, so a pruned image channel maps to one input channel here (Torch-Pruning traces
        # channels through grid_sample element-wise, and mis-maps a permute + reshape merge).
        self.reduce = nn.Sequential(nn.Conv2d(feat, bev, (1, n_heights), (1, n_heights), bias=False),
                                    nn.BatchNorm2d(bev), nn.ReLU(inplace=True))

    def forward(self, images, grid):
        """images: (B * n_cameras, 3, H, W) normalised; grid: (B, Hb, Wb * n_heights, 2) into the stacked maps."""
        feats = self.neck(*self.backbone(images))
        bn, c, h, w = feats.shape
        b = bn // self.n_cameras
        stacked = feats.view(b, self.n_cameras, c, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, self.n_cameras * h, w)
        lifted = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return self.reduce(lifted)
