"""Topic names shared by the bag converter, the node's defaults and the replay (the public nuScenes converters'
layout: /LIDAR_TOP, /<CAM>/image_rect_compressed, /<CAM>/camera_info, /tf, /tf_static)."""
from __future__ import annotations

from ..data.classes import LIDAR

LIDAR_TOPIC = f"/{LIDAR}"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
MARKER_TOPIC = "/markers/annotations"
DETECTIONS_TOPIC = "/fusion_prune/detections"
DETECTION_MARKERS_TOPIC = "/fusion_prune/markers"
LABEL_INFO_TOPIC = "/fusion_prune/label_info"
ACTIVE_VARIANT_TOPIC = "/fusion_prune/active_variant"
DIAGNOSTICS_TOPIC = "/diagnostics"


def image_topic(camera: str) -> str:
    return f"/{camera}/image_rect_compressed"


def camera_info_topic(camera: str) -> str:
    return f"/{camera}/camera_info"


# What the node publishes, with the message types a recorder needs; the latched ones are transient local.
OUTPUT_TOPICS = {DETECTIONS_TOPIC: "vision_msgs/msg/Detection3DArray",
                 DETECTION_MARKERS_TOPIC: "visualization_msgs/msg/MarkerArray",
                 ACTIVE_VARIANT_TOPIC: "std_msgs/msg/String",
                 LABEL_INFO_TOPIC: "vision_msgs/msg/LabelInfo",
                 DIAGNOSTICS_TOPIC: "diagnostic_msgs/msg/DiagnosticArray"}
LATCHED_OUTPUTS = (ACTIVE_VARIANT_TOPIC, LABEL_INFO_TOPIC)
