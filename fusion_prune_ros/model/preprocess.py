"""FrameInputs -> the network's camera input tensors (the LiDAR's pillar pseudo-image is model/pillars.py). The same
code serves training, evaluation, bag replay and the node.

- `camera_images` / `network_image`: resize to the network width, crop the configured rows; `normalise_images` /
  `normalised_planes` normalise.
- `camera_grid`: for every fused-grid cell x lift height, where to sample the stacked image features: the camera
  that sees the point nearest its image centre, among the cameras present. Computed from the calibration here,
  outside the network, so the exported network serves any calibration and any subset of cameras.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from ..config import CameraInputConfig, GridConfig

IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


@dataclass(frozen=True)
class ImageTransform:
    """How a source image maps to the network image: scale, then rows [crop_top, crop_top + height) kept."""

    scale: float
    crop_top: int
    width: int
    height: int

    @staticmethod
    def for_source(src_width: int, src_height: int, cfg: CameraInputConfig) -> "ImageTransform":
        scale = cfg.width / src_width
        crop_top = int(round(src_height * scale * cfg.crop_top_fraction))
        crop_top = min(crop_top, max(0, int(round(src_height * scale)) - cfg.height))
        return ImageTransform(scale, crop_top, cfg.width, cfg.height)


def network_image(image: np.ndarray, cfg: CameraInputConfig) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (height, width, 3) uint8: resized to the network width (area interpolation, aspect
    kept) and cropped to the configured rows; rows past the end of a short image stay black."""
    tf = ImageTransform.for_source(image.shape[1], image.shape[0], cfg)
    resized = cv2.resize(image, (cfg.width, int(round(image.shape[0] * tf.scale))), interpolation=cv2.INTER_AREA)
    crop = resized[tf.crop_top:tf.crop_top + cfg.height]
    out = np.zeros((cfg.height, cfg.width, 3), np.uint8)
    out[:len(crop)] = crop
    return out


def camera_images(images: np.ndarray, cfg: CameraInputConfig) -> np.ndarray:
    """(C, H, W, 3) uint8 RGB -> (C, height, width, 3) uint8, each through `network_image` (normalised later, in
    float)."""
    out = np.empty((len(images), cfg.height, cfg.width, 3), np.uint8)
    for i, image in enumerate(images):
        out[i] = network_image(image, cfg)
    return out


def normalise_images(images_u8: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32, ImageNet mean / std."""
    x = (images_u8.astype(np.float32) - IMAGE_MEAN) / IMAGE_STD
    return np.moveaxis(x, -1, -3)


# Per channel, the float32 `normalise_images` gives each uint8 value.
NORMALISED_VALUES = [((np.arange(256, dtype=np.float32) - IMAGE_MEAN[c]) / IMAGE_STD[c]).reshape(1, 256)
                     for c in range(3)]


def normalised_planes(image: np.ndarray) -> np.ndarray:
    """(height, width, 3) uint8 network image (`network_image`) -> (3, height, width) float32: exactly
    normalise_images(image), written plane by plane through a lookup table (several times cheaper than the float
    arithmetic and the transposing copy: the node's path; training normalises after its float-valued
    augmentation instead)."""
    out = np.empty((3, *image.shape[:2]), np.float32)
    for k, plane in enumerate(cv2.split(image)):
        out[k] = cv2.LUT(plane, NORMALISED_VALUES[k])
    return out


def decode_reduction(src_width: int, cfg: CameraInputConfig) -> int:
    """The largest factor (1, 2, 4 or 8) a JPEG `src_width` wide can be decoded smaller by (`compressed_to_rgb`)
    while keeping at least the network's image width: the network never sees more pixels than that, and the
    resize to it then never enlarges."""
    return next((r for r in (8, 4, 2) if -(-src_width // r) >= cfg.width), 1)


def camera_grid(intrinsics: np.ndarray, cam_from_lidar: np.ndarray, present: np.ndarray, src_size: tuple,
                grid: GridConfig, cam: CameraInputConfig, flip_x: bool = False, flip_y: bool = False) -> np.ndarray:
    """Sampling grid (F, F * Z, 2) for `grid_sample` over the camera features stacked along the height.

    src_size: (width, height) of the source images. Points no present camera sees get (-2, -2) (zeros).
    flip_x / flip_y: the BEV is mirrored (augmentation); the points are mirrored back before projection, so
    image and LiDAR stay consistent.

    The node recomputes it whenever the ego motion between the images and the sweep changes, so it is one compiled
    pass over the points and cameras, in float64 throughout (the projection in the order a matrix product takes).
    """
    f = grid.fused_cells
    cell = 2 * grid.bev_range / f
    centres = -grid.bev_range + (np.arange(f) + 0.5) * cell
    tf = ImageTransform.for_source(src_size[0], src_size[1], cam)
    out = np.empty((f, f, len(grid.lift_heights), 2), np.float32)
    _project_grid(out, centres, np.asarray(grid.lift_heights, np.float64), -1.0 if flip_x else 1.0,
                  -1.0 if flip_y else 1.0, np.asarray(intrinsics, np.float64), np.asarray(cam_from_lidar, np.float64),
                  np.asarray(present, np.bool_), float(tf.scale), float(tf.crop_top), float(tf.width),
                  float(tf.height), cam.feature_stride / 2)
    return out.reshape(f, f * len(grid.lift_heights), 2)


@njit(cache=True, nogil=True)
def _project_grid(out, centres, heights, sign_x, sign_y, k, t, present, scale, crop_top, width, height, margin):
    """out[row = y, col = x, height] = (gx, gy) of the present camera that sees the point nearest its image centre
    (the first such camera on a tie), or (-2, -2). A camera sees a point more than 0.5 m in front of it that lands
    inside its image, `margin` rows off the top and bottom edges (no bleeding into the next camera's band)."""
    n_cam = k.shape[0]
    for iy in range(centres.shape[0]):
        for ix in range(centres.shape[0]):
            x, y = sign_x * centres[ix], sign_y * centres[iy]
            for iz in range(heights.shape[0]):
                z = heights[iz]
                best, gx, gy = np.inf, -2.0, -2.0
                for c in range(n_cam):
                    if not present[c]:
                        continue
                    px = x * t[c, 0, 0] + y * t[c, 0, 1] + z * t[c, 0, 2] + t[c, 0, 3]
                    py = x * t[c, 1, 0] + y * t[c, 1, 1] + z * t[c, 1, 2] + t[c, 1, 3]
                    depth = x * t[c, 2, 0] + y * t[c, 2, 1] + z * t[c, 2, 2] + t[c, 2, 3]
                    if not depth > 0.5:
                        continue
                    u = (k[c, 0, 0] * px / depth + k[c, 0, 2]) * scale
                    v = (k[c, 1, 1] * py / depth + k[c, 1, 2]) * scale - crop_top
                    centrality = abs(u / width - 0.5)
                    if u >= 0 and u < width and v >= margin and v < height - margin and centrality < best:
                        best = centrality
                        gx = u / width * 2 - 1
                        gy = (c * height + v) / (n_cam * height) * 2 - 1
                out[iy, ix, iz, 0] = gx
                out[iy, ix, iz, 1] = gy
