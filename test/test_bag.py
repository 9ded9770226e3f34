"""nuScenes -> rosbag2 conversion, checked by reading the bags back with readers that do not share our code.

The MCAP bag is decoded by mcap-ros2-support from the message definitions stored in the file, so these tests
also show that a bag is self-describing for tools such as Foxglove; the SQLite3 bag is read with rosbags' own
reader. The session's tiny generated data set (conftest) serves the whole module.
"""
from __future__ import annotations

import shutil
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

from fusion_prune_ros.bag import to_bag
from fusion_prune_ros.bag import typestore as ts
from fusion_prune_ros.bag.to_bag import camera_info_topic, convert, image_topic, topic_types
from fusion_prune_ros.data.classes import CAMERAS, LIDAR
from fusion_prune_ros.data.nusc import open_nuscenes
from fusion_prune_ros.errors import UserError

with warnings.catch_warnings():  # the module warns that it is deprecated; it is still the reader Foxglove documents
    warnings.simplefilter("ignore", DeprecationWarning)
    from mcap_ros2.reader import read_ros2_messages


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bag")


@pytest.fixture(scope="module")
def nusc(tiny_nusc):
    return tiny_nusc


@pytest.fixture(scope="module")
def scene(nusc) -> dict:
    return nusc.scene[0]


@pytest.fixture(scope="module")
def mcap_bag(nusc, scene, tmp) -> tuple[dict, dict]:
    """The summary and the decoded messages per topic of one scene written as MCAP."""
    summary = convert(nusc, [scene["name"]], tmp / "scene", progress=False)
    files = list((tmp / "scene").glob("*.mcap"))
    assert len(files) == 1 and (tmp / "scene" / "metadata.yaml").is_file()
    by_topic = defaultdict(list)
    for m in read_ros2_messages(files[0]):
        by_topic[m.channel.topic].append(m)
    return summary, by_topic


def scene_sample_data(nusc, scene, channel: str) -> list[dict]:
    """The scene's records of one channel, in time order: what the bag must contain."""
    recs = [sd for sd in nusc.sample_data if sd["channel"] == channel
            and nusc.get("sample", sd["sample_token"])["scene_token"] == scene["token"]]
    return sorted(recs, key=lambda sd: sd["timestamp"])


def scene_samples(nusc, scene) -> list[dict]:
    return sorted((s for s in nusc.sample if s["scene_token"] == scene["token"]), key=lambda s: s["timestamp"])


def stamp_us(header) -> int:
    assert header.stamp.nanosec % 1000 == 0
    return header.stamp.sec * 1_000_000 + header.stamp.nanosec // 1000


def test_topics_schemas_and_counts(nusc, scene, mcap_bag):
    summary, msgs = mcap_bag
    assert {t: ms[0].schema.name for t, ms in msgs.items()} == topic_types()
    assert len(msgs[to_bag.LIDAR_TOPIC]) == len(scene_sample_data(nusc, scene, LIDAR))
    for cam in CAMERAS:
        n = len(scene_sample_data(nusc, scene, cam))
        assert n > len(scene_samples(nusc, scene))  # sweeps, not only key frames
        assert len(msgs[image_topic(cam)]) == len(msgs[camera_info_topic(cam)]) == n
    pose_stamps = {nusc.get("ego_pose", sd["ego_pose_token"])["timestamp"]
                   for ch in (LIDAR, *CAMERAS) for sd in scene_sample_data(nusc, scene, ch)}
    assert len(msgs[to_bag.TF_TOPIC]) == len(pose_stamps)
    assert len(msgs[to_bag.TF_STATIC_TOPIC]) == 1
    assert len(msgs[to_bag.MARKER_TOPIC]) == len(scene_samples(nusc, scene))
    assert summary["topics"] == {t: len(ms) for t, ms in msgs.items()}
    first = min(m.log_time_ns for ms in msgs.values() for m in ms)
    assert msgs[to_bag.TF_STATIC_TOPIC][0].log_time_ns == first


def test_point_clouds_are_the_files(nusc, scene, mcap_bag):
    msgs = mcap_bag[1][to_bag.LIDAR_TOPIC]
    for m, sd in zip(msgs, scene_sample_data(nusc, scene, LIDAR)):
        cloud = m.ros_msg
        assert m.log_time_ns == sd["timestamp"] * 1000 and stamp_us(cloud.header) == sd["timestamp"]
        assert cloud.header.frame_id == LIDAR
        assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
            (n, 4 * i, 7, 1) for i, n in enumerate(("x", "y", "z", "intensity", "ring"))]
        expected = np.fromfile(Path(nusc.dataroot) / sd["filename"], np.float32).reshape(-1, 5)
        assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, len(expected), 20,
                                                                                  20 * len(expected))
        assert not cloud.is_bigendian and cloud.is_dense
        np.testing.assert_array_equal(np.frombuffer(cloud.data, np.float32).reshape(-1, 5), expected)


