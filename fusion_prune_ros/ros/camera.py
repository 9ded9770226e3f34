"""sensor_msgs camera messages (Image, CompressedImage, CameraInfo) -> RGB arrays and intrinsics, without
importing rclpy.

Messages are read by field name only, so the same code serves rclpy messages in the node and `rosbags` messages
in bag replay and tests. Camera drivers are not ours, so every malformed input raises `InputError`, whose
`reason` is a short stable code the node counts in its diagnostics; nothing here returns a silently wrong array.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import InputError
from .uint8_data import uint8_view

# sensor_msgs/Image encoding -> (channels, OpenCV conversion to RGB or None when already RGB).
IMAGE_ENCODINGS = {
    "rgb8": (3, None), "bgr8": (3, cv2.COLOR_BGR2RGB), "mono8": (1, cv2.COLOR_GRAY2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB), "bgra8": (4, cv2.COLOR_BGRA2RGB),
}
JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: zero length, type, CRC
COMPRESSED_CODECS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
# JPEG decoded at 1 / factor of its size: libjpeg scales while decoding, far cheaper than a full decode and a resize.
JPEG_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8) -> a new contiguous (H, W, 3) uint8 RGB array.

    `step` is honoured, so rows padded for alignment are read correctly; 16-bit and Bayer encodings are
    rejected rather than guessed at, since the network is trained on 8-bit colour.
    """
    encoding, height, width, step = str(msg.encoding), int(msg.height), int(msg.width), int(msg.step)
    if encoding not in IMAGE_ENCODINGS:
        raise InputError("image_unknown_encoding", f"Image encoding '{encoding}' is not one of "
                                                   f"{sorted(IMAGE_ENCODINGS)}")
    channels, conversion = IMAGE_ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise InputError("image_empty", f"Image is {width} x {height}")
    if step < width * channels:
        raise InputError("image_bad_step", f"Image step {step} < width {width} x {channels} channels")
    data = uint8_view(msg.data)
    if data.size < height * step:
        raise InputError("image_truncated", f"Image data has {data.size} bytes, height {height} x step {step} = "
                                            f"{height * step}")
    if data.size > height * step:
        raise InputError("image_trailing_data", f"Image data has {data.size} bytes, more than height {height} x "
                                                f"step {step} = {height * step}")
    pixels = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, conversion)


def compressed_to_rgb(msg: Any, reduction: int = 1) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG) -> (H, W, 3) uint8 RGB.

    reduction 2, 4 or 8 decodes a JPEG at that fraction of its size, ceil(H / r) x ceil(W / r) (pixel i covers
    source pixels [r i, r i + r)), for a network that uses no more pixels (`preprocess.decode_reduction`); the
    camera's intrinsics then scale by 1 / r. A PNG is always decoded in full.

    `format` is read as ROS writes it: a bare codec ("jpeg", "png") or image_transport's
    "<raw encoding>; <codec> compressed bgr8"; an empty format is allowed and the codec is taken from the data.
    Either way the stream holds colour as any JPEG / PNG file does, which OpenCV decodes to BGR. The data must
    start with the codec's signature and end with its end marker: OpenCV decodes a truncated JPEG into a partly
    grey image with only a warning, which would be a silently wrong input.
    """
    codec = _parse_compressed_format(str(msg.format))
    data = uint8_view(msg.data)
    if data.size == 0:
        raise InputError("image_empty", "CompressedImage has no data")
    head = data[:8].tobytes()
    actual = "jpeg" if head.startswith(JPEG_MAGIC) else "png" if head.startswith(PNG_MAGIC) else None
    if actual is None or (codec is not None and actual != codec):
        raise InputError("image_decode_failed", f"CompressedImage data is not a {codec or 'JPEG or PNG'} stream "
                                                f"(format '{msg.format}')")
    if actual == "jpeg":
        # Some encoders pad after the end-of-image marker with a few zero bytes.
        complete = np.trim_zeros(data[-64:], "b").tobytes().endswith(JPEG_END)
    else:
        complete = data[-len(PNG_END):].tobytes() == PNG_END
    if not complete:
        raise InputError("image_truncated", f"CompressedImage {actual.upper()} data ({data.size} bytes) has no "
                                            f"end marker: truncated")
    image = cv2.imdecode(data, JPEG_REDUCED[reduction] if actual == "jpeg" else cv2.IMREAD_COLOR)
    if image is None:
        raise InputError("image_decode_failed", f"OpenCV could not decode the {actual.upper()} data")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _parse_compressed_format(fmt: str) -> str | None:
    """The codec ('jpeg' / 'png') a CompressedImage format names, or None for an empty format."""
    parts = fmt.lower().replace(";", " ").split()
    if not parts:
        return None
    if "compresseddepth" in parts:
        raise InputError("image_unknown_encoding", f"CompressedImage format '{fmt}' is a depth image")
    codecs = [COMPRESSED_CODECS[p] for p in parts if p in COMPRESSED_CODECS]
    if not codecs:
        raise InputError("image_unknown_encoding", f"CompressedImage format '{fmt}' names no JPEG / PNG codec")
    return codecs[0]


def camera_info_to_intrinsics(msg: Any) -> tuple[np.ndarray, int, int]:
    """sensor_msgs/CameraInfo -> (K 3x3 float64, width, height).

    A zero K means 'uncalibrated' in ROS, and binning or a region of interest would make K describe a different
    pixel grid than the image the node receives; all are rejected (camera_info_invalid /
    camera_info_unsupported) instead of projecting LiDAR points to the wrong pixels.
    """
    k = np.asarray(msg.k, np.float64)
    width, height = int(msg.width), int(msg.height)
    if k.size != 9 or not np.isfinite(k).all():
        raise InputError("camera_info_invalid", f"CameraInfo k must be 9 finite numbers, got {k.tolist()}")
    k = k.reshape(3, 3)
    if not (k[0, 0] > 0 and k[1, 1] > 0):
        raise InputError("camera_info_invalid", f"CameraInfo focal lengths fx {k[0, 0]}, fy {k[1, 1]} must be > 0")
    if not np.array_equal(k[2], [0.0, 0.0, 1.0]):
        raise InputError("camera_info_invalid", f"CameraInfo k's last row is {k[2].tolist()}, not [0, 0, 1]")
    if width <= 0 or height <= 0:
        raise InputError("camera_info_invalid", f"CameraInfo size is {width} x {height}")
    roi = msg.roi
    roi_full = (int(roi.width) == 0 and int(roi.height) == 0) or (
        int(roi.x_offset) == 0 and int(roi.y_offset) == 0 and int(roi.width) == width and int(roi.height) == height)
    if int(msg.binning_x) > 1 or int(msg.binning_y) > 1 or not roi_full:
        raise InputError("camera_info_unsupported", f"CameraInfo uses binning ({msg.binning_x}, {msg.binning_y}) "
                                                    f"or a region of interest; only full-resolution images are "
                                                    f"supported")
    return k, width, height
