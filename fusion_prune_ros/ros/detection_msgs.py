"""`Detections` <-> vision_msgs messages, and their RViz / Foxglove markers, without importing rclpy.

Output messages are built from classes handed in as a `MsgTypes`, always with every field as a keyword argument:
rosbags classes are dataclasses without defaults, rclpy classes accept the same keywords. Incoming detections are
read by field name only, and a malformed one raises `InputError`. Quaternions in ROS messages are (x, y, z, w);
`fusion_prune_ros.geometry` uses [w, x, y, z].
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..data.classes import CLASS_COLORS, DETECTION_CLASSES
from ..detections import Detections
from ..errors import InputError
from ..geometry import quat_to_yaw, wrap_angle
from .msg_types import MsgTypes
from .stamps import ns_to_stamp

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