def test_images_and_camera_info(nusc, scene, mcap_bag):
    msgs = mcap_bag[1]
    for cam in CAMERAS:
        for image, info, sd in zip(msgs[image_topic(cam)], msgs[camera_info_topic(cam)],
                                   scene_sample_data(nusc, scene, cam)):
            assert image.log_time_ns == info.log_time_ns == sd["timestamp"] * 1000
            assert stamp_us(image.ros_msg.header) == stamp_us(info.ros_msg.header) == sd["timestamp"]
            assert image.ros_msg.header.frame_id == info.ros_msg.header.frame_id == cam
            assert image.ros_msg.format == "jpeg"
            assert bytes(image.ros_msg.data) == (Path(nusc.dataroot) / sd["filename"]).read_bytes()
            k = np.array(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"])
            ci = info.ros_msg
            assert (ci.width, ci.height, ci.distortion_model) == (sd["width"], sd["height"], "plumb_bob")
            np.testing.assert_array_equal(np.reshape(ci.k, (3, 3)), k)
            np.testing.assert_array_equal(np.reshape(ci.p, (3, 4)), np.hstack([k, np.zeros((3, 1))]))
            np.testing.assert_array_equal(np.reshape(ci.r, (3, 3)), np.eye(3))
            assert not np.any(ci.d)


def test_transforms(nusc, scene, mcap_bag):
    msgs = mcap_bag[1]
    first = scene_samples(nusc, scene)[0]
    static = msgs[to_bag.TF_STATIC_TOPIC][0].ros_msg.transforms
    assert [t.child_frame_id for t in static] == [LIDAR, *CAMERAS]
    for t in static:
        calib = nusc.get("calibrated_sensor", nusc.get("sample_data", first["data"][t.child_frame_id])[
            "calibrated_sensor_token"])
        assert t.header.frame_id == to_bag.BASE_FRAME
        tr, q = t.transform.translation, t.transform.rotation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], calib["translation"])
        np.testing.assert_allclose([q.w, q.x, q.y, q.z], calib["rotation"])
    poses = {p["timestamp"]: p for p in nusc.ego_pose}
    for m in msgs[to_bag.TF_TOPIC]:
        (t,) = m.ros_msg.transforms
        pose = poses[stamp_us(t.header)]
        assert m.log_time_ns == pose["timestamp"] * 1000
        assert (t.header.frame_id, t.child_frame_id) == (to_bag.MAP_FRAME, to_bag.BASE_FRAME)
        tr, q = t.transform.translation, t.transform.rotation
        np.testing.assert_allclose([tr.x, tr.y, tr.z, q.w, q.x, q.y, q.z], pose["translation"] + pose["rotation"])


def test_annotation_markers(nusc, scene, mcap_bag):
    for m, sample in zip(mcap_bag[1][to_bag.MARKER_TOPIC], scene_samples(nusc, scene)):
        markers = m.ros_msg.markers
        assert m.log_time_ns == sample["timestamp"] * 1000
        assert len(markers) == len(sample["anns"]) + 1 and sample["anns"]
        assert markers[0].action == 3  # DELETEALL
        assert len({mk.id for mk in markers}) == len(markers)
        for mk, token in zip(markers[1:], sample["anns"]):
            ann = nusc.get("sample_annotation", token)
            assert (mk.type, mk.action, mk.header.frame_id) == (1, 0, "map")
            assert stamp_us(mk.header) == sample["timestamp"]
            w, l, h = ann["size"]
            np.testing.assert_allclose([mk.scale.x, mk.scale.y, mk.scale.z], [l, w, h])
            p, q = mk.pose.position, mk.pose.orientation
            np.testing.assert_allclose([p.x, p.y, p.z, q.w, q.x, q.y, q.z], ann["translation"] + ann["rotation"])
            assert (mk.lifetime.sec, mk.lifetime.nanosec) == (0, 500_000_000)


