"""The bad-input catalogue: one row per malformed or badly timed input, fed through the node's own input path (the
ROS edge's router, the feeder, DetectorCore), each with the diagnostic it must produce.

For every row: nothing raises (the node keeps running), no detections come out of the garbage, the event is
counted under a readable reason, and the next good frame is processed normally.
"""
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from fusion_prune_ros.bag import typestore as ts
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.ros.stamps import stamp_to_ns
from fusion_prune_ros.ros.inputs import InputRouter, InputTopics
from fusion_prune_ros.runtime.core import CoreConfig, DetectorCore
from fusion_prune_ros.runtime.feeder import Feeder, FeederConfig
from fusion_prune_ros.runtime.policy import PolicyConfig

STORE = ts.typestore()
T = STORE.types


@pytest.fixture(scope="module")
def stream(shipped):
    """Every message of the validation bag, deserialised with rosbags, in time order."""
    out = []
    with Reader(shipped / "val_bag") as reader:
        for conn, t, raw in reader.messages():
            out.append((conn.topic, conn.msgtype, STORE.deserialize_cdr(raw, conn.msgtype), t))
    return out


class _Node:
    """The node's input path without ROS on a hand-moved arrival clock (the bag's receive times): every message is
    processed before the next one arrives. Images arrive on the compressed topics and on `/<camera>/image_raw`."""

    def __init__(self, core: DetectorCore):
        self.core = core
        self.t = 0.0
        self.feeder = Feeder(core, FeederConfig(sync_wait_s=0.0), lambda: self.t)
        topics = InputTopics.for_cameras(core.cfg.cameras)
        topics.images.update({f"/{c}/image_raw": c for c in core.cfg.cameras})
        self.router = InputRouter(self.feeder, topics, core.cfg.lidar, core.cfg.max_points)

    def __getattr__(self, name):  # the core's counters and diagnostics
        return getattr(self.core, name)


def _core(shipped, **overrides) -> _Node:
    cfg = CoreConfig(profile=str(shipped / "profiles" / "dense.yaml"), backend="onnxruntime", device="cpu",
                     score_threshold=0.05, policy=PolicyConfig(latency_budget_ms=1e5))
    return _Node(DetectorCore(replace(cfg, **overrides)))


def _feed(node: _Node, topic: str, msgtype: str, msg, t: int):
    """Deliver one message at bag time t; returns the frame it made (None if none)."""
    node.t = t * 1e-9
    node.router.route(topic, msg)
    outputs = node.feeder.work()
    return outputs[-1] if outputs else None


def _warm(core: _Node, stream, seconds: float):
    """Feed the first `seconds` of the bag; returns the index of the next LiDAR message."""
    start = stream[0][3]
    i = 0
    while stream[i][3] - start < seconds * 1e9 or stream[i][0] != "/LIDAR_TOP":
        _feed(core, *stream[i])
        i += 1
    return i


# ---- message surgery ---------------------------------------------------------------------------------------------

def _cloud(msg, **fields):
    return replace(msg, **fields)


def _field(name, offset, datatype=7):
    return T["sensor_msgs/msg/PointField"](name=name, offset=offset, datatype=datatype, count=1)


def _points(msg):
    return np.frombuffer(bytes(msg.data), np.float32).reshape(-1, 5)


def _with_points(msg, pts):
    pts = np.ascontiguousarray(pts, np.float32)
    return replace(msg, width=len(pts), row_step=20 * len(pts), data=np.frombuffer(pts.tobytes(), np.uint8))


def _shift(header, ns):
    stamp = stamp_to_ns(header.stamp) + ns
    return replace(header, stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10 ** 9, nanosec=stamp % 10 ** 9))


def _bigendian(msg):
    pts = _points(msg).astype(">f4")
    return replace(msg, is_bigendian=True, data=np.frombuffer(pts.tobytes(), np.uint8))


