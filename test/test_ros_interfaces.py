"""The interface packages built from the repo's .msg files (vision_msgs, tf2_msgs) against rclpy and rosbags.

They must be the upstream types exactly: field for field and type hash for type hash, or the node would not talk
to real vision_msgs / tf2 users (RViz, Foxglove, trackers), and bags written with rosbags would not match what the
node publishes. The last test sends them between two processes over DDS, kept on loopback.
"""
from __future__ import annotations

import itertools
import os
import select
import signal
import subprocess
import sys
import time
import uuid

import pytest

try:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
except ImportError as error:  # also a missing middleware library, which is no ModuleNotFoundError
    pytest.skip(f"rclpy is not importable ({error}); pip install -e .[ros] to run the ROS tests",
                allow_module_level=True)

from fusion_prune_ros.bag.typestore import typestore
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.ros.interfaces import build
from fusion_prune_ros.ros.interfaces.build import INTERFACES_DIR, PACKAGES, setup_interfaces

MESSAGE_TYPES = sorted(f"{package}/msg/{path.stem}" for package in PACKAGES
                       for path in (INTERFACES_DIR / package / "msg").glob("*.msg"))
# rclpy's names for the primitive types whose IDL name differs from the .msg name.
RCLPY_PRIMITIVES = {"float32": "float", "float64": "double", "bool": "boolean", "byte": "octet", "char": "uint8"}
# Successive tests get successive domains, from a base that differs between processes (parallel test runs).
DOMAINS = itertools.count(os.getpid())

PUBLISHER = """
import sys, time
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Detection3D, Detection3DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass

prefix = sys.argv[1]
rclpy.init()
node = rclpy.create_node("fp_test_publisher")
latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
labels = node.create_publisher(LabelInfo, prefix + "/label_info", latched)
detections = node.create_publisher(Detection3DArray, prefix + "/detections", 10)
classes = [VisionClass(class_id=0, class_name="car"), VisionClass(class_id=7, class_name="pedestrian")]
info = LabelInfo(class_map=classes, threshold=0.25)
info.header.frame_id = "base_link"
labels.publish(info)
print("ready", flush=True)
array = Detection3DArray()
array.header.frame_id = "lidar_top"
array.header.stamp.sec, array.header.stamp.nanosec = 12, 345
for index, (label, score) in enumerate([("car", 0.9), ("pedestrian", 0.4)]):
    detection = Detection3D(id=f"track-{index}")
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = label, score
    detection.results.append(hypothesis)
    detection.bbox.center.position.x = 10.0 + index
    detection.bbox.center.orientation.z, detection.bbox.center.orientation.w = 0.6, 0.8
    detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z = 4.5, 1.9, 1.6
    array.detections.append(detection)
deadline = time.monotonic() + 30  # never outlives the test by much, even if nobody stops it
try:
    while rclpy.ok() and time.monotonic() < deadline:
        detections.publish(array)
        time.sleep(0.1)
except KeyboardInterrupt:  # the test stops it with SIGINT
    pass
"""


@pytest.fixture(scope="module")
def interfaces() -> dict:
    """Build once per test run (a few minutes the first time, then a stamp check)."""
    return setup_interfaces(quiet=True)


@pytest.fixture
def ros_env(monkeypatch, tmp_path) -> int:
    """A domain of its own (per process, per test), discovery on loopback only, logs in the test's folder."""
    domain = next(DOMAINS) % 101 + 1  # 1-101: the domains whose default ports are valid
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    return domain


@pytest.fixture
def context(ros_env, interfaces):
    """An rclpy context of the test's own, so no other test's init or shutdown interferes."""
    ctx = Context()
    rclpy.init(context=ctx, domain_id=ros_env, signal_handler_options=SignalHandlerOptions.NO)  # pytest keeps Ctrl-C
    yield ctx
    ctx.try_shutdown()


def _rclpy_class(typename: str) -> type:
    package, _, name = typename.split("/")
    return getattr(__import__(f"{package}.msg", fromlist=[name]), name)


def _rclpy_type(desc: tuple) -> str:
    """rosbags' field description in the spelling of rclpy's get_fields_and_field_types()."""
    kind, detail = desc
    if kind.name == "BASE":
        name, bound = detail
        return f"{name}<{bound}>" if bound else RCLPY_PRIMITIVES.get(name, name)
    if kind.name == "NAME":
        return detail.replace("/msg/", "/")
    inner, size = detail
    if kind.name == "ARRAY":
        return f"{_rclpy_type(inner)}[{size}]"
    return f"sequence<{_rclpy_type(inner)}, {size}>" if size else f"sequence<{_rclpy_type(inner)}>"


