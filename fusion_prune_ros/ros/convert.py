"""ROS 2 messages <-> numpy arrays and `Detections`, without importing rclpy.

Input messages are read by field name only, so the same code serves rclpy messages in the node and `rosbags`
messages in bag replay and tests. Output messages are built from classes handed in as a `MsgTypes`, always with
every field as a keyword argument: rosbags classes are dataclasses without defaults, rclpy classes accept the
same keywords.

Sensor data comes from drivers we do not control, so every malformed input raises `InputError`, whose `reason`
is a short stable code the node counts in its diagnostics; nothing here returns a silently wrong array.
Quaternions in ROS messages are (x, y, z, w); `fusion_prune_ros.geometry` uses [w, x, y, z].
"""
from __future__ import annotations

import array
import dataclasses
import functools
import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from ..bag import typestore as ts
from ..data.classes import CLASS_COLORS, DETECTION_CLASSES
from ..detections import Detections
from ..errors import InputError
from ..geometry import quat_to_matrix, quat_to_yaw, wrap_angle


# ---------------------------------------------------------------------------------------------- PointCloud2

# sensor_msgs/PointField datatype codes -> numpy type codes (byte order added per message).
POINT_FIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
XYZ = ("x", "y", "z")
INTENSITY = "intensity"


@dataclass(frozen=True)
class CloudConversion:
    """(N, 4) float32 x, y, z, intensity of the finite points, and how many points were dropped as non-finite
    (NaN / inf in x, y, z or intensity: what a driver writes for 'no return' in an organised cloud)."""

    points: np.ndarray
    dropped_nonfinite: int


def cloud_to_points(msg: Any, max_points: int = 1_000_000, allow_empty: bool = False) -> CloudConversion:
    """sensor_msgs/PointCloud2 of any field layout -> x, y, z, intensity (0 where the cloud has no intensity).

    Fields are found by name, with any datatype, offset, padding, row padding, height and byte order; a field with
    count > 1 contributes its element 0. Intensity is returned as stored (drivers differ: 0-255 integers, 0-1 or
    0-255 floats). The bytes are read through one strided structured view, so the only copy is the output.
    `allow_empty` lets the caller accept a cloud with no (finite) points; `max_points` bounds the work done for
    a corrupt width / height before any memory is allocated.
    """
    offsets = _cloud_fields(msg)
    for name in XYZ:
        if name not in offsets:
            raise InputError("cloud_missing_field", f"PointCloud2 has no '{name}' field (fields: {sorted(offsets)})")
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if row_step < width * point_step:
        raise InputError("cloud_bad_row_step", f"PointCloud2 row_step {row_step} < width {width} x point_step "
                                               f"{point_step}")
    data = _as_uint8(msg.data)
    if data.size != row_step * height:
        raise InputError("cloud_size_mismatch", f"PointCloud2 data has {data.size} bytes, row_step {row_step} x "
                                                f"height {height} = {row_step * height}")
    count = height * width
    if count > max_points:
        raise InputError("cloud_too_many_points", f"PointCloud2 has {count} points, more than {max_points}")
    points = np.empty((height, width, 4), np.float32)
    if count:
        order = ">" if msg.is_bigendian else "<"
        names = [n for n in (*XYZ, INTENSITY) if n in offsets]
        dtype = np.dtype({"names": names, "formats": [order + offsets[n][1] for n in names],
                          "offsets": [offsets[n][0] for n in names], "itemsize": point_step})
        grid = np.ndarray((height, width), dtype, buffer=data, strides=(row_step, point_step))
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf and is dropped below
            for column, name in enumerate((*XYZ, INTENSITY)):
                points[..., column] = grid[name] if name in offsets else 0.0
    points = points.reshape(-1, 4)
    finite = np.isfinite(points[:, 0])
    for column in range(1, 4):  # column by column: `isfinite(points).all(axis=1)` is ten times slower
        finite &= np.isfinite(points[:, column])
    dropped = int(count - np.count_nonzero(finite))
    if dropped:
        points = np.compress(finite, points, axis=0)  # a tenth of the time of `points[finite]` on (N, 4)
    if len(points) == 0 and not allow_empty:
        detail = f"all {count} points are non-finite" if count else "it has no points"
        raise InputError("cloud_empty", f"PointCloud2 is empty: {detail}")
    return CloudConversion(points, dropped)