def _padded(msg):
    """Non-dense organised cloud with 12 bytes of padding per point and NaN rows."""
    pts = _points(msg).copy()
    pts[::7, :3] = np.nan
    rows = np.zeros((len(pts), 32), np.uint8)
    rows[:, :20] = pts.view(np.uint8).reshape(-1, 20)
    n = len(pts) // 4 * 4
    return replace(msg, height=4, width=n // 4, point_step=32, row_step=32 * (n // 4), is_dense=False,
                   data=rows[:n].reshape(-1))


def _image(msg, **fields):
    return replace(msg, **fields)


def _raw_image(width=400, height=225, encoding="rgb8", step=None, data_len=None):
    step = step if step is not None else width * 3
    n = data_len if data_len is not None else height * step
    return T["sensor_msgs/msg/Image"](header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
        sec=0, nanosec=0), frame_id="CAM_FRONT"), height=height, width=width, encoding=encoding, is_bigendian=0,
        step=step, data=np.zeros(n, np.uint8))


@dataclass
class Case:
    name: str
    topic: str  # where the bad message goes
    make: Callable  # (good LiDAR msg at this point, stream, index) -> (topic, msgtype, msg)
    reason: str  # the drops / notes key that must count it
    produces_output: bool = False  # bad-but-usable input (NaNs, big-endian...) still gives detections


def _lidar(make, shift_ns: int = 25_000_000):
    """A LiDAR case: the bad cloud is the good one changed by `make`, stamped `shift_ns` after it (between two
    sweeps, so that only the timing cases are about timing)."""
    def build(good, s, i):
        msg = make(good)
        return "/LIDAR_TOP", "sensor_msgs/msg/PointCloud2", replace(msg, header=_shift(msg.header, shift_ns))
    return build


def _cam(make, topic="/CAM_FRONT/image_rect_compressed", msgtype="sensor_msgs/msg/CompressedImage"):
    def build(good, s, i):
        image = next(m for tp, _, m, _ in reversed(s[:i]) if tp == "/CAM_FRONT/image_rect_compressed")
        return topic, msgtype, replace(make(image), header=_shift(image.header, 1_000_000))  # a stamp in line
    return build