def test_sqlite3_bag_reads_back_with_rosbags(nusc, scene, tmp):
    out = tmp / "scene_db"
    convert(nusc, [scene["name"]], out, storage="sqlite3", progress=False)
    assert list(out.glob("*.db3"))
    store = ts.typestore()
    counts = defaultdict(int)
    lidar = scene_sample_data(nusc, scene, LIDAR)
    with Reader(out) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == topic_types()
        (static,) = [c for c in reader.connections if c.topic == to_bag.TF_STATIC_TOPIC]
        assert static.ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
        for conn, stamp, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == to_bag.LIDAR_TOPIC:
                sd = lidar[counts[conn.topic]]
                assert stamp == sd["timestamp"] * 1000
                expected = np.fromfile(Path(nusc.dataroot) / sd["filename"], np.float32).reshape(-1, 5)
                np.testing.assert_array_equal(msg.data.view(np.float32).reshape(-1, 5), expected)
            counts[conn.topic] += 1
    assert counts[to_bag.LIDAR_TOPIC] == len(lidar)
    assert set(counts) == set(topic_types())


def test_vision_msgs_round_trip():
    store = ts.typestore()
    t = store.types
    header = t[ts.HEADER](stamp=t[ts.TIME](sec=5, nanosec=7), frame_id="base_link")
    pose = t[ts.POSE](position=t[ts.POINT](1.0, 2.0, 3.0), orientation=t[ts.QUATERNION](0.0, 0.0, 0.6, 0.8))
    cov = t["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.arange(36, dtype=np.float64))
    hyp = t[ts.OBJECT_HYPOTHESIS_WITH_POSE](hypothesis=t[ts.OBJECT_HYPOTHESIS](class_id="car", score=0.9),
                                            pose=cov)
    box = t[ts.BOUNDING_BOX3D](center=pose, size=t[ts.VECTOR3](4.5, 1.9, 1.6))
    det = t[ts.DETECTION3D](header=header, results=[hyp], bbox=box, id="17")
    raw = store.serialize_cdr(t[ts.DETECTION3D_ARRAY](header=header, detections=[det, det]), ts.DETECTION3D_ARRAY)
    back = store.deserialize_cdr(raw, ts.DETECTION3D_ARRAY)
    assert len(back.detections) == 2 and back.detections[1].id == "17"
    assert back.detections[0].results[0].hypothesis.class_id == "car"
    assert back.detections[0].results[0].hypothesis.score == 0.9
    np.testing.assert_array_equal(back.detections[0].results[0].pose.covariance, np.arange(36))
    assert back.detections[0].bbox.size.x == 4.5 and back.header.stamp.nanosec == 7

    label = t[ts.LABEL_INFO](header=header, class_map=[t[ts.VISION_CLASS](class_id=3, class_name="bus")],
                             threshold=0.25)
    back = store.deserialize_cdr(store.serialize_cdr(label, ts.LABEL_INFO), ts.LABEL_INFO)
    assert (back.class_map[0].class_id, back.class_map[0].class_name, back.threshold) == (3, "bus", 0.25)


def test_existing_output_is_refused(nusc, scene, tmp):
    out = tmp / "exists"
    out.mkdir()
    with pytest.raises(UserError, match="already exists"):
        convert(nusc, [scene["name"]], out, progress=False)


def test_unknown_scene_and_storage(nusc, scene, tmp):
    with pytest.raises(UserError, match="scene-9999"):
        convert(nusc, ["scene-9999"], tmp / "unknown", progress=False)
    with pytest.raises(UserError, match="storage"):
        convert(nusc, [scene["name"]], tmp / "unknown", storage="rosbag1", progress=False)
    assert not (tmp / "unknown").exists() and not (tmp / "unknown.partial").exists()


def test_missing_sensor_file(nusc, scene, tmp):
    root = tmp / "nusc_missing"
    shutil.copytree(nusc.dataroot, root)
    sweep = scene_sample_data(nusc, scene, "CAM_BACK")[1]
    assert not sweep["is_key_frame"]
    (root / sweep["filename"]).unlink()
    broken = open_nuscenes(root, "v1.0-mini")
    with pytest.raises(UserError, match="missing sensor file"):
        convert(broken, [scene["name"]], tmp / "missing", progress=False)
    assert not (tmp / "missing").exists() and not (tmp / "missing.partial").exists()


def test_failure_while_writing_leaves_nothing(nusc, scene, tmp, monkeypatch):
    calls = []

    def failing_cloud(*args):
        calls.append(1)
        raise RuntimeError("disk full")

    monkeypatch.setattr(to_bag, "_point_cloud", failing_cloud)
    with pytest.raises(RuntimeError, match="disk full"):
        convert(nusc, [scene["name"]], tmp / "failed", progress=False)
    assert calls and not (tmp / "failed").exists() and not (tmp / "failed.partial").exists()
