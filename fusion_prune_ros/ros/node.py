"""The onboard node: a real rclpy LifecycleNode, thin wiring around `DetectorCore`.

configure: read the parameters, load the profile, load and warm up every variant, create publishers and
subscriptions. activate: start publishing (input is ignored while inactive: rclpy subscriptions keep firing).
Subscription callbacks only hand messages to the feeder (`runtime/feeder.py`, through `inputs.InputRouter`), which
the bag replay and the soak drive the same way; one worker thread runs what the feeder has ready, so a frame that
runs long never blocks DDS, and a LiDAR sweep replaced while still waiting is dropped with the reason `busy`
(counted in diagnostics), never silently. The feeder's clock and the node's timers are steady time, never the ROS
clock: sensor health is judged from header stamps and arrival times (`runtime/health.py`), so the node behaves the
same live, on a bag played with its original stamps, and on `/clock` at any rate. Parameters are declared with
ranges; the set-parameters callback rejects invalid values with a reason, and accepted ones apply from the next
frame. SIGINT or SIGTERM stops it quietly: the worker finishes its frame, then everything is torn down.

Run: `ros2 run fusion_prune_ros fusion_prune_node --ros-args --params-file config/fusion_prune.yaml`, or the
console script `fusion_prune_node` with the same arguments where only the PyPI wheels are installed.
"""
from __future__ import annotations

import signal
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from builtin_interfaces.msg import Time
from std_msgs.msg import Header, String
from tf2_msgs.msg import TFMessage

from ..data.classes import CAMERAS
from ..errors import UserError
from ..runtime.core import CoreConfig, DetectorCore
from ..runtime.feeder import Feeder, FeederConfig
from ..runtime.health import HealthConfig
from ..runtime.policy import PolicyConfig
from . import topics
from .detection_msgs import detections_to_markers, detections_to_msg, label_info_msg
from .msg_types import rclpy_types
from .stamps import ns_to_stamp
from .inputs import InputRouter, InputTopics