def _cloud_fields(msg: Any) -> dict[str, tuple[int, str]]:
    """name -> (offset, numpy type code) of every field, after checking the declared layout is self-consistent:
    known datatypes, unique names, and every field (all `count` elements) inside `point_step`."""
    out: dict[str, tuple[int, str]] = {}
    point_step = int(msg.point_step)
    for field in msg.fields:
        name, offset, datatype, count = str(field.name), int(field.offset), int(field.datatype), int(field.count)
        if name in out:
            raise InputError("cloud_duplicate_field", f"PointCloud2 declares field '{name}' twice")
        if datatype not in POINT_FIELD_DTYPES:
            raise InputError("cloud_bad_datatype", f"PointCloud2 field '{name}' has unknown datatype {datatype}")
        if count < 1:
            raise InputError("cloud_bad_count", f"PointCloud2 field '{name}' has count {count}")
        code = POINT_FIELD_DTYPES[datatype]
        end = offset + np.dtype(code).itemsize * count
        if end > point_step:
            raise InputError("cloud_bad_point_step", f"PointCloud2 field '{name}' ends at byte {end}, past "
                                                     f"point_step {point_step}")
        out[name] = (offset, code)
    return out


def _as_uint8(data: Any) -> np.ndarray:
    """A uint8 view of a message's byte array: rosbags gives a numpy array, rclpy an array.array('B'); both
    expose the buffer protocol, so nothing is copied."""
    return np.frombuffer(data, np.uint8)


# ---------------------------------------------------------------------------------------------- images

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
    data = _as_uint8(msg.data)
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
    data = _as_uint8(msg.data)
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


# ---------------------------------------------------------------------------------------------- camera info

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


# ---------------------------------------------------------------------------------------------- tf and time

QUATERNION_NORM_TOLERANCE = 0.01  # tf2's own check on |q|^2 - 1 before it accepts a transform


def transform_to_matrix(transform: Any) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4 float64 (maps child-frame coordinates into the parent frame).

    The rotation is (x, y, z, w) in ROS; like tf2, a quaternion that is not unit within tolerance is rejected
    (transform_invalid) and a nearly unit one is normalised.
    """
    t, r = transform.translation, transform.rotation
    translation = np.array([t.x, t.y, t.z], np.float64)
    quat = np.array([r.w, r.x, r.y, r.z], np.float64)
    if not (np.isfinite(translation).all() and np.isfinite(quat).all()):
        raise InputError("transform_invalid", f"Transform has non-finite values: {translation}, {quat} (wxyz)")
    if abs(float(quat @ quat) - 1.0) > QUATERNION_NORM_TOLERANCE:
        raise InputError("transform_invalid", f"Transform rotation {quat} (wxyz) is not a unit quaternion")
    matrix = np.eye(4)
    matrix[:3, :3] = quat_to_matrix(quat)
    matrix[:3, 3] = translation
    return matrix


def tf_message_to_matrices(msg: Any) -> dict[tuple[str, str], np.ndarray]:
    """tf2_msgs/TFMessage -> {(parent frame, child frame): 4x4 parent <- child}; a later entry for the same pair
    replaces an earlier one, as tf2 would."""
    return {(str(stamped.header.frame_id), str(stamped.child_frame_id)): transform_to_matrix(stamped.transform)
            for stamped in msg.transforms}


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (or Duration) -> integer nanoseconds (exact: no float rounding)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, time_class: type) -> Any:
    """Integer nanoseconds -> a Time / Duration of `time_class`; nanosec is always in [0, 1e9), as ROS requires,
    also for negative times."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return time_class(sec=sec, nanosec=nanosec)


# ---------------------------------------------------------------------------------------------- output messages

