"""`DetectorCore`: everything the onboard node does, without ROS.

The rclpy node and the in-process bag replay both feed messages (rclpy or rosbags objects, read by field name)
into this class and publish what it returns, so the replay measures what the node does. It owns:
conversion of each message, calibration (from /tf_static or a file, intrinsics from CameraInfo), odometry (/tf),
sensor health, the LiDAR-driven frame assembly, the policy that picks the variant, the pipeline that runs it, and
the counters behind the diagnostics. No input ever raises out of it: a bad message is counted under a reason and
the next good one is processed normally. Nothing garbage gets published: a frame that cannot be built produces
no detections, and the reason is counted.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from ..config import DetectorConfig, load_yaml
from ..data.classes import CAMERAS
from ..detections import Detections
from ..model.decode import DecodeConfig
from ..ros.convert import (InputError, camera_info_to_intrinsics, check_image_matches_info, cloud_to_points,
                           compressed_to_rgb, image_to_rgb, stamp_to_ns, tf_message_to_matrices)
from .assembler import AssemblerConfig, Calibration, Dropped, FrameAssembler
from .backends import create_backend
from .health import HealthConfig, SensorHealth
from .pipeline import Pipeline
from .policy import Candidate, Decision, Policy, PolicyConfig
from .pool import VariantPool
from .profile import load_profile

BASE_FRAME = "base_link"
MAP_FRAME = "map"


@dataclass
class CoreConfig:
    profile: str
    backend: str = "auto"
    device: str = "auto"
    threads: int = 2
    score_threshold: float = 0.3
    max_points: int = 400_000
    lidar: str = "LIDAR_TOP"
    cameras: tuple = CAMERAS
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    camera_max_age_s: float = 0.1
    base_frame: str = BASE_FRAME
    map_frame: str = MAP_FRAME


@dataclass
class FrameOutput:
    """What the node publishes for one LiDAR sweep."""

    stamp_ns: int
    frame_id: str
    detections: Detections
    variant: str
    decision: Decision
    timings_ms: dict
    notes: list
    cameras: int  # cameras whose images the frame used


@dataclass
class SwitchEvent:
    stamp_ns: int
    variant: str | None
    reason: str


class DetectorCore:
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        self.profile = load_profile(cfg.profile)
        self.detector_cfg = load_yaml(DetectorConfig, self.profile.path(self.profile.detector))
        self.backend = create_backend(cfg.backend, cfg.device, threads=cfg.threads)
        self.pool = VariantPool(self.profile, self.backend, self.detector_cfg)
        key = self.profile.latency_key
        self.policy = Policy([Candidate(v.name, v.modality, float(v.latency_ms.get(key, 0.0)))
                              for v in self.profile.variants], cfg.policy)
        self.pipeline = Pipeline(self.detector_cfg, self.pool, DecodeConfig(score_threshold=cfg.score_threshold))
        self.health = SensorHealth(cfg.lidar, cfg.cameras, cfg.health)
        self.assembler = FrameAssembler(cfg.cameras, Calibration(None, {}, {}), AssemblerConfig(
            n_sweeps=self.detector_cfg.grid.n_sweeps, camera_max_age_s=cfg.camera_max_age_s))
        self.frame_of_camera: dict = {}  # optical frame id -> camera name (from image headers)
        self.image_size: dict = {}  # camera -> (width, height) from CameraInfo
        self.drops: Counter = Counter()
        self.notes: Counter = Counter()
        self.frames = 0
        self.publish_failures = 0
        self.switches: deque = deque(maxlen=50)
        self.lidar_frame_id = cfg.lidar
        self._last_camera_frame_ns = -1
        self.latency: deque = deque(maxlen=200)
        self.variant_latency: dict = {}  # variant -> recent end-to-end latencies (ms), for diagnostics
        self.stage_ms: dict = {}
        self._static: dict = {}

    # -- calibration and odometry ---------------------------------------------------------------------------

    def on_static_tf(self, msg) -> None:
        try:
            self._static.update(tf_message_to_matrices(msg))
        except InputError as e:
            self.drops[e.reason] += 1
            return
        self._refresh_calibration()

    def set_calibration(self, base_from_sensor: dict) -> None:
        """Extrinsics from a calibration file instead of /tf_static: {frame_id: 4x4 base <- sensor}."""
        self._static.update({(self.cfg.base_frame, k): np.asarray(v, np.float64) for k, v in base_from_sensor.items()})
        self._refresh_calibration()

    def _refresh_calibration(self) -> None:
        base = self.cfg.base_frame
        calib = self.assembler.calib
        lidar = self._static.get((base, self.cfg.lidar))
        if lidar is not None:
            calib.base_from_lidar = lidar
        for cam in self.cfg.cameras:
            t = self._static.get((base, cam))
            if t is not None:
                calib.base_from_camera[cam] = t

    def on_tf(self, msg) -> None:
        try:
            for (parent, child), t in tf_message_to_matrices(msg).items():
                if parent == self.cfg.map_frame and child == self.cfg.base_frame:
                    stamp = next(stamp_to_ns(tr.header.stamp) for tr in msg.transforms
                                 if tr.child_frame_id == child)
                    self.assembler.add_pose(stamp, t)
        except InputError as e:
            self.drops[e.reason] += 1

    def on_camera_info(self, camera: str, msg) -> None:
        try:
            k, width, height = camera_info_to_intrinsics(msg)
        except InputError as e:
            self.drops[f"{camera}:{e.reason}"] += 1
            self.assembler.calib.intrinsics.pop(camera, None)
            return
        self.assembler.calib.intrinsics[camera] = k
        self.image_size[camera] = (width, height)

    # -- sensor data ----------------------------------------------------------------------------------------

    def on_image(self, camera: str, msg, compressed: bool, now_s: float) -> None:
        try:
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
            if camera in self.image_size:
                check_image_matches_info(rgb.shape, *self.image_size[camera])
            self.assembler.add_image(camera, stamp_to_ns(msg.header.stamp), rgb, int(now_s * 1e9))
        except (InputError, Dropped) as e:
            self.drops[f"{camera}:{e.reason}"] += 1
            return
        self.health.seen(camera, now_s)

    def on_cloud(self, msg, now_s: float, queued_ms: float = 0.0) -> FrameOutput | None:
        """A LiDAR sweep -> detections (or None, with the reason counted). queued_ms: how long the sweep waited
        before processing started, so that the latency the policy sees is end to end."""
        start = time.perf_counter() - queued_ms / 1e3
        stamp = stamp_to_ns(msg.header.stamp)
        try:
            conv = cloud_to_points(msg, max_points=self.cfg.max_points)
            if self.assembler.calib.base_from_lidar is None:
                raise Dropped("missing_calibration", f"no base_link <- {self.cfg.lidar} transform yet")
            frame, notes = self.assembler.add_cloud(stamp, conv.points, int(now_s * 1e9))
        except (InputError, Dropped) as e:
            self.drops[e.reason] += 1
            return None
        self.health.seen(self.cfg.lidar, now_s)
        self.lidar_frame_id = msg.header.frame_id
        if not self._lidar_drives(now_s):
            self.drops["lidar_recovering"] += 1  # the sweep joined the history; camera frames run meanwhile
            return None
        if conv.dropped_nonfinite:
            notes.append("nonfinite_points")
        return self._run(frame, msg.header.frame_id, stamp, notes, now_s, start)

    def drop_busy_cloud(self, msg, now_s: float) -> None:
        """A sweep arrived while the previous frame was still running: its frame is counted as dropped (busy), but
        the sweep still shows the LiDAR is alive (otherwise a slow machine would look like a dead LiDAR) and joins
        the multi-sweep history of the next frame. A sweep that is also malformed is noted under that reason too."""
        self.drops["busy"] += 1
        try:
            conv = cloud_to_points(msg, max_points=self.cfg.max_points)
            self.assembler.add_sweep(stamp_to_ns(msg.header.stamp), conv.points, int(now_s * 1e9))
        except (InputError, Dropped) as e:
            self.notes[f"busy_sweep_{e.reason}"] += 1  # a note: the frame is already counted once, as busy
            return
        self.health.seen(self.cfg.lidar, now_s)

    def _lidar_drives(self, now_s: float) -> bool:
        """LiDAR sweeps make the frames while the LiDAR is usable. One that is back after a loss but still
        recovering (hysteresis) waits while camera frames run, so that the two kinds of frame do not alternate
        sweep by sweep; with no usable camera it drives at once (a recovering sensor beats none)."""
        if self.health.usable(self.cfg.lidar, now_s):
            return True
        return self.health.fresh(self.cfg.lidar, now_s) and not any(self.health.camera_mask(now_s))

    def on_tick(self, now_s: float) -> FrameOutput | None:
        """A timer at about the LiDAR rate. While the LiDAR drives frames it does nothing; when the LiDAR is lost,
        frames come from the newest images (a camera-only variant if the profile has one; otherwise the policy's
        'no variant' state, which the diagnostics report as ERROR)."""
        if self._lidar_drives(now_s):
            return None
        start = time.perf_counter()
        frame = self.assembler.camera_frame(int(now_s * 1e9))
        if frame is None:
            decision = self.policy.select(lidar=False, camera=False)
            if decision.switched:
                self.switches.append(SwitchEvent(int(now_s * 1e9), decision.variant, decision.reason))
            return None
        if frame.stamp_us * 1000 == self._last_camera_frame_ns:
            return None  # no new image since the last camera-only frame
        self._last_camera_frame_ns = frame.stamp_us * 1000
        return self._run(frame, self.lidar_frame_id, frame.stamp_us * 1000, [], now_s, start)

    def _run(self, frame, frame_id: str, stamp: int, notes: list, now_s: float, start: float) -> FrameOutput | None:
        usable = np.array(self.health.camera_mask(now_s))
        frame.camera_present &= usable[:len(frame.camera_present)]
        # With LiDAR, the cameras' availability is their health, not this frame's images: a sweep whose images
        # are all late runs the fused variant with the cameras masked rather than flipping variants for a frame.
        camera_ok = bool(usable.any()) if frame.lidar_present else bool(frame.camera_present.any())
        decision = self.policy.select(lidar=frame.lidar_present, camera=camera_ok)
        if decision.switched:
            self.switches.append(SwitchEvent(stamp, decision.variant, decision.reason))
        if decision.variant is None:
            self.drops["no_variant"] += 1
            return None
        result = self.pipeline.run(frame, decision.variant)
        self.frames += 1
        for n in notes:
            self.notes[n] += 1
        total_ms = (time.perf_counter() - start) * 1e3
        self.policy.record_latency(decision.variant, total_ms)
        self.latency.append(total_ms)
        self.variant_latency.setdefault(decision.variant, deque(maxlen=1000)).append(total_ms)
        self.stage_ms = {**result.timings_ms, "end_to_end": total_ms}
        return FrameOutput(stamp, frame_id, result.detections, decision.variant, decision, self.stage_ms, notes,
                           int(frame.camera_present.sum()))

    # -- diagnostics ----------------------------------------------------------------------------------------

    def diagnostics(self, now_s: float) -> list:
        """[(name, level, message, {key: value})], level 0 OK, 1 WARN, 2 ERROR (diagnostic_msgs levels).

        now_s should be the time of the latest processed message, not a later wall-clock reading: a sensor whose
        messages are still queued must not look stale."""
        lat = np.array(self.latency) if self.latency else np.zeros(1)
        health = self.health.status(now_s)
        lidar_ok = health[self.cfg.lidar] in ("ok", "flapping")
        cams_ok = sum(health[c] in ("ok",) for c in self.cfg.cameras)
        active = self.policy.active
        level = 0 if lidar_ok and cams_ok == len(self.cfg.cameras) else 1
        if active is None:
            level = 2
        last = self.switches[-1] if self.switches else None
        pipeline = {"active_variant": active or "none", "backend": self.backend.describe(),
                    "frames": self.frames, "latency_budget_ms": self.policy.cfg.latency_budget_ms,
                    "latency_p50_ms": round(float(np.percentile(lat, 50)), 2),
                    "latency_p95_ms": round(float(np.percentile(lat, 95)), 2),
                    "switches": len(self.switches), "last_switch_reason": last.reason if last else "",
                    "publish_failures": self.publish_failures,
                    **{f"stage_{k}_ms": round(v, 2) for k, v in self.stage_ms.items()},
                    **{f"latency_{v}_{q}": round(float(np.percentile(x, p)), 2) if q != "frames" else len(x)
                       for v, x in self.variant_latency.items()
                       for q, p in (("p50_ms", 50), ("p95_ms", 95), ("frames", 0))},
                    **{f"switch_{i}": f"{s.stamp_ns}: {s.variant} ({s.reason})"
                       for i, s in enumerate(list(self.switches)[-10:])},
                    **{f"dropped_{k}": v for k, v in sorted(self.drops.items())},
                    **{f"note_{k}": v for k, v in sorted(self.notes.items())}}
        message = f"running {active}" if active else "no variant can run: " + (last.reason if last else "no input")
        sensors = {name: state for name, state in health.items()}
        sensor_level = 0 if all(s == "ok" for s in sensors.values()) else (1 if lidar_ok or cams_ok else 2)
        return [("fusion_prune: pipeline", level, message, pipeline),
                ("fusion_prune: sensors", sensor_level, f"LiDAR {health[self.cfg.lidar]}, "
                                                         f"{cams_ok}/{len(self.cfg.cameras)} cameras ok", sensors)]
