"""`DetectorCore`: everything the onboard node does with decoded sensor data, without ROS.

The feeder (`feeder.py`) hands it decoded messages (numpy arrays, transforms as 4x4 matrices) in the order the
node processes them; the rclpy node, the in-process bag replay and the soak all drive it through that feeder and
publish what it returns, so a replay predicts what the node does. It owns calibration (from /tf_static or a file,
intrinsics from CameraInfo), odometry (/tf), sensor health, the LiDAR-driven frame assembly, the policy that picks
the variant, the pipeline that runs it, and the counters behind the diagnostics. No input ever raises out of it: a
bad message is counted under a reason and the next good one is processed normally. Nothing garbage gets
published: a frame that cannot be built produces no detections, and the reason is counted.
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
            n_sweeps=self.detector_cfg.grid.n_sweeps, camera_max_age_s=cfg.camera_max_age_s,
            camera=self.detector_cfg.camera))
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

    # -- live settings ----------------------------------------------------------------------------------------

    def set_latency_budget(self, ms: float) -> None:
        self.policy.cfg.latency_budget_ms = float(ms)

    def set_override(self, variant: str) -> None:
        """Run `variant` whenever its sensors are available ('' = automatic selection)."""
        self.policy.cfg.override = variant

    def set_score_threshold(self, score: float) -> None:
        self.pipeline.decode_cfg.score_threshold = float(score)

    def set_hysteresis(self, step_down_after: int, step_up_after: int, headroom: float) -> None:
        self.policy.cfg.step_down_after, self.policy.cfg.step_up_after = int(step_down_after), int(step_up_after)
        self.policy.cfg.headroom = float(headroom)

    def set_sensor_timing(self, lidar_max_age_s: float, camera_max_age_s: float, recover_after_s: float) -> None:
        self.health.set_max_age(self.cfg.lidar, lidar_max_age_s)
        for cam in self.cfg.cameras:
            self.health.set_max_age(cam, camera_max_age_s)
        self.health.set_recover_after(recover_after_s)

    # -- calibration and odometry ---------------------------------------------------------------------------

    def on_static_tf(self, transforms: dict) -> None:
        """{(parent, child): 4x4 parent <- child} from /tf_static."""
        self._static.update(transforms)
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

    def on_tf(self, transforms: list) -> None:
        """[(parent, child, stamp_ns, 4x4 parent <- child)] from /tf: the map <- base_link poses are kept."""
        for parent, child, stamp, t in transforms:
            if parent == self.cfg.map_frame and child == self.cfg.base_frame:
                self.assembler.add_pose(stamp, t)

    def on_camera_info(self, camera: str, k: np.ndarray, width: int, height: int) -> None:
        self.assembler.calib.intrinsics[camera] = k
        self.image_size[camera] = (width, height)

    def reject(self, kind: str, sensor: str, reason: str) -> None:
        """A message that cannot be used: counted under its reason (per camera for camera messages). A camera's
        invalid CameraInfo also withdraws the intrinsics it had: they may no longer describe its images."""
        if sensor in self.cfg.cameras:
            self.drops[f"{sensor}:{reason}"] += 1
            if kind == "camera_info":
                self.assembler.calib.intrinsics.pop(sensor, None)
        else:
            self.drops[reason] += 1

    # -- sensor data ----------------------------------------------------------------------------------------

    def on_image(self, camera: str, stamp_ns: int, rgb: np.ndarray) -> None:
        try:
            size = self.image_size.get(camera)
            if size is not None and tuple(rgb.shape[:2]) != (size[1], size[0]):
                raise Dropped("image_size_mismatch", f"image is {rgb.shape[1]} x {rgb.shape[0]}, CameraInfo says "
                                                     f"{size[0]} x {size[1]}")
            self.assembler.add_image(camera, stamp_ns, rgb)
        except Dropped as e:
            self.drops[f"{camera}:{e.reason}"] += 1

    def on_cloud(self, stamp_ns: int, frame_id: str, points: np.ndarray, dropped_nonfinite: int, at: float,
                 queued_s: float = 0.0) -> FrameOutput | None:
        """A LiDAR sweep (N x 4 x, y, z, intensity; `at` its arrival time) -> detections, or None with the reason
        counted. queued_s: how long the sweep waited before processing started, so that the latency the policy
        sees is end to end."""
        start = time.perf_counter() - queued_s
        try:
            if self.assembler.calib.base_from_lidar is None:
                raise Dropped("missing_calibration", f"no base_link <- {self.cfg.lidar} transform yet")
            frame, notes = self.assembler.add_cloud(stamp_ns, points)
        except Dropped as e:
            self.drops[e.reason] += 1
            return None
        self.lidar_frame_id = frame_id
        if not self._lidar_drives(at):
            self.drops["lidar_recovering"] += 1  # the sweep joined the history; camera frames run meanwhile
            return None
        if dropped_nonfinite:
            notes.append("nonfinite_points")
        return self._run(frame, frame_id, stamp_ns, notes, at, start)

    def drop_busy_cloud(self, stamp_ns: int, points: np.ndarray | None, note: str = "") -> None:
        """A sweep arrived while the previous one was still waiting: its frame is counted as dropped (busy), but
        the sweep joins the multi-sweep history of the next frame. One that is also malformed (`points` None) is
        noted under that reason too."""
        self.drops["busy"] += 1
        try:
            if points is None:
                raise Dropped(note, "busy sweep could not be decoded")
            self.assembler.add_sweep(stamp_ns, points)
        except Dropped as e:
            self.notes[f"busy_sweep_{e.reason}"] += 1  # a note: the frame is already counted once, as busy

    def _lidar_drives(self, at: float) -> bool:
        """LiDAR sweeps make the frames while the LiDAR is usable. One that is back after a loss but still
        recovering (hysteresis) waits while camera frames run, so that the two kinds of frame do not alternate
        sweep by sweep; with no usable camera it drives at once (a recovering sensor beats none)."""
        if self.health.usable(self.cfg.lidar, at):
            return True
        return self.health.fresh(self.cfg.lidar, at) and not any(self.health.camera_mask(at))

    def on_tick(self, at: float) -> FrameOutput | None:
        """A timer at about the LiDAR rate. While the LiDAR drives frames it does nothing; when the LiDAR is lost,
        frames come from the newest images (a camera-only variant if the profile has one; otherwise the policy's
        'no variant' state, which the diagnostics report as ERROR). At start-up it waits for the LiDAR's first
        sweep for as long as the LiDAR may be late."""
        if self._lidar_drives(at) or self.health.awaited(self.cfg.lidar, at):
            return None
        start = time.perf_counter()
        now = self.health.data_time(at)
        frame = None if now is None else self.assembler.camera_frame(int(now * 1e9))
        if frame is None:
            decision = self.policy.select(lidar=False, camera=False)
            if decision.switched:
                self.switches.append(SwitchEvent(int((now or 0.0) * 1e9), decision.variant, decision.reason))
            return None
        if frame.stamp_us * 1000 == self._last_camera_frame_ns:
            return None  # no new image since the last camera-only frame
        self._last_camera_frame_ns = frame.stamp_us * 1000
        return self._run(frame, self.lidar_frame_id, frame.stamp_us * 1000, [], at, start)

    def _run(self, frame, frame_id: str, stamp: int, notes: list, at: float, start: float) -> FrameOutput | None:
        usable = np.array(self.health.camera_mask(at))
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

    def diagnostics(self, at: float) -> list:
        """[(name, level, message, {key: value})], level 0 OK, 1 WARN, 2 ERROR (diagnostic_msgs levels).

        at: the arrival clock's time (the feeder's clock) at which the sensors are judged."""
        lat = np.array(self.latency) if self.latency else np.zeros(1)
        health = self.health.status(at)
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
                    "data_rate": round(self.health.rate, 3), "switches": len(self.switches), "last_switch_reason": last.reason if last else "",
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