NODE_NAME = "fusion_prune"
TICK_PERIOD_S = 0.05  # the feeder's tick: about the LiDAR rate


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
    "lidar_max_age_s": (0.15, "LiDAR stale once the other sensors' stamps are this far past its newest one and "
                        "nothing of it has arrived for as long (at the playback rate); 3 periods at 20 Hz",
                        _range(0.01, 10.0), True),
    "camera_stale_s": (0.25, "camera stale once the other sensors' stamps are this far past its newest one and "
                       "nothing of it has arrived for as long (at the playback rate); 3 periods at 12 Hz",
                       _range(0.01, 10.0), True),
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
        self.feeder: Feeder | None = None
        self.router: InputRouter | None = None
        self._active = False
        self._lock = threading.Lock()  # the core: worker, parameter and diagnostics callbacks
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
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
            values = {p.name: p.value for p in params}
            with self._lock:
                self._apply_live(lambda name: values.get(name, self._p(name)), set(values))
        return SetParametersResult(successful=True)

    def _apply_live(self, value, changed: set) -> None:
        """Hand the live parameters in `changed` to the core and the feeder; value(name) reads the new value."""
        core = self.core
        if "latency_budget_ms" in changed:
            core.set_latency_budget(value("latency_budget_ms"))
        if "override_variant" in changed:
            core.set_override(value("override_variant"))
        if "score_threshold" in changed:
            core.set_score_threshold(value("score_threshold"))
        if changed & {"step_down_after", "step_up_after", "headroom"}:
            core.set_hysteresis(value("step_down_after"), value("step_up_after"), value("headroom"))
        if changed & {"lidar_max_age_s", "camera_stale_s", "recover_after_s"}:
            core.set_sensor_timing(value("lidar_max_age_s"), value("camera_stale_s"), value("recover_after_s"))
        if "camera_sync_wait_s" in changed:
            self.feeder.set_sync_wait(value("camera_sync_wait_s"))

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
        self.feeder = Feeder(self.core, FeederConfig(sync_wait_s=self._p("camera_sync_wait_s")), time.monotonic)
        self.router = InputRouter(self.feeder, InputTopics.for_cameras(
            cfg.cameras, self._p("lidar_topic"), tuple(self._p("camera_topics")),
            tuple(self._p("camera_info_topics"))), cfg.lidar, cfg.max_points)
        self._create_io()
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
        self.core = self.feeder = self.router = None

    # -- I/O ------------------------------------------------------------------------------------------------

    def _create_io(self) -> None:
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
        image_type = CompressedImage if self._p("compressed") else Image
        inputs = self.router.topics
        for topic, msg_type, qos in [(inputs.lidar, PointCloud2, sensor),
                                     *[(t, image_type, sensor) for t in inputs.images],
                                     *[(t, CameraInfo, sensor) for t in inputs.camera_infos],
                                     (inputs.tf, TFMessage, QoSProfile(depth=100)),
                                     (inputs.tf_static, TFMessage, latched)]:
            self._subs.append(self.create_subscription(msg_type, topic, lambda m, t=topic: self._arrive(t, m), qos))
        # Steady-time timers: on the ROS clock they would follow /clock, and never fire without it.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timers.append(self.create_timer(TICK_PERIOD_S, self._tick, clock=steady))
        self._timers.append(self.create_timer(self._p("diagnostics_period_s"), self._publish_diagnostics,
                                              clock=steady))

    def _arrive(self, topic: str, msg) -> None:
        if self._active and self.router is not None:  # rclpy subscriptions keep firing while inactive
            self.router.route(topic, msg)

    def _tick(self) -> None:
        if self._active and self.feeder is not None:
            self.feeder.tick()

    def _work(self) -> None:
        """Run whatever the feeder has ready, until the node stops."""
        feeder = self.feeder
        while not self._stop.is_set():
            feeder.wait(timeout=0.1)
            if self._stop.is_set():
                break
            try:
                with self._lock:
                    outputs = feeder.work()
            except Exception as e:  # a bug must not kill the node: log it, count it, go on
                with self._lock:
                    self.core.drops[f"internal_error_{type(e).__name__}"] += 1
                self.get_logger().error(f"frame failed: {type(e).__name__}: {e}", throttle_duration_sec=5.0)
                continue
            for out in outputs:
                self._emit(out)

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
            items = self.core.diagnostics(time.monotonic())
        msg = DiagnosticArray(header=self._header(self.get_clock().now().nanoseconds, ""))
        for name, level, message, values in items:
            msg.status.append(DiagnosticStatus(level=bytes([level]), name=name, message=message,
                                               hardware_id=NODE_NAME,
                                               values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()]))
        self._publish("diag", msg)


_STOP = threading.Event()  # set by SIGINT / SIGTERM; the spin loop checks it between spins


def _stop_on_signal(signum, frame) -> None:
    """SIGINT and SIGTERM (what ros2 launch sends) end the spin loop within one spin timeout; the node then stops
    its worker after the frame it is running and tears down, instead of rclpy invalidating the context under a
    publishing worker. A flag, not an exception: raised here, KeyboardInterrupt would surface inside whatever call
    from rclpy's C++ into Python is under way when the signal lands, where pybind11 turns it into a RuntimeError
    about argument conversion, and the loop would log a failed callback and spin on."""
    _STOP.set()


def main(args=None) -> int:
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_on_signal)
    node = FusionPruneNode()
    # Callbacks only hand messages to the feeder, so one executor thread suffices; rclpy's
    # MultiThreadedExecutor spent most of the GIL on its own bookkeeping and starved the worker on 2 cores.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not _STOP.is_set():
            try:
                executor.spin_once(timeout_sec=0.2)
            except ExternalShutdownException:
                break
            except Exception as e:  # e.g. rclpy's RCLError for a transition invalid in the current state
                node.get_logger().error(f"callback failed, node keeps running: {type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal must not interrupt the teardown
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        node._teardown()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