def test_setup_is_idempotent(interfaces):
    assert set(interfaces["built"]) | set(interfaces["skipped"]) == set(PACKAGES)
    start = time.monotonic()
    again = setup_interfaces(quiet=True)
    assert again["built"] == [] and set(again["skipped"]) == set(PACKAGES)
    assert time.monotonic() - start < 5


def test_sourced_ros_wins(tmp_path, monkeypatch):
    for package in PACKAGES:
        marker = tmp_path / "share" / "ament_index" / "resource_index" / "packages" / package
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join([str(tmp_path), sys.prefix]))
    summary = setup_interfaces(force=True, quiet=True)
    assert summary["built"] == []
    assert summary["skipped"] == {package: f"provided by {tmp_path}" for package in PACKAGES}


def test_missing_tools_and_wheels_are_one_line_errors(monkeypatch):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    real_which = build.shutil.which
    monkeypatch.setattr(build.shutil, "which", lambda name: None if name == "cmake" else real_which(name))
    with pytest.raises(UserError, match="needs cmake"):
        setup_interfaces(force=True, quiet=True)
    monkeypatch.setattr(build.shutil, "which", real_which)
    monkeypatch.setattr(build, "BUILD_DEPENDENCIES", ("no_such_ros_package",))
    with pytest.raises(UserError, match=r"pip install -e \.\[ros\]"):
        setup_interfaces(force=True, quiet=True)


@pytest.mark.parametrize("typename", MESSAGE_TYPES)
def test_fields_match_rosbags(interfaces, typename):
    constants, fields = typestore().fielddefs[typename]
    cls = _rclpy_class(typename)
    assert cls.get_fields_and_field_types() == {name: _rclpy_type(desc) for name, desc in fields}
    assert {name: getattr(cls, name) for name, _, _ in constants} == {name: value for name, _, value in constants}


def test_type_hashes_match_rosbags(context):
    """The hash rclpy announces on the wire (RIHS01) equals the one rosbags computes from the same definitions.

    rosbags' tf2_msgs comes from its own copy of Jazzy, so for those types this also checks the repo's copy.
    """
    node = rclpy.create_node("fp_test_hashes", context=context)
    try:
        for index, typename in enumerate(MESSAGE_TYPES):
            topic = f"/fp_test_hash_{index}"
            node.create_publisher(_rclpy_class(typename), topic, 1)
            (info,) = node.get_publishers_info_by_topic(topic)
            assert str(info.topic_type_hash) == typestore().hash_rihs01(typename), typename
    finally:
        node.destroy_node()


def _wait_for_line(proc: subprocess.Popen, expected: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], deadline - time.monotonic())[0]:
            line = proc.stdout.readline()
            if line.strip() == expected:
                return
            if not line:
                break
    raise AssertionError(f"publisher never said {expected!r}: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_detections_and_latched_labels_cross_processes(context, tmp_path):
    """A late subscriber still gets the transient-local LabelInfo, and both messages arrive intact."""
    from vision_msgs.msg import Detection3DArray, LabelInfo

    prefix = f"/fp_test_{uuid.uuid4().hex[:8]}"  # no crosstalk even with a parallel run on the same domain
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, prefix], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    node = rclpy.create_node("fp_test_subscriber", context=context)
    received: dict[str, object] = {}
    try:
        _wait_for_line(proc, "ready", 20)  # LabelInfo is out before the subscriber exists
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(LabelInfo, f"{prefix}/label_info", lambda m: received.setdefault("labels", m),
                                 latched)
        node.create_subscription(Detection3DArray, f"{prefix}/detections",
                                 lambda m: received.setdefault("detections", m), 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 20
        while len(received) < 2 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        assert set(received) == {"labels", "detections"}, f"received only {sorted(received)}"
    finally:
        node.destroy_node()
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    labels, detections = received["labels"], received["detections"]
    assert labels.header.frame_id == "base_link" and labels.threshold == pytest.approx(0.25)
    assert [(c.class_id, c.class_name) for c in labels.class_map] == [(0, "car"), (7, "pedestrian")]
    assert detections.header.frame_id == "lidar_top"
    assert (detections.header.stamp.sec, detections.header.stamp.nanosec) == (12, 345)
    assert [d.id for d in detections.detections] == ["track-0", "track-1"]
    assert [(d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) for d in detections.detections] == \
        [("car", pytest.approx(0.9)), ("pedestrian", pytest.approx(0.4))]
    box = detections.detections[1].bbox
    assert (box.center.position.x, box.center.orientation.z, box.center.orientation.w) == (11.0, 0.6, 0.8)
    assert (box.size.x, box.size.y, box.size.z) == (4.5, 1.9, 1.6)
