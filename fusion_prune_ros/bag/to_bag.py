"""nuScenes scenes -> one ROS 2 bag (rosbag2, MCAP or SQLite3), written with `rosbags`, without ROS installed.

The topic layout follows the public nuScenes converters (foxglove/nuscenes2mcap) so existing RViz / Foxglove
layouts work, and ROS REP 103/105 frames: `map` -> `base_link` from the ego poses on /tf, `base_link` -> each
sensor frame (named after its channel) from the calibration on /tf_static. Every sweep is written, not only the
key frames, so a node replaying the bag sees the sensors' real rates. Annotation boxes go out as markers at the
key frames, for a visual check against the detector's output.

The bag is built under `<out>.partial/` and renamed into place at the end, so a failed or interrupted run never
leaves something that looks like a finished bag.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from nuscenes.nuscenes import NuScenes
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from ..atomic import built_in_place
from ..data.classes import CAMERAS, CATEGORY_TO_CLASS, CLASS_COLORS, LIDAR
from ..data.nusc import sensor_file
from ..errors import UserError
from ..ros.topics import LIDAR_TOPIC, MARKER_TOPIC, TF_STATIC_TOPIC, TF_TOPIC, camera_info_topic, image_topic
from . import typestore as ts

BAG_VERSION = 9  # rosbag2's format since Jazzy
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

MAP_FRAME = "map"
BASE_FRAME = "base_link"

# The .pcd.bin layout of nuScenes LiDAR files: float32 x, y, z, intensity, ring per point.
LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring")
POINT_STEP = 4 * len(LIDAR_FIELDS)
MARKER_LIFETIME_NS = 500_000_000  # a little longer than the 2 Hz key-frame period, so boxes do not flicker
MARKER_ALPHA = 0.5
OTHER_COLOR = (0.7, 0.7, 0.7)  # categories outside the ten detection classes

# tf2's static broadcaster publishes latched (transient local, depth 1); recording it that way lets
# `ros2 bag play` re-offer it to late subscribers, who would otherwise never see the sensor frames.
TF_STATIC_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                    QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)




def topic_types() -> dict[str, str]:
    """Every topic of a converted bag and its message type."""
    topics = {TF_STATIC_TOPIC: ts.TF_MESSAGE, TF_TOPIC: ts.TF_MESSAGE, LIDAR_TOPIC: ts.POINT_CLOUD2}
    for cam in CAMERAS:
        topics[image_topic(cam)] = ts.COMPRESSED_IMAGE
        topics[camera_info_topic(cam)] = ts.CAMERA_INFO
    topics[MARKER_TOPIC] = ts.MARKER_ARRAY
    return topics


class _Event(NamedTuple):
    """One thing to write, sortable into bag order; `rank` orders what shares a stamp (transforms first)."""

    stamp_us: int
    rank: int
    token: str


_TF_STATIC, _TF, _SENSOR, _MARKERS = range(4)


def convert(nusc: NuScenes, scene_names: list[str], out_path: str | Path, storage: str = "mcap",
            progress: bool = True) -> dict:
    """Write the scenes `scene_names` of `nusc` into a new bag folder `out_path`; returns a summary.

    Everything that can be wrong with the input (names, files) is checked before the first message is written.
    """
    out = Path(out_path)
    if out.exists():
        raise UserError(f"output path already exists: {out} (choose another or remove it)")
    if storage not in STORAGES:
        raise UserError(f"unknown bag storage {storage!r}: expected one of {', '.join(STORAGES)}")
    names = list(dict.fromkeys(scene_names))
    if not names:
        raise UserError("no scene names given")
    by_name = {s["name"]: s for s in nusc.scene}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"unknown scene name(s) {', '.join(unknown)} in {nusc.dataroot} ({nusc.version})")
    events = sorted(e for n in names for e in _scene_events(nusc, by_name[n]))

    start = time.time()
    # The storage file inside is named after the bag folder (<name>/<name>.mcap): the folder is built with its
    # final name one level down.
    with built_in_place(out, nested=True) as folder:
        counts = _write(nusc, events, folder, STORAGES[storage], progress)
    return {"out": str(out), "storage": storage, "scenes": names, "messages": sum(counts.values()),
            "topics": counts, "duration_s": round((events[-1].stamp_us - events[0].stamp_us) / 1e6, 3),
            "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
            "seconds": round(time.time() - start, 1)}


def _scene_events(nusc: NuScenes, scene: dict) -> list[_Event]:
    """All sweeps of the seven sensors, one /tf per ego pose, markers per key frame, /tf_static first."""
    first = nusc.get("sample", scene["first_sample_token"])
    events, poses = [], {}
    for channel in (LIDAR, *CAMERAS):
        if channel not in first["data"]:
            raise UserError(f"scene {scene['name']} has no {channel} data")
        for sd in _channel_sweeps(nusc, first["data"][channel], scene["token"]):
            sensor_file(nusc, sd["token"])
            events.append(_Event(sd["timestamp"], _SENSOR, sd["token"]))
            pose = nusc.get("ego_pose", sd["ego_pose_token"])
            poses.setdefault(pose["timestamp"], pose["token"])
    events += [_Event(stamp, _TF, token) for stamp, token in poses.items()]
    token = first["token"]
    while token:
        sample = nusc.get("sample", token)
        events.append(_Event(sample["timestamp"], _MARKERS, token))
        token = sample["next"]
    events.append(_Event(min(e.stamp_us for e in events), _TF_STATIC, first["token"]))
    return events


def _channel_sweeps(nusc: NuScenes, key_token: str, scene_token: str) -> list[dict]:
    """The whole sample_data chain of one channel through a key frame, cut to the scene's own records."""
    def in_scene(token: str) -> bool:
        return bool(token) and nusc.get("sample", nusc.get("sample_data", token)["sample_token"])[
            "scene_token"] == scene_token

    sd = nusc.get("sample_data", key_token)
    while in_scene(sd["prev"]):
        sd = nusc.get("sample_data", sd["prev"])
    chain = [sd]
    while in_scene(chain[-1]["next"]):
        chain.append(nusc.get("sample_data", chain[-1]["next"]))
    return chain


