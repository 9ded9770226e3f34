"""Frames, quaternions and box conventions shared by the data, model, bag and ROS code.

nuScenes stores rotations as quaternions [w, x, y, z] and boxes as centre, size (w, l, h) and rotation, with the
box's length along its local x axis. The network predicts yaw about +z in the LiDAR frame. Keeping the
conversions in one place means training targets, decoded detections, bag markers and ROS messages agree.
"""
from __future__ import annotations

import numpy as np


def yaw_to_quat(yaw: float) -> np.ndarray:
    """Quaternion [w, x, y, z] of a rotation by `yaw` about +z."""
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)])


def quat_to_yaw(q) -> float:
    """Yaw about +z of quaternion [w, x, y, z] (the heading of a box's local x axis)."""
    w, x, y, z = q
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def quat_to_matrix(q) -> np.ndarray:
    """3x3 rotation matrix of quaternion [w, x, y, z] (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Quaternion [w, x, y, z] with w >= 0 of a 3x3 rotation matrix."""
    m = np.asarray(m, dtype=np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def rot_z(yaw: float) -> np.ndarray:
    """3x3 rotation about +z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def make_transform(rotation: np.ndarray, translation) -> np.ndarray:
    """4x4 homogeneous transform from a 3x3 rotation (or [w, x, y, z] quaternion) and a translation."""
    rotation = np.asarray(rotation, dtype=np.float64)
    t = np.eye(4)
    t[:3, :3] = quat_to_matrix(rotation) if rotation.shape == (4,) else rotation
    t[:3, 3] = np.asarray(translation, dtype=np.float64)
    return t


def invert_rigid(t: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform (R^T, -R^T t): exact, and far cheaper than a general inverse in a
    per-frame loop."""
    out = np.eye(4)
    out[:3, :3] = t[:3, :3].T
    out[:3, 3] = -t[:3, :3].T @ t[:3, 3]
    return out


def transform_points(t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to N x 3 points."""
    return points @ t[:3, :3].T + t[:3, 3]


def wrap_angle(a):
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def box_corners(center, size_wlh, yaw: float) -> np.ndarray:
    """8 x 3 corners of a box given its centre, nuScenes size (w, l, h) and yaw; length along the local x axis."""
    w, l, h = size_wlh
    x = np.array([1, 1, 1, 1, -1, -1, -1, -1]) * l / 2
    y = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    z = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * h / 2
    corners = np.stack([x, y, z], 1) @ rot_z(yaw).T
    return corners + np.asarray(center, dtype=np.float64)


def points_in_boxes(points: np.ndarray, centers: np.ndarray, sizes_wlh: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """Boolean (num_boxes, num_points) mask of points (N x 3) inside each box, as nuScenes counts num_lidar_pts."""
    if len(centers) == 0 or len(points) == 0:
        return np.zeros((len(centers), len(points)), dtype=bool)
    rel = points[None, :, :3] - centers[:, None, :]
    c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    lx = rel[..., 0] * c + rel[..., 1] * s
    ly = -rel[..., 0] * s + rel[..., 1] * c
    w, l, h = sizes_wlh[:, 0:1], sizes_wlh[:, 1:2], sizes_wlh[:, 2:3]
    return (np.abs(lx) <= l / 2) & (np.abs(ly) <= w / 2) & (np.abs(rel[..., 2]) <= h / 2)
