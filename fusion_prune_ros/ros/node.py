"""The onboard node: a real rclpy LifecycleNode, thin wiring around `DetectorCore`.

configure: read the parameters, load the profile, load and warm up every variant, create publishers and
subscriptions. activate: start publishing (input is ignored while inactive: rclpy subscriptions keep firing).
Subscription callbacks only queue messages; one worker thread feeds them to the core in arrival order, so a frame
that runs long never blocks DDS, and a LiDAR sweep that arrives while the previous one is still queued is
dropped with the reason `busy` (counted in diagnostics), never silently. Parameters are declared with ranges; the
set-parameters callback rejects invalid values with a reason, and accepted ones apply from the next frame.

Run: `ros2 run fusion_prune_ros fusion_prune_node --ros-args --params-file config/fusion_prune.yaml`, or the
console script `fusion_prune_node` with the same arguments where only the PyPI wheels are installed.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
import traceback

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from builtin_interfaces.msg import Time
from std_msgs.msg import Header, String
from tf2_msgs.msg import TFMessage

from ..data.classes import CAMERAS
from ..errors import UserError
from ..runtime.core import CoreConfig, DetectorCore
from ..runtime.health import HealthConfig
from ..runtime.policy import PolicyConfig
from . import topics
from .convert import detections_to_markers, detections_to_msg, label_info_msg, ns_to_stamp, rclpy_types

NODE_NAME = "fusion_prune"
QUEUE_LIMIT = 200  # non-LiDAR messages waiting for the worker; beyond it the oldest are dropped (counted)


def _range(low: float, high: float) -> dict:
    return {"floating_point_range": [FloatingPointRange(from_value=low, to_value=high, step=0.0)]}


def _irange(low: int, high: int) -> dict:
    return {"integer_range": [IntegerRange(from_value=low, to_value=high, step=1)]}


# name: (default, description, extra descriptor fields, applies live)
PARAMETERS = {
    "profile": ("", "profile YAML listing the variants (config/profiles/*.yaml)", {}, False),
    "backend": ("auto", "auto | tensorrt | onnxruntime | torch (auto: TensorRT > ORT-CUDA > torch-CUDA > ORT-CPU)",
                {}, False),
    "device": ("auto", "auto | cpu | cuda", {}, False),
    "threads": (2, "CPU threads for the network", _irange(1, 64), False),
    "build_only": (False, "build / cache every variant's engine during configure, then exit", {}, False),
    "lidar_topic": (topics.LIDAR_TOPIC, "sensor_msgs/PointCloud2 input", {}, False),
    "camera_names": (list(CAMERAS), "camera names, in the order of camera_topics", {}, False),
    "camera_topics": ([topics.image_topic(c) for c in CAMERAS], "image topics, one per camera", {}, False),
    "camera_info_topics": ([topics.camera_info_topic(c) for c in CAMERAS], "sensor_msgs/CameraInfo topics", {},
                           False),
    "compressed": (True, "image topics carry sensor_msgs/CompressedImage (else sensor_msgs/Image)", {}, False),
    "base_frame": ("base_link", "vehicle frame of /tf and /tf_static", {}, False),
    "map_frame": ("map", "odometry frame of /tf (map -> base_link compensates ego motion between sweeps)", {},
                  False),
    "latency_budget_ms": (200.0, "end-to-end latency budget per frame", _range(1.0, 10000.0), True),
    "override_variant": ("", "run this variant whenever its sensors are available ('' = automatic)", {}, True),
    "score_threshold": (0.3, "lowest published detection score", _range(0.0, 1.0), True),
    "step_down_after": (3, "consecutive over-budget frames before a faster variant", _irange(1, 1000), True),
    "step_up_after": (30, "consecutive frames with headroom before a more accurate variant", _irange(1, 10000),
                      True),
    "headroom": (0.8, "a more accurate variant must be expected under headroom x budget", _range(0.1, 1.0), True),
    "camera_max_age_s": (0.1, "newest image older than this (vs the LiDAR stamp) is not used", _range(0.0, 5.0),
                         False),
    "lidar_max_age_s": (0.15, "LiDAR silent longer than this is stale", _range(0.01, 10.0), True),
    "camera_stale_s": (0.25, "camera silent longer than this is stale (3 periods at 12 Hz)", _range(0.01, 10.0), True),
    "recover_after_s": (1.0, "a lost sensor must be fresh this long before it is used again", _range(0.0, 60.0),
                        True),
    "camera_sync_wait_s": (0.03, "hold each sweep this long before running it, so that images taken before it but "
                           "delivered after it (DDS gives no order across topics) are fused; at most 50 ms, well "
                           "under a LiDAR period (a newer sweep replaces a waiting one)", _range(0.0, 0.05), True),
    "diagnostics_period_s": (1.0, "diagnostics publishing period", _range(0.05, 60.0), False),
}


class FusionPruneNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, description, extra, live) in PARAMETERS.items():
            read_only_note = "" if live else " (applies at configure)"
            self.declare_parameter(name, default, ParameterDescriptor(description=description + read_only_note,
                                                                      **extra))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.core: DetectorCore | None = None
        self._active = False
        self._queue: queue.Queue = queue.Queue()
        # The newest unprocessed sweep and those it replaced, with arrival times. Guarded by their own lock, so a
        # subscription callback never waits for a frame that the worker is running under `_lock`.
        self._pending_cloud = None
        self._pending_due = 0.0  # time.monotonic() when the pending sweep may run (camera_sync_wait_s)
        self._sync_wait_s = 0.0
        self._busy_clouds: list = []
        self._pending_lock = threading.Lock()
        self._lock = threading.Lock()  # the core: worker, parameter and diagnostics callbacks
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._tick_queued = threading.Event()
        self._last_processed = 0.0
        self._subs, self._timers = [], []
        self._pubs: dict = {}
        self.types = rclpy_types()

    # -- parameters -----------------------------------------------------------------------------------------

    def _p(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate, then apply live ones from the next frame; configure-time ones only while unconfigured."""
        for p in params:
            if p.name not in PARAMETERS:
                continue
            live = PARAMETERS[p.name][3]
            if not live and self.core is not None:
                return SetParametersResult(successful=False, reason=f"{p.name} applies at configure: deactivate "
                                                                    f"and clean up the node first")
            if p.name == "override_variant" and p.value and self.core is not None \
                    and p.value not in self.core.profile.names():
                return SetParametersResult(successful=False, reason=f"override_variant {p.value!r} is not in the "
                                                                    f"profile ({', '.join(self.core.profile.names())})")
        if self.core is not None:
            with self._lock:
                for p in params:
                    self._apply_live(p.name, p.value)
        return SetParametersResult(successful=True)

    def _apply_live(self, name: str, value) -> None:
        pol, health = self.core.policy.cfg, self.core.health.cfg
        setters = {
            "latency_budget_ms": lambda v: setattr(pol, "latency_budget_ms", float(v)),
            "override_variant": lambda v: setattr(pol, "override", v),
            "step_down_after": lambda v: setattr(pol, "step_down_after", int(v)),
            "step_up_after": lambda v: setattr(pol, "step_up_after", int(v)),
            "headroom": lambda v: setattr(pol, "headroom", float(v)),
            "score_threshold": lambda v: setattr(self.core.pipeline.decode_cfg, "score_threshold", float(v)),
            "lidar_max_age_s": lambda v: self.core.health.set_max_age(self.core.cfg.lidar, float(v)),
            "camera_stale_s": lambda v: [self.core.health.set_max_age(c, float(v)) for c in self.core.cfg.cameras],
            "recover_after_s": lambda v: setattr(health, "recover_after_s", float(v)),
            "camera_sync_wait_s": lambda v: setattr(self, "_sync_wait_s", float(v)),
        }
        if name in setters:
            setters[name](value)

    def _core_config(self) -> CoreConfig:
        names = tuple(self._p("camera_names"))
        if len(self._p("camera_topics")) != len(names) or len(self._p("camera_info_topics")) != len(names):
            raise UserError("camera_topics and camera_info_topics need one entry per camera_names entry")
        if not self._p("profile"):
            raise UserError("parameter 'profile' is empty: set it to a profile YAML (config/profiles/)")
        return CoreConfig(
            profile=self._p("profile"), backend=self._p("backend"), device=self._p("device"),
            threads=self._p("threads"), score_threshold=self._p("score_threshold"), cameras=names,
            camera_max_age_s=self._p("camera_max_age_s"), base_frame=self._p("base_frame"),
            map_frame=self._p("map_frame"),
            policy=PolicyConfig(latency_budget_ms=self._p("latency_budget_ms"), step_down_after=self._p(
                "step_down_after"), step_up_after=self._p("step_up_after"), headroom=self._p("headroom"),
                override=self._p("override_variant")),
            health=HealthConfig(lidar_max_age_s=self._p("lidar_max_age_s"), camera_max_age_s=self._p("camera_stale_s"),
                                recover_after_s=self._p("recover_after_s")))

    # -- lifecycle ------------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = self._core_config()
            start = time.time()
            self.core = DetectorCore(cfg)
        except UserError as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        report = self.core.pool.report
        self.get_logger().info(
            f"configured in {time.time() - start:.1f} s: backend {self.core.backend.describe()}, variants "
            f"{', '.join(report.variants)} loaded and warmed up; resident memory {report.rss_before_mb:.0f} -> "
            f"{report.rss_after_mb:.0f} MB")
        if self._p("build_only"):
            self.get_logger().info("build_only: every variant is built and cached; exiting")
            # Shut down after the transition's response has gone out, not during it.
            self._timers.append(self.create_timer(0.5, lambda: rclpy.try_shutdown(context=self.context)))
            return TransitionCallbackReturn.SUCCESS
        self._sync_wait_s = float(self._p("camera_sync_wait_s"))
        self._create_io(cfg)
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="fusion_prune_worker", daemon=True)
        self._worker.start()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers: publish only after it
        self._active = True
        header = self._header(self.get_clock().now().nanoseconds, self.core.lidar_frame_id)
        self._pubs["labels"].publish(label_info_msg(header, self.types))
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        self._active = False
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        for timer in self._timers:
            self.destroy_timer(timer)
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._subs, self._timers, self._pubs = [], [], {}
        self.core = None

    # -- I/O ------------------------------------------------------------------------------------------------

    def _create_io(self, cfg: CoreConfig) -> None:
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        t = self.types
        self._pubs = {
            "det": self.create_lifecycle_publisher(t.detection3d_array, topics.DETECTIONS_TOPIC, reliable),
            "markers": self.create_lifecycle_publisher(t.marker_array, topics.DETECTION_MARKERS_TOPIC, reliable),
            "labels": self.create_lifecycle_publisher(t.label_info, topics.LABEL_INFO_TOPIC, latched),
            "variant": self.create_lifecycle_publisher(String, topics.ACTIVE_VARIANT_TOPIC, latched),
            "diag": self.create_lifecycle_publisher(DiagnosticArray, topics.DIAGNOSTICS_TOPIC, reliable),
        }
        sensor = qos_profile_sensor_data
        self._subs.append(self.create_subscription(PointCloud2, self._p("lidar_topic"),
                                                   lambda m: self._enqueue_cloud(m), sensor))
        image_type = CompressedImage if self._p("compressed") else Image
        for cam, topic, info in zip(cfg.cameras, self._p("camera_topics"), self._p("camera_info_topics")):
            self._subs.append(self.create_subscription(
                image_type, topic, lambda m, c=cam: self._enqueue(("image", c, m)), sensor))
            self._subs.append(self.create_subscription(
                CameraInfo, info, lambda m, c=cam: self._enqueue(("info", c, m)), sensor))
        self._subs.append(self.create_subscription(TFMessage, topics.TF_TOPIC, lambda m: self._enqueue(("tf", m)),
                                                   QoSProfile(depth=100)))
        self._subs.append(self.create_subscription(TFMessage, topics.TF_STATIC_TOPIC,
                                                   lambda m: self._enqueue(("tf_static", m)), latched))
        self._timers.append(self.create_timer(0.05, self._enqueue_tick))
        self._timers.append(self.create_timer(self._p("diagnostics_period_s"), self._publish_diagnostics))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _enqueue(self, item) -> None:
        if not self._active or self.core is None:
            return  # rclpy subscriptions keep firing while inactive: input is ignored
        if self._queue.qsize() >= QUEUE_LIMIT:
            try:
                dropped = self._queue.get_nowait()
                with self._lock:
                    self.core.drops[f"queue_full_{dropped[0]}"] += 1
            except queue.Empty:
                pass
        self._queue.put((*item, self._now()))

    def _enqueue_tick(self) -> None:
        """At most one tick waits in the queue: ticks only check whether the LiDAR is gone, and a backlog of them
        would only delay real messages."""
        if not self._tick_queued.is_set():
            self._tick_queued.set()
            self._enqueue(("tick",))

    def _enqueue_cloud(self, msg) -> None:
        """Keep only the newest unprocessed sweep: one still waiting when the next arrives is dropped as busy."""
        if not self._active or self.core is None:
            return
        with self._pending_lock:
            if self._pending_cloud is not None:
                self._busy_clouds.append(self._pending_cloud)
            self._pending_cloud = (msg, self._now())
            self._pending_due = time.monotonic() + self._sync_wait_s
        self._queue.put(("cloud_ready", self._now()))

    def _take_pending_cloud(self):
        """(msg, arrival) of the newest sweep once its sync wait is over, else None; counts the sweeps it replaced
        as dropped (busy)."""
        with self._pending_lock:
            if self._pending_cloud is None or time.monotonic() < self._pending_due:
                return None
            pending, busy = self._pending_cloud, self._busy_clouds
            self._pending_cloud, self._busy_clouds = None, []
        for msg, arrived in busy:
            self.core.drop_busy_cloud(msg, arrived)
        return pending

    def _work(self) -> None:
        """Messages in arrival order; a due sweep runs only after everything queued before it (the images and
        poses it needs), so a backlog built up during a long frame never leaves the next frame without them."""
        while not self._stop.is_set():
            with self._pending_lock:
                wait = max(0.0, self._pending_due - time.monotonic()) if self._pending_cloud is not None else 0.1
            if wait > 0:
                try:
                    self._process(self._queue.get(timeout=wait))
                except queue.Empty:
                    pass
                continue
            for _ in range(self._queue.qsize()):
                try:
                    self._process(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._process(("cloud_ready", self._now()))

    def _process(self, item) -> None:
        core = self.core
        if core is None:
            return
        kind, now = item[0], item[-1]
        self._last_processed = max(self._last_processed, now)
        try:
            with self._lock:
                if kind == "image":
                    core.on_image(item[1], item[2], self._p("compressed"), now)
                elif kind == "info":
                    core.on_camera_info(item[1], item[2])
                elif kind == "tf":
                    core.on_tf(item[1])
                elif kind == "tf_static":
                    core.on_static_tf(item[1])
                elif kind == "tick":
                    self._tick_queued.clear()
                    with self._pending_lock:
                        pending = self._pending_cloud
                    if pending is not None:  # a sweep waiting for its turn shows the LiDAR is alive
                        core.health.seen(core.cfg.lidar, pending[1])
                    self._emit(core.on_tick(now))
                elif kind == "cloud_ready":
                    pending = self._take_pending_cloud()
                    if pending is not None:
                        msg, arrived = pending
                        self._emit(core.on_cloud(msg, arrived, queued_ms=(self._now() - arrived) * 1e3))
        except Exception as e:  # a bug must not kill the node: log it, count it, go on with the next message
            core.drops[f"internal_error_{type(e).__name__}"] += 1
            self.get_logger().error(f"processing {kind} failed: {type(e).__name__}: {e}\n"
                                    f"{traceback.format_exc(limit=4)}", throttle_duration_sec=5.0)

    @staticmethod
    def _header(stamp_ns: int, frame_id: str) -> Header:
        return Header(stamp=ns_to_stamp(stamp_ns, Time), frame_id=frame_id)

    def _publish(self, name: str, msg) -> None:
        try:
            self._pubs[name].publish(msg)
        except Exception as e:  # rclpy raises RCLError when a reliable reader cannot keep up
            self.core.publish_failures += 1
            self.get_logger().warning(f"publish on {name} failed: {e}", throttle_duration_sec=5.0)

    def _emit(self, out) -> None:
        if out is None:
            return
        header = self._header(out.stamp_ns, out.frame_id)
        self._publish("det", detections_to_msg(out.detections, header, self.types))
        if self._pubs["markers"].get_subscription_count() > 0:  # building markers costs more than the network
            self._publish("markers", detections_to_markers(out.detections, header, self.types, int(0.15e9),
                                                           NODE_NAME))
        if out.decision.switched:
            self.get_logger().info(f"switched to {out.variant}: {out.decision.reason}")
        self._publish("variant", String(data=out.variant))

    def _publish_diagnostics(self) -> None:
        if not self._active or self.core is None:
            return
        with self._lock:
            items = self.core.diagnostics(self._last_processed)
        msg = DiagnosticArray(header=self._header(self.get_clock().now().nanoseconds, ""))
        for name, level, message, values in items:
            msg.status.append(DiagnosticStatus(level=bytes([level]), name=name, message=message,
                                               hardware_id=NODE_NAME,
                                               values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()]))
        self._publish("diag", msg)


def main(args=None) -> int:
    rclpy.init(args=args if args is not None else sys.argv)
    node = FusionPruneNode()
    # Callbacks only queue messages for the worker thread, so one executor thread suffices; rclpy's
    # MultiThreadedExecutor spent most of the GIL on its own bookkeeping and starved the worker on 2 cores.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok():
            try:
                executor.spin_once(timeout_sec=0.5)
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception as e:  # e.g. rclpy's RCLError for a transition invalid in the current state
                node.get_logger().error(f"callback failed, node keeps running: {type(e).__name__}: {e}")
    finally:
        node._teardown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