def _write(nusc: NuScenes, events: list[_Event], path: Path, plugin: StoragePlugin, progress: bool) -> dict:
    """Serialize the events in order; returns the message count per topic."""
    store = ts.typestore()
    counts = {topic: 0 for topic in topic_types()}
    with Writer(path, version=BAG_VERSION, storage_plugin=plugin) as writer:
        # Connections from the typestore carry the full message definitions, which the MCAP schemas need for
        # readers without these types (Foxglove, mcap-ros2-support).
        conns = {topic: writer.add_connection(topic, msgtype, typestore=store,
                                              offered_qos_profiles=[TF_STATIC_QOS] if topic == TF_STATIC_TOPIC
                                              else ())
                 for topic, msgtype in topic_types().items()}
        for event in tqdm(events, unit="frame", desc="bag", disable=not progress, mininterval=1.0):
            for topic, msg in _messages(nusc, event):
                writer.write(conns[topic], event.stamp_us * 1000, store.serialize_cdr(msg, conns[topic].msgtype))
                counts[topic] += 1
    return counts


def _messages(nusc: NuScenes, event: _Event) -> list[tuple[str, object]]:
    if event.rank == _TF_STATIC:
        sample = nusc.get("sample", event.token)
        transforms = []
        for channel in (LIDAR, *CAMERAS):
            calib = nusc.get("calibrated_sensor", nusc.get("sample_data", sample["data"][channel])[
                "calibrated_sensor_token"])
            transforms.append(_transform(event.stamp_us, BASE_FRAME, channel, calib["translation"],
                                         calib["rotation"]))
        return [(TF_STATIC_TOPIC, _type(ts.TF_MESSAGE)(transforms=transforms))]
    if event.rank == _TF:
        pose = nusc.get("ego_pose", event.token)
        tf = _transform(event.stamp_us, MAP_FRAME, BASE_FRAME, pose["translation"], pose["rotation"])
        return [(TF_TOPIC, _type(ts.TF_MESSAGE)(transforms=[tf]))]
    if event.rank == _MARKERS:
        return [(MARKER_TOPIC, _markers(nusc, nusc.get("sample", event.token)))]
    sd = nusc.get("sample_data", event.token)
    if sd["channel"] == LIDAR:
        return [(LIDAR_TOPIC, _point_cloud(nusc, sd))]
    data = np.frombuffer(sensor_file(nusc, sd["token"]).read_bytes(), np.uint8)
    image = _type(ts.COMPRESSED_IMAGE)(header=_header(sd["timestamp"], sd["channel"]), format="jpeg", data=data)
    return [(image_topic(sd["channel"]), image), (camera_info_topic(sd["channel"]), _camera_info(nusc, sd))]


def _type(name: str) -> type:
    return ts.typestore().types[name]


