"""`FrameInputs`: what the detector needs for one frame, read from a nuScenes sample through the devkit.

The same structure is built from ROS messages by the node (later), so preprocessing never knows where a frame
came from. Reading goes through the devkit only (`LidarPointCloud.from_file_multisweep`, the calibration and
ego-pose tables), so the real nuScenes and the generated set load identically.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import UserError
from ..geometry import make_transform
from .classes import CAMERAS, LIDAR
from .nusc import sensor_file


@dataclass
class FrameInputs:
    """One synchronised frame.

    points: (N, 5) x, y, z, intensity, time lag [s] in the key LiDAR sweep's frame, earlier sweeps motion
    compensated into it. images: (C, H, W, 3) uint8 RGB. intrinsics: (C, 3, 3). cam_from_lidar: (C, 4, 4),
    including the ego motion between the LiDAR and each camera's stamp. camera_present (C,) and lidar_present say
    which inputs exist (a missing camera keeps a black image and present = False).
    """

    points: np.ndarray
    images: np.ndarray
    intrinsics: np.ndarray
    cam_from_lidar: np.ndarray
    camera_present: np.ndarray
    lidar_present: bool
    stamp_us: int
    camera_names: tuple = CAMERAS
    sample_token: str = ""


def _sd_transform(nusc, sd_token: str) -> np.ndarray:
    """global <- sensor transform of a sample_data record (its ego pose and its calibration)."""
    sd = nusc.get("sample_data", sd_token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return make_transform(pose["rotation"], pose["translation"]) @ make_transform(cs["rotation"], cs["translation"])


def load_frame(nusc, sample_token: str, n_sweeps: int) -> FrameInputs:
    """A sample -> FrameInputs with `n_sweeps` LiDAR sweeps (key sweep included) and the six key camera images."""
    sample = nusc.get("sample", sample_token)
    lidar_sd = sample["data"].get(LIDAR)
    if lidar_sd is None:
        raise UserError(f"sample {sample_token} has no {LIDAR} data")
    sensor_file(nusc, lidar_sd)
    # Imported here: the node imports FrameInputs from this module and must not load the devkit (and with it
    # scikit-learn and matplotlib) to run inference.
    from nuscenes.utils.data_classes import LidarPointCloud

    pc, times = LidarPointCloud.from_file_multisweep(nusc, sample, LIDAR, LIDAR, nsweeps=n_sweeps)
    points = np.concatenate([pc.points.T, times.T], 1).astype(np.float32)
    global_from_lidar = _sd_transform(nusc, lidar_sd)
    images, intrinsics, extrinsics, present = [], [], [], []
    shape = None
    for cam in CAMERAS:
        token = sample["data"].get(cam)
        if token is None:
            images.append(None)
            intrinsics.append(np.eye(3))
            extrinsics.append(np.eye(4))
            present.append(False)
            continue
        image = cv2.imread(str(sensor_file(nusc, token)), cv2.IMREAD_COLOR)
        if image is None:
            raise UserError(f"unreadable image {nusc.get('sample_data', token)['filename']}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        shape = image.shape
        cs = nusc.get("calibrated_sensor", nusc.get("sample_data", token)["calibrated_sensor_token"])
        images.append(image)
        intrinsics.append(np.asarray(cs["camera_intrinsic"], np.float64))
        extrinsics.append(np.linalg.inv(_sd_transform(nusc, token)) @ global_from_lidar)
        present.append(True)
    if shape is None:
        raise UserError(f"sample {sample_token} has no camera images")
    images = [im if im is not None else np.zeros(shape, np.uint8) for im in images]
    return FrameInputs(points, np.stack(images), np.stack(intrinsics).astype(np.float32),
                       np.stack(extrinsics).astype(np.float32), np.array(present), True, int(sample["timestamp"]),
                       CAMERAS, sample_token)
