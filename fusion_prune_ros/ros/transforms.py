"""tf messages -> 4x4 matrices, without importing rclpy.

Messages are read by field name only, so rclpy messages (the node) and `rosbags` messages (bag replay, tests)
both work. A malformed transform raises `InputError` (reason `transform_invalid`) instead of moving points to a
wrong place. Quaternions in ROS messages are (x, y, z, w); `fusion_prune_ros.geometry` uses [w, x, y, z].
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import quat_to_matrix

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