CASES = [
    Case("cloud without z", "/LIDAR_TOP", _lidar(lambda m: _cloud(m, fields=[_field("x", 0), _field("y", 4)])),
         "cloud_missing_field"),
    Case("unknown datatype", "/LIDAR_TOP", _lidar(lambda m: _cloud(m, fields=[_field("x", 0, 9), _field("y", 4),
                                                                          _field("z", 8)])), "cloud_bad_datatype"),
    Case("duplicate fields", "/LIDAR_TOP", _lidar(lambda m: _cloud(m, fields=[_field("x", 0), _field("x", 4),
                                                                          _field("y", 4), _field("z", 8)])),
         "cloud_duplicate_field"),
    Case("point_step too small", "/LIDAR_TOP", _lidar(lambda m: _cloud(m, point_step=8)), "cloud_bad_point_step"),
    Case("row_step too small", "/LIDAR_TOP", _lidar(lambda m: _cloud(m, row_step=m.row_step - 20)),
         "cloud_bad_row_step"),
    Case("data length inconsistent", "/LIDAR_TOP",
         _lidar(lambda m: _cloud(m, data=np.asarray(m.data)[:-10])), "cloud_size_mismatch"),
    Case("zero points", "/LIDAR_TOP", _lidar(lambda m: _with_points(m, np.zeros((0, 5)))), "cloud_empty"),
    Case("too many points", "/LIDAR_TOP",
         _lidar(lambda m: _with_points(m, np.zeros((500_000, 5)) + 5.0)), "cloud_too_many_points"),
    Case("big-endian cloud", "/LIDAR_TOP", _lidar(_bigendian), "frames", produces_output=True),
    Case("NaN and inf points", "/LIDAR_TOP",
         _lidar(lambda m: _with_points(m, np.where(np.arange(len(_points(m)))[:, None] % 5 == 0,
                                                   np.array([np.nan, np.inf, 1, 1, 1]), _points(m)))),
         "nonfinite_points", produces_output=True),
    Case("ten times the usual points", "/LIDAR_TOP",
         _lidar(lambda m: _with_points(m, np.tile(_points(m), (10, 1)))), "frames", produces_output=True),
    Case("non-dense padded organised cloud", "/LIDAR_TOP", _lidar(_padded), "nonfinite_points", produces_output=True),
    Case("unknown image encoding", "/CAM_FRONT/image_raw",
         _cam(lambda m: _raw_image(encoding="yuv422"), "/CAM_FRONT/image_raw", "sensor_msgs/msg/Image"),
         "CAM_FRONT:image_unknown_encoding"),
    Case("image with a wrong step", "/CAM_FRONT/image_raw",
         _cam(lambda m: _raw_image(step=100), "/CAM_FRONT/image_raw", "sensor_msgs/msg/Image"),
         "CAM_FRONT:image_bad_step"),
    Case("image data shorter than height x step", "/CAM_FRONT/image_raw",
         _cam(lambda m: _raw_image(data_len=1000), "/CAM_FRONT/image_raw", "sensor_msgs/msg/Image"),
         "CAM_FRONT:image_truncated"),
    Case("truncated JPEG", "/CAM_FRONT/image_rect_compressed",
         _cam(lambda m: _image(m, data=np.asarray(m.data)[: len(m.data) // 2])), "CAM_FRONT:image_truncated"),
    Case("non-JPEG data", "/CAM_FRONT/image_rect_compressed",
         _cam(lambda m: _image(m, data=np.frombuffer(b"GIF89a" + bytes(200), np.uint8))),
         "CAM_FRONT:image_decode_failed"),
    Case("image size differs from CameraInfo", "/CAM_FRONT/image_raw",
         _cam(lambda m: _raw_image(width=320, height=180), "/CAM_FRONT/image_raw", "sensor_msgs/msg/Image"),
         "CAM_FRONT:image_size_mismatch"),
    Case("CameraInfo with zero focal length", "/CAM_FRONT/camera_info",
         lambda good, s, i: ("/CAM_FRONT/camera_info", "sensor_msgs/msg/CameraInfo", replace(
             next(m for tp, _, m, _ in reversed(s[:i]) if tp == "/CAM_FRONT/camera_info"),
             k=np.zeros(9))), "CAM_FRONT:camera_info_invalid"),
    Case("cloud stamp out of order", "/LIDAR_TOP", _lidar(lambda m: m, -20_000_000), "out_of_order"),
    Case("duplicate cloud", "/LIDAR_TOP", _lidar(lambda m: m, 0), "duplicate_stamp"),
    Case("cloud stamp far in the future", "/LIDAR_TOP", _lidar(lambda m: m, 3600 * 10 ** 9), "stamp_in_future"),
    Case("cloud stamp jumps backwards once", "/LIDAR_TOP", _lidar(lambda m: m, -30 * 10 ** 9), "stamp_jumped_back"),
]


def _count(core: _Node, reason: str) -> int:
    """How often `reason` was counted: a drop, a note on a processed frame, or (for 'frames') frames processed."""
    return core.frames if reason == "frames" else core.drops.get(reason, 0) + core.notes.get(reason, 0)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_catalogue(case, shipped, stream):
    core = _core(shipped)
    i = _warm(core, stream, 0.6)
    good = stream[i][2]
    _feed(core, *stream[i])  # the last good sweep before the bad input
    before = _count(core, case.reason)
    topic, msgtype, bad = case.make(good, stream, i)
    out = _feed(core, topic, msgtype, bad, stream[i][3] + 1_000_000)  # raises nothing: the node keeps running
    assert _count(core, case.reason) == before + 1, (case.reason, dict(core.drops), dict(core.notes))
    if topic == "/LIDAR_TOP":
        assert (out is not None) == case.produces_output
    # The next good frame is processed normally.
    j = next(k for k in range(i + 1, len(stream)) if stream[k][0] == "/LIDAR_TOP")
    for k in range(i + 1, j):
        _feed(core, *stream[k])
    nxt = _feed(core, *stream[j])
    assert nxt is not None and nxt.variant, case.name


def test_skewed_camera_is_left_out_and_said_so(shipped, stream):
    """An image older than camera_max_age (camera-LiDAR skew) is not used; the frame says which camera and why."""
    core = _core(shipped, camera_max_age_s=0.001)
    i = _warm(core, stream, 0.6)
    out = _feed(core, *stream[i])
    assert out is not None and out.cameras == 0
    assert core.notes["CAM_FRONT:image_too_old"] >= 1


def test_no_variant_for_the_available_modalities_is_an_error_state(shipped, stream, tmp_path):
    """A profile without a LiDAR-only graph loses its only variant when the cameras go: no detections, an ERROR
    diagnostic naming the reason, and detections return with the cameras."""
    import yaml

    profile = yaml.safe_load((shipped / "profiles" / "dense.yaml").read_text())
    profile["variants"] = [v for v in profile["variants"] if v["modality"] == "fused"]
    for v in profile["variants"]:
        v["onnx"] = str(shipped / "profiles" / v["onnx"])
        v["checkpoint"] = str(shipped / "profiles" / v["checkpoint"])
    profile["detector"] = str(shipped / "profiles" / profile["detector"])
    (tmp_path / "fused_only.yaml").write_text(yaml.safe_dump(profile))
    core = _core(shipped, profile=str(tmp_path / "fused_only.yaml"))
    i = _warm(core, stream, 0.6)
    assert _feed(core, *stream[i]) is not None
    stop = stream[i][3] + int((core.cfg.health.camera_max_age_s + 0.1) * 1e9)  # the cameras go silent, then stale
    out = None
    for topic, msgtype, msg, t in stream[i + 1:]:
        if "CAM_" not in topic:
            out = _feed(core, topic, msgtype, msg, t)
        if topic == "/LIDAR_TOP" and t >= stop:
            break
    assert out is None and core.drops["no_variant"] >= 1
    (name, level, message, values), _ = core.diagnostics(stream[i][3] * 1e-9)
    assert level == 2 and "no variant can run" in message


@pytest.mark.parametrize("break_it, match", [
    (lambda p: p.write_text(p.read_text() + "\ncolour: red\n"), "unknown key"),
    (lambda p: (p.parent / "../models/fused.onnx").resolve().unlink(), "file not found"),
    (lambda p: (p.parent / "../models/fused.onnx").resolve().write_bytes(b"\x08\x01garbage"), "cannot load ONNX"),
    (lambda p: (p.parent / "../models/detector.yaml").resolve().unlink(), "detector config not found"),
])
def test_bad_files_and_config_fail_configure_with_a_reason(shipped, tmp_path, break_it, match):
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(shipped / "models", work / "models")
    shutil.copytree(shipped / "profiles", work / "profiles")
    profile = work / "profiles" / "dense.yaml"
    break_it(profile)
    with pytest.raises(UserError, match=match):
        _core(shipped, profile=str(profile))


def test_corrupt_checkpoint_is_a_clear_error(shipped, tmp_path):
    from fusion_prune_ros.model.checkpoint import load_detector

    bad = tmp_path / "model.pt"
    bad.write_bytes((shipped / "models" / "model.pt").read_bytes()[:5000])
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_detector(bad)


def test_a_bag_loop_starts_a_new_timeline_after_one_sweep(shipped, stream):
    """The bag played again with its original stamps: the first sweep back in time is refused, the second starts a
    new timeline (the multi-sweep history is reset, never mixed across the jump), and frames go on."""
    core = _core(shipped)
    for message in stream:
        _feed(core, *message)
    frames, sweeps = core.frames, sum(topic == "/LIDAR_TOP" for topic, *_ in stream)
    later = stream[-1][3] - stream[0][3] + 50_000_000
    for topic, msgtype, msg, t in stream:
        _feed(core, topic, msgtype, msg, t + later)
    assert core.drops["stamp_jumped_back"] == 1 and core.notes["time_reset"] == 1
    assert core.frames - frames == sweeps - 1