def _header(stamp_us: int, frame_id: str) -> object:
    stamp = _type(ts.TIME)(sec=stamp_us // 1_000_000, nanosec=stamp_us % 1_000_000 * 1000)
    return _type(ts.HEADER)(stamp=stamp, frame_id=frame_id)


def _transform(stamp_us: int, parent: str, child: str, translation: list, rotation_wxyz: list) -> object:
    """nuScenes stores quaternions as (w, x, y, z); ROS as (x, y, z, w)."""
    w, x, y, z = (float(v) for v in rotation_wxyz)
    transform = _type(ts.TRANSFORM)(translation=_type(ts.VECTOR3)(*(float(v) for v in translation)),
                                    rotation=_type(ts.QUATERNION)(x=x, y=y, z=z, w=w))
    return _type(ts.TRANSFORM_STAMPED)(header=_header(stamp_us, parent), child_frame_id=child, transform=transform)


def _point_cloud(nusc: NuScenes, sd: dict) -> object:
    """The file's bytes are already the PointCloud2 data (little-endian float32 records), so no copy or cast."""
    data = np.frombuffer(sensor_file(nusc, sd["token"]).read_bytes(), np.uint8)
    if data.size % POINT_STEP:
        raise UserError(f"malformed LiDAR file {sd['filename']}: {data.size} bytes is not a whole number of "
                        f"{POINT_STEP}-byte points")
    field = _type(ts.POINT_FIELD)
    fields = [field(name=n, offset=4 * i, datatype=field.FLOAT32, count=1) for i, n in enumerate(LIDAR_FIELDS)]
    n = data.size // POINT_STEP
    return _type(ts.POINT_CLOUD2)(header=_header(sd["timestamp"], sd["channel"]), height=1, width=n, fields=fields,
                                  is_bigendian=False, point_step=POINT_STEP, row_step=POINT_STEP * n, data=data,
                                  is_dense=True)


def _camera_info(nusc: NuScenes, sd: dict) -> object:
    """The nuScenes images are undistorted, so plumb_bob with zero coefficients, R = I and P = [K | 0]."""
    k = np.asarray(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"], np.float64)
    roi = _type(ts.REGION_OF_INTEREST)(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _type(ts.CAMERA_INFO)(header=_header(sd["timestamp"], sd["channel"]), height=sd["height"],
                                 width=sd["width"], distortion_model="plumb_bob", d=np.zeros(5),
                                 k=k.reshape(9), r=np.eye(3).reshape(9), p=np.hstack([k, np.zeros((3, 1))]).reshape(12),
                                 binning_x=0, binning_y=0, roi=roi)


def _markers(nusc: NuScenes, sample: dict) -> object:
    """DELETEALL, then one CUBE per annotation in the map frame; nuScenes sizes are (w, l, h), l along box x."""
    marker = _type(ts.MARKER)
    markers = [_marker(sample["timestamp"], "", 0, marker.DELETEALL, _type(ts.POSE)(
        position=_type(ts.POINT)(0.0, 0.0, 0.0), orientation=_type(ts.QUATERNION)(0.0, 0.0, 0.0, 1.0)),
        (0.0, 0.0, 0.0), OTHER_COLOR)]
    for i, token in enumerate(sample["anns"], start=1):
        ann = nusc.get("sample_annotation", token)
        ns = CATEGORY_TO_CLASS.get(ann["category_name"], ann["category_name"])
        w, x, y, z = (float(v) for v in ann["rotation"])
        pose = _type(ts.POSE)(position=_type(ts.POINT)(*(float(v) for v in ann["translation"])),
                              orientation=_type(ts.QUATERNION)(x=x, y=y, z=z, w=w))
        width, length, height = (float(v) for v in ann["size"])
        markers.append(_marker(sample["timestamp"], ns, i, marker.ADD, pose, (length, width, height),
                               CLASS_COLORS.get(ns, OTHER_COLOR)))
    return _type(ts.MARKER_ARRAY)(markers=markers)


def _marker(stamp_us: int, ns: str, marker_id: int, action: int, pose: object, scale: tuple, rgb: tuple) -> object:
    empty = np.empty(0, np.uint8)
    texture = _type(ts.COMPRESSED_IMAGE)(header=_header(0, ""), format="", data=empty)
    lifetime = _type(ts.DURATION)(sec=0, nanosec=MARKER_LIFETIME_NS)
    return _type(ts.MARKER)(
        header=_header(stamp_us, MAP_FRAME), ns=ns, id=marker_id, type=_type(ts.MARKER).CUBE, action=action,
        pose=pose, scale=_type(ts.VECTOR3)(*scale), color=_type(ts.COLOR_RGBA)(*rgb, MARKER_ALPHA),
        lifetime=lifetime, frame_locked=False, points=[], colors=[], texture_resource="", texture=texture,
        uv_coordinates=[], text="", mesh_resource="", mesh_file=_type(ts.MESH_FILE)(filename="", data=empty),
        mesh_use_embedded_materials=False)
