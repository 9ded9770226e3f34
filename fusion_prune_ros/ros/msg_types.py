"""The message classes that output messages are built from: rosbags' (bags, replay, tests) or rclpy's (the
node), behind one `MsgTypes`, so the builders never import rclpy themselves."""
from __future__ import annotations

import array
import dataclasses
import functools
import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..bag import typestore as ts


def _ros_type(name: str) -> Any:
    """A `MsgTypes` field holding the class of the ROS message type `name` ("vision_msgs/msg/Detection3D")."""
    return dataclasses.field(metadata={"ros": name})


@dataclass(frozen=True)
class MsgTypes:
    """The message classes the builders construct, resolved from their ROS type names (field metadata), plus
    how to make a uint8[] value: rosbags serialises numpy arrays, rclpy stores array.array('B')."""

    duration: type = _ros_type(ts.DURATION)
    point: type = _ros_type(ts.POINT)
    quaternion: type = _ros_type(ts.QUATERNION)
    pose: type = _ros_type(ts.POSE)
    pose_with_covariance: type = _ros_type("geometry_msgs/msg/PoseWithCovariance")
    vector3: type = _ros_type(ts.VECTOR3)
    color_rgba: type = _ros_type(ts.COLOR_RGBA)
    compressed_image: type = _ros_type(ts.COMPRESSED_IMAGE)
    mesh_file: type = _ros_type(ts.MESH_FILE)
    marker: type = _ros_type(ts.MARKER)
    marker_array: type = _ros_type(ts.MARKER_ARRAY)
    object_hypothesis: type = _ros_type(ts.OBJECT_HYPOTHESIS)
    object_hypothesis_with_pose: type = _ros_type(ts.OBJECT_HYPOTHESIS_WITH_POSE)
    bounding_box3d: type = _ros_type(ts.BOUNDING_BOX3D)
    detection3d: type = _ros_type(ts.DETECTION3D)
    detection3d_array: type = _ros_type(ts.DETECTION3D_ARRAY)
    vision_class: type = _ros_type(ts.VISION_CLASS)
    label_info: type = _ros_type(ts.LABEL_INFO)
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
