"""`Detections`: boxes in the LiDAR frame, and their conversion to and from nuScenes global boxes.

The network, the decoder, the ROS node and the bag replay all speak LiDAR-frame boxes
(x, y, z, w, l, h, yaw, vx, vy): that is the frame the sensor data arrives in. Only evaluation and ground truth
need the global frame, through the ego pose and the LiDAR calibration of the sample's key frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data.classes import CLASS_ATTRIBUTES, DETECTION_CLASSES
from .geometry import make_transform, matrix_to_quat, quat_to_matrix, quat_to_yaw

BOX_FIELDS = ("x", "y", "z", "w", "l", "h", "yaw", "vx", "vy")


@dataclass
class Detections:
    """Boxes (N, 9: x, y, z, w, l, h, yaw, vx, vy) in the LiDAR frame, scores (N,), labels (N,) into
    DETECTION_CLASSES, and optional attribute names (N,) ('' where the class has none)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 9), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    attributes: list | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, mask) -> "Detections":
        attrs = None if self.attributes is None else [a for a, m in zip(self.attributes, np.asarray(mask)) if m]
        return Detections(self.boxes[mask], self.scores[mask], self.labels[mask], attrs)


def lidar_to_global(nusc, sample_token: str) -> np.ndarray:
    """4x4 global <- LiDAR transform of a sample's key-frame LiDAR sweep."""
    sd = nusc.get("sample_data", nusc.get("sample", sample_token)["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return make_transform(pose["rotation"], pose["translation"]) @ make_transform(cs["rotation"], cs["translation"])


def default_attribute(label: int, speed: float) -> str:
    """The attribute given to a detection when the model predicts none: the documented rule is 'moving' above
    0.2 m/s for vehicles and pedestrians, 'parked' / 'standing' below, cycles 'with_rider' when moving,
    'without_rider' when still; barriers and cones have none."""
    name = DETECTION_CLASSES[label]
    options = CLASS_ATTRIBUTES[name]
    if not options:
        return ""
    moving = speed > 0.2
    if name == "pedestrian":
        return "pedestrian.moving" if moving else "pedestrian.standing"
    if name in ("bicycle", "motorcycle"):
        return "cycle.with_rider" if moving else "cycle.without_rider"
    return "vehicle.moving" if moving else "vehicle.parked"


def to_nuscenes_boxes(det: Detections, global_from_lidar: np.ndarray, sample_token: str) -> list:
    """Detections -> the dicts of a nuScenes detection results file (global frame)."""
    rot = global_from_lidar[:3, :3]
    out = []
    for i in range(len(det)):
        x, y, z, w, l, h, yaw, vx, vy = (float(v) for v in det.boxes[i])
        centre = rot @ np.array([x, y, z]) + global_from_lidar[:3, 3]
        box_rot = rot @ quat_to_matrix([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        vel = rot @ np.array([vx, vy, 0.0])
        label = int(det.labels[i])
        attr = det.attributes[i] if det.attributes is not None else default_attribute(label, float(np.hypot(vx, vy)))
        out.append({"sample_token": sample_token, "translation": [float(v) for v in centre],
                    "size": [w, l, h], "rotation": [float(v) for v in matrix_to_quat(box_rot)],
                    "velocity": [float(vel[0]), float(vel[1])], "detection_name": DETECTION_CLASSES[label],
                    "detection_score": float(det.scores[i]), "attribute_name": attr})
    return out


def from_global(translations, sizes, rotations, velocities, global_from_lidar: np.ndarray) -> np.ndarray:
    """Global boxes (translation, size wlh, rotation quaternion, velocity xy) -> (N, 9) LiDAR-frame boxes."""
    lidar_from_global = np.linalg.inv(global_from_lidar)
    rot = lidar_from_global[:3, :3]
    out = np.zeros((len(translations), 9), np.float32)
    for i, (t, s, q, v) in enumerate(zip(translations, sizes, rotations, velocities)):
        out[i, :3] = rot @ np.asarray(t, np.float64) + lidar_from_global[:3, 3]
        out[i, 3:6] = s
        out[i, 6] = quat_to_yaw(matrix_to_quat(rot @ quat_to_matrix(q)))
        vel = rot @ np.array([v[0], v[1], 0.0])
        out[i, 7:9] = vel[:2]
    return out
