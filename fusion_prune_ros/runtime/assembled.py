"""What the frame assembler keeps of each camera image, and the frame it hands the pipeline (`AssembledFrame`).

An image is resized and cropped to the network's size once, when it arrives (`NetworkImage`), not on every frame
that uses it: a 12 Hz camera's image serves about two 20 Hz sweeps, and resizing six images takes longer than the
rest of a frame's preprocessing. The size the image arrived with is kept beside it, since the sampling
grid projects into the received image's pixels and the assembler compares the cameras' sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import CameraInputConfig
from ..model.preprocess import network_image, normalised_planes
from .multisweep import MultiSweep


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
class AssembledFrame:
    """One frame as the assembler hands it to the pipeline: the sensor data picked for it, not yet merged, so that
    the pipeline merges only what the variant's graph reads (a LiDAR-only graph never stacks the images).

    sweeps: the LiDAR sweeps (None: a camera-only frame). images: a `NetworkImage` per camera (black where the camera
    is absent). intrinsics (C, 3, 3); cam_from_lidar (C, 4, 4), including the ego motion between the sweep and each
    image; camera_present (C,); source_size: the (width, height) the images arrived with."""

    sweeps: MultiSweep | None
    images: tuple
    intrinsics: np.ndarray
    cam_from_lidar: np.ndarray
    camera_present: np.ndarray
    stamp_us: int
    camera_names: tuple
    source_size: tuple = (1, 1)

    @property
    def lidar_present(self) -> bool:
        return self.sweeps is not None

    def cloud(self) -> np.ndarray:
        """The (N, 5) multi-sweep cloud (x, y, z, intensity, time lag), as `data.frame.FrameInputs.points`."""
        return self.sweeps.cloud() if self.sweeps is not None else np.zeros((0, 5), np.float32)

    def image_planes(self) -> np.ndarray:
        """The network's (C, 3, height, width) float32 image input."""
        return np.stack([im.planes for im in self.images])

    def pixels(self) -> np.ndarray:
        """The (C, height, width, 3) uint8 network images (`preprocess.camera_images` of the received ones)."""
        return np.stack([im.pixels for im in self.images])
