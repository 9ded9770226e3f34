"""The `rosbags` type store for the bags: ROS 2 Jazzy's message types plus vision_msgs.

rosbags ships the core Jazzy interfaces but not vision_msgs, so those are parsed from the package's own copy of
the upstream .msg files (fusion_prune_ros/ros/interfaces/vision_msgs/msg, the same files a rosidl build uses),
which keeps the bag writer, the tests and a ROS 2 node on one definition.
"""
from __future__ import annotations

import functools
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

VISION_MSGS_DIR = Path(__file__).resolve().parent.parent / "ros" / "interfaces" / "vision_msgs" / "msg"

POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
POINT_FIELD = "sensor_msgs/msg/PointField"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
REGION_OF_INTEREST = "sensor_msgs/msg/RegionOfInterest"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
TRANSFORM_STAMPED = "geometry_msgs/msg/TransformStamped"
TRANSFORM = "geometry_msgs/msg/Transform"
POSE = "geometry_msgs/msg/Pose"
POINT = "geometry_msgs/msg/Point"
VECTOR3 = "geometry_msgs/msg/Vector3"
QUATERNION = "geometry_msgs/msg/Quaternion"
HEADER = "std_msgs/msg/Header"
COLOR_RGBA = "std_msgs/msg/ColorRGBA"
TIME = "builtin_interfaces/msg/Time"
DURATION = "builtin_interfaces/msg/Duration"
MARKER = "visualization_msgs/msg/Marker"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
MESH_FILE = "visualization_msgs/msg/MeshFile"
DETECTION3D = "vision_msgs/msg/Detection3D"
DETECTION3D_ARRAY = "vision_msgs/msg/Detection3DArray"
BOUNDING_BOX3D = "vision_msgs/msg/BoundingBox3D"
OBJECT_HYPOTHESIS = "vision_msgs/msg/ObjectHypothesis"
OBJECT_HYPOTHESIS_WITH_POSE = "vision_msgs/msg/ObjectHypothesisWithPose"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
VISION_CLASS = "vision_msgs/msg/VisionClass"


def vision_msgs_types() -> dict:
    """Parse every vision_msgs .msg file into one rosbags types dict (name -> definition)."""
    types: dict = {}
    for path in sorted(VISION_MSGS_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    return types


@functools.cache
def typestore() -> Typestore:
    """Jazzy's types plus vision_msgs, built once per process.

    All vision_msgs types go into one `register` call because they refer to each other (Detection3D to
    BoundingBox3D, ...): a type registered before the types it refers to fails with a KeyError when first
    used, while one call generates them together, in any order.
    """
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(vision_msgs_types())
    return store