@dataclass(frozen=True)
class MsgTypes:
    """The message classes the builders construct, resolved from their ROS type names (field metadata), plus
    how to make a uint8[] value: rosbags serialises numpy arrays, rclpy stores array.array('B')."""

    duration: type = dataclasses.field(metadata={"ros": ts.DURATION})
    point: type = dataclasses.field(metadata={"ros": ts.POINT})
    quaternion: type = dataclasses.field(metadata={"ros": ts.QUATERNION})
    pose: type = dataclasses.field(metadata={"ros": ts.POSE})
    pose_with_covariance: type = dataclasses.field(metadata={"ros": "geometry_msgs/msg/PoseWithCovariance"})
    vector3: type = dataclasses.field(metadata={"ros": ts.VECTOR3})
    color_rgba: type = dataclasses.field(metadata={"ros": ts.COLOR_RGBA})
    compressed_image: type = dataclasses.field(metadata={"ros": ts.COMPRESSED_IMAGE})
    mesh_file: type = dataclasses.field(metadata={"ros": ts.MESH_FILE})
    marker: type = dataclasses.field(metadata={"ros": ts.MARKER})
    marker_array: type = dataclasses.field(metadata={"ros": ts.MARKER_ARRAY})
    object_hypothesis: type = dataclasses.field(metadata={"ros": ts.OBJECT_HYPOTHESIS})
    object_hypothesis_with_pose: type = dataclasses.field(metadata={"ros": ts.OBJECT_HYPOTHESIS_WITH_POSE})
    bounding_box3d: type = dataclasses.field(metadata={"ros": ts.BOUNDING_BOX3D})
    detection3d: type = dataclasses.field(metadata={"ros": ts.DETECTION3D})
    detection3d_array: type = dataclasses.field(metadata={"ros": ts.DETECTION3D_ARRAY})
    vision_class: type = dataclasses.field(metadata={"ros": ts.VISION_CLASS})
    label_info: type = dataclasses.field(metadata={"ros": ts.LABEL_INFO})
    uint8_sequence: Callable[[bytes], Any]

    @classmethod
    def from_resolver(cls, resolve: Callable[[str], type], uint8_sequence: Callable[[bytes], Any]) -> "MsgTypes":
        """Every class looked up by its type name ("vision_msgs/msg/Detection3D", ...)."""
        classes = {f.name: resolve(f.metadata["ros"]) for f in dataclasses.fields(cls) if "ros" in f.metadata}
        return cls(**classes, uint8_sequence=uint8_sequence)


@functools.cache
def rosbags_types() -> MsgTypes:
    """The rosbags classes of the package's type store (bag writing, replay, tests)."""
    return MsgTypes.from_resolver(lambda name: ts.typestore().types[name], lambda b: np.frombuffer(b, np.uint8))


@functools.cache
def rclpy_types() -> MsgTypes:
    """The rclpy classes, for the node, imported only when asked for, so this module never needs ROS installed."""
    return MsgTypes.from_resolver(import_message_class, lambda b: array.array("B", b))


def import_message_class(name: str) -> type:
    """"pkg/msg/Name" -> the rclpy class pkg.msg.Name (what rosidl_runtime_py's get_message does, without
    depending on that package)."""
    package, kind, class_name = name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), class_name)


BOX_ALPHA = 0.5
TEXT_HEIGHT = 0.8  # metres: height of the label text above each box


def detections_to_msg(det: Detections, header: Any, types: MsgTypes) -> Any:
    """Detections (LiDAR frame) -> vision_msgs/Detection3DArray with `header` (the LiDAR stamp and frame).

    One Detection3D per box with one hypothesis: class_id is the class name ("car"), the pose is the box
    centre with its yaw. BoundingBox3D.size is the extent along the box's own x, y, z, so (l, w, h).
    vision_msgs has no velocity or attribute field; those do not travel.
    """
    detections = []
    for i in range(len(det)):
        x, y, z, w, l, h, yaw = (float(v) for v in det.boxes[i, :7])
        hypothesis = types.object_hypothesis(class_id=DETECTION_CLASSES[int(det.labels[i])],
                                             score=float(det.scores[i]))
        result = types.object_hypothesis_with_pose(
            hypothesis=hypothesis,
            pose=types.pose_with_covariance(pose=_pose(types, x, y, z, yaw), covariance=np.zeros(36)))
        bbox = types.bounding_box3d(center=_pose(types, x, y, z, yaw), size=types.vector3(x=l, y=w, z=h))
        detections.append(types.detection3d(header=header, results=[result], bbox=bbox, id=""))
    return types.detection3d_array(header=header, detections=detections)


