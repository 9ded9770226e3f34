"""LiDAR-driven frame assembly from decoded sensor messages (ROS-free; the node and the bag replay share it).

Not ApproximateTimeSynchronizer, which drops the whole set when one camera is late: every LiDAR sweep triggers a
frame with, per camera, the newest image stamped at or before the sweep and no older than `camera_max_age_s` (a
missing camera is masked, not waited for), so detections flow from the first LiDAR message even if a camera was
never seen. Images stamped after the sweep wait for the next one: the choice depends on stamps only, not on which
messages happened to arrive first, so the node and an in-process replay of the same bag build the same frame
(nuScenes stamps a sweep when its rotation completes, after the cameras it triggered).

The frame is built exactly as the devkit builds a nuScenes sample (`LidarPointCloud.from_file_multisweep` and the
calibration chain), so replaying a bag scores what offline evaluation scores: the previous `n_sweeps - 1` clouds
are moved into the current LiDAR frame through the ego poses at their stamps (odometry, map <- base_link), each
sweep first loses the points within 1 m of the sensor, the time lag is a fifth column (`multisweep.py`), and each
camera's transform includes the ego motion between its stamp and the LiDAR's. Work that does not depend on the
frame is done once, on arrival: a sweep is kept without its near points, an image at the network's size
(`assembled.NetworkImage`).

Bad timing is dropped with a reason (the caller counts it): a duplicate or out-of-order message (a stamp far in
the future is refused earlier, by the sensor health, against the other sensors' stamps); a stamp jumping backwards by more than `reset_after_s` (bag loop, sim time reset) clears the history
and starts again rather than mixing two timelines.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..config import CameraInputConfig
from ..geometry import invert_rigid
from .assembled import AssembledFrame, NetworkImage
from .multisweep import MultiSweep, remove_close

IMAGES_KEPT = 4  # per camera: a 12 Hz camera's images of the last ~250 ms, enough to find the one before a sweep


@dataclass
class AssemblerConfig:
    n_sweeps: int = 6
    camera_max_age_s: float = 0.1
    reset_after_s: float = 1.0
    pose_tolerance_s: float = 0.06  # how far a pose may be from a stamp without interpolation partners
    camera: CameraInputConfig = field(default_factory=CameraInputConfig)  # the network's image size


@dataclass
class Calibration:
    """Static extrinsics and intrinsics: base_link <- LiDAR, base_link <- each camera, and each camera's K."""

    base_from_lidar: np.ndarray
    base_from_camera: dict  # camera name -> 4x4
    intrinsics: dict  # camera name -> 3x3


