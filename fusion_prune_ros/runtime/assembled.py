"""What the frame assembler keeps of each camera image, and the frame it hands the pipeline.

An image is resized and cropped to the network's size once, when it arrives (`NetworkImage`), not on every frame
that uses it: a 12 Hz camera's image serves about two 20 Hz sweeps, and resizing six images takes longer than the
rest of a frame's preprocessing. The size the image arrived with is kept beside it, since the sampling
grid projects into the received image's pixels and the assembler compares the cameras' sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import CameraInputConfig
from ..data.frame import FrameInputs
from ..model.preprocess import network_image, normalised_planes


@dataclass(frozen=True)
class NetworkImage:
    pixels: np.ndarray  # (height, width, 3) uint8: `preprocess.network_image` of the received image
    planes: np.ndarray  # (3, height, width) float32: the pixels normalised, as the network takes them
    source_size: tuple  # (width, height) of the received image

    @classmethod
    def of(cls, rgb: np.ndarray, cfg: CameraInputConfig) -> "NetworkImage":
        pixels = network_image(rgb, cfg)
        return cls(pixels, normalised_planes(pixels), (rgb.shape[1], rgb.shape[0]))

    @classmethod
    def black(cls, cfg: CameraInputConfig) -> "NetworkImage":
        """What stands in for a camera missing from a frame (its presence flag is off)."""
        return cls.of(np.zeros((cfg.height, cfg.width, 3), np.uint8), cfg)


@dataclass
class AssembledFrame(FrameInputs):
    """FrameInputs whose `images` are already the network's (C, height, width, 3) uint8 (`preprocess.camera_images`
    of the received images), with `image_planes`, the network's (C, 3, height, width) float32 image input, and
    `source_size`, the (width, height) the received images had."""

    image_planes: np.ndarray | None = None
    source_size: tuple = (1, 1)