def msg_to_detections(msg: Any) -> Detections:
    """vision_msgs/Detection3DArray -> Detections (velocity 0, no attributes): the inverse of
    `detections_to_msg`. A detection with several hypotheses keeps its best-scoring one."""
    boxes, scores, labels = [], [], []
    for detection in msg.detections:
        if not detection.results:
            raise InputError("detection_no_result", "Detection3D has no hypothesis")
        best = max(detection.results, key=lambda r: r.hypothesis.score).hypothesis
        if best.class_id not in DETECTION_CLASSES:
            raise InputError("detection_unknown_class", f"Detection3D class_id '{best.class_id}' is not one of "
                                                        f"{DETECTION_CLASSES}")
        centre, size, q = detection.bbox.center.position, detection.bbox.size, detection.bbox.center.orientation
        yaw = float(wrap_angle(quat_to_yaw([q.w, q.x, q.y, q.z])))
        boxes.append([centre.x, centre.y, centre.z, size.y, size.x, size.z, yaw, 0.0, 0.0])
        scores.append(best.score)
        labels.append(DETECTION_CLASSES.index(best.class_id))
    return Detections(np.array(boxes, np.float32).reshape(-1, 9), np.array(scores, np.float32),
                      np.array(labels, np.int64))


def label_info_msg(header: Any, types: MsgTypes, threshold: float = 0.0) -> Any:
    """vision_msgs/LabelInfo: class_id i <-> DETECTION_CLASSES[i] (the network's channel order), so consumers can
    map the class names of Detection3D back to ids; `threshold` is the score threshold the node applies."""
    class_map = [types.vision_class(class_id=i, class_name=name) for i, name in enumerate(DETECTION_CLASSES)]
    return types.label_info(header=header, class_map=class_map, threshold=float(threshold))


def detections_to_markers(det: Detections, header: Any, types: MsgTypes, lifetime_ns: int, namespace: str) -> Any:
    """visualization_msgs/MarkerArray for RViz / Foxglove: DELETEALL first (so boxes of the previous frame never
    linger when there are fewer now), then per box a translucent CUBE in its class colour (ids 1, 3, ...) and a
    TEXT_VIEW_FACING "class score" above it (ids 2, 4, ...), all in `namespace` and `header`'s frame."""
    lifetime = ns_to_stamp(lifetime_ns, types.duration)
    cls = types.marker
    markers = [_marker(types, header, namespace, 0, cls.CUBE, cls.DELETEALL, _pose(types, 0.0, 0.0, 0.0, 0.0),
                       (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), lifetime, "")]
    for i in range(len(det)):
        x, y, z, w, l, h, yaw = (float(v) for v in det.boxes[i, :7])
        name = DETECTION_CLASSES[int(det.labels[i])]
        rgb = CLASS_COLORS[name]
        markers.append(_marker(types, header, namespace, 2 * i + 1, cls.CUBE, cls.ADD, _pose(types, x, y, z, yaw),
                               (l, w, h), (*rgb, BOX_ALPHA), lifetime, ""))
        markers.append(_marker(types, header, namespace, 2 * i + 2, cls.TEXT_VIEW_FACING, cls.ADD,
                               _pose(types, x, y, z + h / 2 + TEXT_HEIGHT, 0.0), (0.0, 0.0, TEXT_HEIGHT),
                               (*rgb, 1.0), lifetime, f"{name} {float(det.scores[i]):.2f}"))
    return types.marker_array(markers=markers)


def _pose(types: MsgTypes, x: float, y: float, z: float, yaw: float) -> Any:
    """geometry_msgs/Pose at (x, y, z) rotated by yaw about +z; ROS quaternion order (x, y, z, w)."""
    return types.pose(position=types.point(x=x, y=y, z=z),
                      orientation=types.quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)))


def _marker(types: MsgTypes, header: Any, namespace: str, marker_id: int, kind: int, action: int, pose: Any,
            scale: tuple[float, float, float], rgba: tuple[float, float, float, float], lifetime: Any,
            text: str) -> Any:
    empty = types.uint8_sequence(b"")
    return types.marker(
        header=header, ns=namespace, id=marker_id, type=kind, action=action, pose=pose,
        scale=types.vector3(x=scale[0], y=scale[1], z=scale[2]),
        color=types.color_rgba(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3]), lifetime=lifetime, frame_locked=False,
        points=[], colors=[], texture_resource="",
        texture=types.compressed_image(header=header, format="", data=empty), uv_coordinates=[], text=text,
        mesh_resource="", mesh_file=types.mesh_file(filename="", data=empty),
        mesh_use_embedded_materials=False)