class Dropped(Exception):
    """A message that does not make (or join) a frame; `reason` is the diagnostics counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class PoseBuffer:
    """map <- base_link poses by stamp: exact when a pose has the stamp (nuScenes bags carry one per sensor
    message), else interpolated between the two nearest (translation linearly, rotation by normalised quaternion
    blend, fine for the few milliseconds between odometry messages)."""

    def __init__(self, horizon_s: float = 5.0):
        self.horizon_ns = int(horizon_s * 1e9)
        self.stamps: list = []
        self.poses: list = []

    def clear(self) -> None:
        self.stamps.clear()
        self.poses.clear()

    def add(self, stamp_ns: int, map_from_base: np.ndarray) -> None:
        i = bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.poses[i] = map_from_base
            return
        self.stamps.insert(i, stamp_ns)
        self.poses.insert(i, map_from_base)
        while self.stamps and self.stamps[0] < self.stamps[-1] - self.horizon_ns:
            self.stamps.pop(0)
            self.poses.pop(0)

    def at(self, stamp_ns: int, tolerance_ns: int) -> np.ndarray | None:
        """The pose at a stamp: exact, interpolated between neighbours, or the nearest within tolerance."""
        from ..geometry import make_transform, matrix_to_quat, quat_to_matrix

        if not self.stamps:
            return None
        i = bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return self.poses[i]
        if 0 < i < len(self.stamps):
            t0, t1 = self.stamps[i - 1], self.stamps[i]
            a = (stamp_ns - t0) / (t1 - t0)
            p0, p1 = self.poses[i - 1], self.poses[i]
            q0, q1 = matrix_to_quat(p0[:3, :3]), matrix_to_quat(p1[:3, :3])
            if np.dot(q0, q1) < 0:
                q1 = -q1
            q = (1 - a) * q0 + a * q1
            return make_transform(quat_to_matrix(q / np.linalg.norm(q)), (1 - a) * p0[:3, 3] + a * p1[:3, 3])
        j = 0 if i == 0 else len(self.stamps) - 1
        return self.poses[j] if abs(self.stamps[j] - stamp_ns) <= tolerance_ns else None


class FrameAssembler:
    def __init__(self, cameras: tuple, calibration: Calibration, cfg: AssemblerConfig = AssemblerConfig()):
        self.cameras = tuple(cameras)
        self.calib = calibration
        self.cfg = cfg
        self.poses = PoseBuffer()
        self._sweeps: deque = deque(maxlen=max(0, cfg.n_sweeps - 1))  # (stamp_ns, remove_close(points))
        self._images: dict = {}  # camera -> deque of the last IMAGES_KEPT (stamp_ns, NetworkImage), oldest first
        self._last_cloud_ns: int | None = None
        self._black = NetworkImage.black(cfg.camera)
        remove_close(np.zeros((0, 4), np.float32))  # its compiled kernel loads now rather than on the first sweep

    def reset(self) -> None:
        self._sweeps.clear()
        self._images.clear()
        self.poses.clear()
        self._last_cloud_ns = None

    def _check_stamp(self, stamp_ns: int, last_ns: int | None, what: str) -> bool:
        """True if the history was reset; raises Dropped for unusable stamps."""
        if last_ns is None:
            return False
        if stamp_ns == last_ns:
            raise Dropped("duplicate_stamp", f"{what} with the same stamp as the previous one")
        if stamp_ns < last_ns - self.cfg.reset_after_s * 1e9:
            self.reset()
            return True
        if stamp_ns < last_ns:
            raise Dropped("out_of_order", f"{what} stamp {(last_ns - stamp_ns) / 1e6:.1f} ms before the previous")
        return False

    def add_image(self, camera: str, stamp_ns: int, rgb: np.ndarray) -> None:
        if camera not in self.cameras:
            raise Dropped("unknown_camera", f"image from unknown camera {camera}")
        kept = self._images.setdefault(camera, deque(maxlen=IMAGES_KEPT))
        if self._check_stamp(stamp_ns, kept[-1][0] if kept else None, f"{camera} image"):
            kept = self._images.setdefault(camera, deque(maxlen=IMAGES_KEPT))
        kept.append((stamp_ns, NetworkImage.of(rgb, self.cfg.camera)))

    def add_pose(self, stamp_ns: int, map_from_base: np.ndarray) -> None:
        self.poses.add(stamp_ns, map_from_base)

    def add_cloud(self, stamp_ns: int, points: np.ndarray) -> tuple:
        """A LiDAR sweep (N x 4 x, y, z, intensity in the LiDAR frame) -> (AssembledFrame, notes).

        notes lists non-fatal degradations for diagnostics (e.g. 'no_odometry': earlier sweeps not used).
        """
        reset = self._check_stamp(stamp_ns, self._last_cloud_ns, "cloud")
        notes = ["time_reset"] if reset else []
        self._last_cloud_ns = stamp_ns
        tol = int(self.cfg.pose_tolerance_s * 1e9)
        pose_now = self.poses.at(stamp_ns, tol)
        b_l = self.calib.base_from_lidar
        current = remove_close(points)
        earlier = []  # (points, current LiDAR <- that sweep's LiDAR, lag), newest first
        if self._sweeps:
            if pose_now is None:
                notes.append("no_odometry")
            else:
                lidar_from_map = invert_rigid(pose_now @ b_l)
                for sweep_ns, sweep in reversed(self._sweeps):
                    pose = self.poses.at(sweep_ns, tol)
                    if pose is None:
                        notes.append("no_odometry")
                        break
                    earlier.append((sweep, lidar_from_map @ pose @ b_l, (stamp_ns - sweep_ns) * 1e-9))
        self._sweeps.append((stamp_ns, current))
        cameras, camera_notes = self._cameras_at(stamp_ns, pose_now)
        frame = AssembledFrame(MultiSweep(current, tuple(earlier)), stamp_us=stamp_ns // 1000,
                               camera_names=self.cameras, **cameras)
        return frame, sorted(set(notes + camera_notes))

    def add_sweep(self, stamp_ns: int, points: np.ndarray) -> None:
        """A sweep that gets no frame of its own (the node was busy): kept for the next frames' multi-sweep cloud,
        so that a dropped frame does not also thin out the input of the frames after it."""
        self._check_stamp(stamp_ns, self._last_cloud_ns, "cloud")
        self._last_cloud_ns = stamp_ns
        self._sweeps.append((stamp_ns, remove_close(points)))

    def camera_frame(self, now_ns: int) -> AssembledFrame | None:
        """Without LiDAR: a frame of the newest images (stamped with the newest), in the LiDAR frame through the
        static calibration, for a camera-only variant. None if no camera image is fresh."""
        stamps = [k[-1][0] for k in self._images.values() if now_ns - k[-1][0] <= self.cfg.camera_max_age_s * 1e9]
        if not stamps or self.calib.base_from_lidar is None:
            return None
        stamp = max(stamps)
        pose = self.poses.at(stamp, int(self.cfg.pose_tolerance_s * 1e9))
        cameras, _ = self._cameras_at(stamp, pose)
        return AssembledFrame(None, stamp_us=stamp // 1000, camera_names=self.cameras, **cameras)

    def _cameras_at(self, stamp_ns: int, pose_ref: np.ndarray | None) -> tuple:
        """The AssembledFrame fields of the cameras for a frame at stamp_ns (network images, intrinsics, camera <-
        LiDAR transforms, presence, the (width, height) the images arrived with), and why each camera that has
        sent images is left out (for diagnostics: nothing is dropped silently). The cameras must agree on the size
        their images arrive with."""
        tol = int(self.cfg.pose_tolerance_s * 1e9)
        b_l = self.calib.base_from_lidar
        images, intrinsics, extrinsics, present, notes = [], [], [], [], []
        size = next((k[-1][1].source_size for k in self._images.values()), (1, 1))
        for cam in self.cameras:
            buffered = self._images.get(cam, ())
            stamp_img, image = next(((s, im) for s, im in reversed(buffered) if s <= stamp_ns), (None, None))
            k = self.calib.intrinsics.get(cam)
            b_c = self.calib.base_from_camera.get(cam)
            problem = None
            if buffered and stamp_img is None:
                problem = "image_after_sweep"  # e.g. a camera clock ahead of the LiDAR's
            elif stamp_img is not None:
                if abs(stamp_ns - stamp_img) > self.cfg.camera_max_age_s * 1e9:
                    problem = "image_too_old"
                elif image.source_size != size:
                    problem = "image_size_differs_from_other_cameras"
                elif k is None:
                    problem = "no_camera_info"
                elif b_c is None:
                    problem = "no_extrinsics"
            if problem:
                notes.append(f"{cam}:{problem}")
            if stamp_img is not None and problem is None:
                pose_img = self.poses.at(stamp_img, tol)
                if pose_ref is not None and pose_img is not None:
                    cam_from_lidar = invert_rigid(pose_img @ b_c) @ pose_ref @ b_l
                else:
                    cam_from_lidar = invert_rigid(b_c) @ b_l
                images.append(image)
                intrinsics.append(k)
                extrinsics.append(cam_from_lidar)
                present.append(True)
            else:
                images.append(self._black)
                intrinsics.append(np.eye(3))
                extrinsics.append(np.eye(4))
                present.append(False)
        return {"images": tuple(images),
                "intrinsics": np.stack(intrinsics).astype(np.float32),
                "cam_from_lidar": np.stack(extrinsics).astype(np.float32), "camera_present": np.array(present),
                "source_size": size}, notes
