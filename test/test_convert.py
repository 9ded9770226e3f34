"""ROS message conversion (fusion_prune_ros.ros: point_cloud, camera, transforms, stamps, msg_types,
detection_msgs) against messages built with rosbags' classes.

Point clouds are packed by a helper that writes arbitrary fields, offsets, padding (filled with random bytes, so
reading padding would show), row padding and byte order, the way real drivers lay them out; every output message
is also serialised to CDR and read back, which proves it is a valid message of its type.
"""
from __future__ import annotations

import array
import dataclasses
import sys

import cv2
import numpy as np
import pytest

from fusion_prune_ros.bag import typestore as ts
from fusion_prune_ros.data.classes import CLASS_COLORS, DETECTION_CLASSES
from fusion_prune_ros.detections import Detections
from fusion_prune_ros.geometry import quat_to_matrix, wrap_angle
from fusion_prune_ros.errors import InputError
from fusion_prune_ros.ros.camera import camera_info_to_intrinsics, compressed_to_rgb, image_to_rgb
from fusion_prune_ros.ros.detection_msgs import (detections_to_markers, detections_to_msg, label_info_msg,
                                                 msg_to_detections)
from fusion_prune_ros.ros.msg_types import import_message_class, rclpy_types, rosbags_types
from fusion_prune_ros.ros.point_cloud import cloud_to_points
from fusion_prune_ros.ros.stamps import ns_to_stamp, stamp_to_ns
from fusion_prune_ros.ros.transforms import tf_message_to_matrices, transform_to_matrix

STORE = ts.typestore()
T = STORE.types
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
CODES = {INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2", INT32: "i4", UINT32: "u4", FLOAT32: "f4", FLOAT64: "f8"}


def header(sec: int = 12, nanosec: int = 345, frame: str = "LIDAR_TOP"):
    return T[ts.HEADER](stamp=T[ts.TIME](sec=sec, nanosec=nanosec), frame_id=frame)


def cdr_roundtrip(msg, typename: str):
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, typename), typename)


# ---------------------------------------------------------------------------------------------- point clouds

def pack_cloud(fields: list[tuple[str, int, int, int]], values: dict[str, np.ndarray], point_step: int,
               height: int = 1, row_pad: int = 0, bigendian: bool = False, seed: int = 0):
    """A PointCloud2 whose fields (name, datatype, offset, count) hold `values` (element 0 of count > 1 fields;
    the other elements and all padding get random bytes)."""
    n = len(next(iter(values.values())))
    width = n // height
    order = ">" if bigendian else "<"
    row_step = width * point_step + row_pad
    raw = np.random.default_rng(seed).integers(0, 256, (height, row_step), dtype=np.uint8)
    for name, datatype, offset, count in fields:
        if name in values:
            dtype = np.dtype({"names": [name], "formats": [order + CODES[datatype]], "offsets": [offset],
                              "itemsize": point_step})
            grid = np.ndarray((height, width), dtype, buffer=raw, strides=(row_step, point_step))
            grid[name] = values[name].reshape(height, width)
    point_fields = [T[ts.POINT_FIELD](name=name, offset=offset, datatype=datatype, count=count)
                    for name, datatype, offset, count in fields]
    return T[ts.POINT_CLOUD2](header=header(), height=height, width=width, fields=point_fields,
                              is_bigendian=bigendian, point_step=point_step, row_step=row_step,
                              data=raw.reshape(-1), is_dense=True)


def field_values(fields, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Values that each field's datatype stores exactly (integers in range, floats as float32)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, datatype, _, _ in fields:
        code = CODES[datatype]
        if code.startswith("f"):
            out[name] = rng.uniform(-60, 60, n).astype(np.float32)
        else:
            info = np.iinfo(code)
            out[name] = rng.integers(max(info.min, -100), min(info.max, 255), n, endpoint=True).astype(code)
    return out


LAYOUTS = {
    "nuscenes": ([("x", FLOAT32, 0, 1), ("y", FLOAT32, 4, 1), ("z", FLOAT32, 8, 1), ("intensity", FLOAT32, 12, 1),
                  ("ring", FLOAT32, 16, 1)], 20),
    "velodyne_xyzirt_packed": ([("x", FLOAT32, 0, 1), ("y", FLOAT32, 4, 1), ("z", FLOAT32, 8, 1),
                                ("intensity", FLOAT32, 12, 1), ("ring", UINT16, 16, 1), ("time", FLOAT32, 18, 1)], 22),
    "velodyne_xyzirt_padded": ([("x", FLOAT32, 0, 1), ("y", FLOAT32, 4, 1), ("z", FLOAT32, 8, 1),
                                ("intensity", FLOAT32, 16, 1), ("ring", UINT16, 20, 1), ("time", FLOAT32, 24, 1)], 32),
    "autoware_xyzirc": ([("x", FLOAT32, 0, 1), ("y", FLOAT32, 4, 1), ("z", FLOAT32, 8, 1),
                         ("intensity", UINT8, 12, 1), ("return_type", UINT8, 13, 1), ("channel", UINT16, 14, 1)], 16),
    "ouster": ([("x", FLOAT32, 0, 1), ("y", FLOAT32, 4, 1), ("z", FLOAT32, 8, 1), ("intensity", FLOAT32, 16, 1),
                ("t", UINT32, 20, 1), ("reflectivity", UINT16, 24, 1), ("ring", UINT16, 26, 1),
                ("ambient", UINT16, 28, 1), ("range", UINT32, 32, 1)], 48),
    "xyz_only": ([("x", FLOAT32, 0, 1), ("y", FLOAT32, 4, 1), ("z", FLOAT32, 8, 1)], 12),
    "float64_count2_fields_out_of_order": ([("intensity", INT16, 24, 2), ("z", FLOAT64, 16, 1),
                                            ("normal", FLOAT32, 28, 3), ("x", FLOAT64, 0, 1),
                                            ("y", FLOAT64, 8, 1)], 40),
    "every_integer_type_unaligned": ([("x", INT8, 0, 1), ("y", INT16, 1, 1), ("z", INT32, 3, 1),
                                      ("intensity", UINT32, 7, 1), ("a", UINT16, 11, 1), ("b", UINT8, 13, 1)], 14),
}


def expected_points(values: dict[str, np.ndarray]) -> np.ndarray:
    intensity = values.get("intensity", np.zeros(len(values["x"])))
    return np.stack([values["x"], values["y"], values["z"], intensity], 1).astype(np.float32)


@pytest.mark.parametrize("bigendian", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("shape", [(1, 0), (4, 7)], ids=["flat", "organised_row_padding"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_cloud_layouts_round_trip(layout, shape, bigendian):
    fields, point_step = LAYOUTS[layout]
    height, row_pad = shape
    values = field_values(fields, 24 * height)
    msg = pack_cloud(fields, values, point_step, height, row_pad, bigendian)
    result = cloud_to_points(msg)
    assert result.points.dtype == np.float32 and result.points.shape == (24 * height, 4)
    assert result.dropped_nonfinite == 0
    np.testing.assert_array_equal(result.points, expected_points(values))


def test_cloud_from_rclpy_style_byte_array():
    """rclpy stores uint8[] as array.array('B'); bytes must work too."""
    fields, point_step = LAYOUTS["nuscenes"]
    values = field_values(fields, 10)
    msg = pack_cloud(fields, values, point_step)
    for data in (array.array("B", msg.data.tobytes()), msg.data.tobytes()):
        points = cloud_to_points(dataclasses.replace(msg, data=data)).points
        np.testing.assert_array_equal(points, expected_points(values))


def test_organised_cloud_drops_nonfinite_points():
    fields, point_step = LAYOUTS["velodyne_xyzirt_padded"]
    values = field_values(fields, 32)
    values["x"][[0, 5]] = np.nan
    values["z"][9] = np.inf
    values["y"][9] = np.nan  # two bad coordinates, one point
    values["y"][20] = -np.inf
    values["intensity"][31] = np.nan
    msg = pack_cloud(fields, values, point_step, height=4, row_pad=3)
    msg = dataclasses.replace(msg, is_dense=False)
    result = cloud_to_points(msg)
    keep = np.ones(32, bool)
    keep[[0, 5, 9, 20, 31]] = False
    assert result.dropped_nonfinite == 5
    np.testing.assert_array_equal(result.points, expected_points(values)[keep])


def test_cloud_allow_empty():
    fields, point_step = LAYOUTS["nuscenes"]
    empty = pack_cloud(fields, {"x": np.zeros(0, np.float32)}, point_step)
    result = cloud_to_points(empty, allow_empty=True)
    assert result.points.shape == (0, 4) and result.dropped_nonfinite == 0
    values = field_values(fields, 6)
    values["x"][:] = np.nan
    result = cloud_to_points(pack_cloud(fields, values, point_step), allow_empty=True)
    assert result.points.shape == (0, 4) and result.dropped_nonfinite == 6


def _good_cloud():
    fields, point_step = LAYOUTS["nuscenes"]
    return pack_cloud(fields, field_values(fields, 8), point_step)


def _fields(*specs):
    return [T[ts.POINT_FIELD](name=n, offset=o, datatype=d, count=c) for n, d, o, c in specs]


XYZ_F32 = [("x", FLOAT32, 0, 1), ("y", FLOAT32, 4, 1), ("z", FLOAT32, 8, 1)]
BAD_CLOUDS = {
    "missing_z": (dict(fields=_fields(*XYZ_F32[:2])), "cloud_missing_field"),
    "unknown_datatype_9": (dict(fields=_fields(*XYZ_F32, ("intensity", 9, 12, 1))), "cloud_bad_datatype"),
    "unknown_datatype_0": (dict(fields=_fields(("x", 0, 0, 1), *XYZ_F32[1:])), "cloud_bad_datatype"),
    "duplicate_field": (dict(fields=_fields(*XYZ_F32, ("x", FLOAT32, 12, 1))), "cloud_duplicate_field"),
    "zero_count": (dict(fields=_fields(*XYZ_F32, ("intensity", FLOAT32, 12, 0))), "cloud_bad_count"),
    "field_past_point_step": (dict(fields=_fields(*XYZ_F32, ("ring", FLOAT32, 18, 1))), "cloud_bad_point_step"),
    "count_past_point_step": (dict(fields=_fields(*XYZ_F32, ("normal", FLOAT32, 12, 3))), "cloud_bad_point_step"),
    "row_step_too_small": (dict(row_step=8 * 20 - 1), "cloud_bad_row_step"),
    "data_too_short": (dict(data=np.zeros(8 * 20 - 4, np.uint8)), "cloud_size_mismatch"),
    "data_too_long": (dict(data=np.zeros(8 * 20 + 20, np.uint8)), "cloud_size_mismatch"),
    "height_inconsistent": (dict(height=2), "cloud_size_mismatch"),
    "no_points": (dict(width=0, row_step=0, data=np.zeros(0, np.uint8)), "cloud_empty"),
    "all_nonfinite": (dict(data=np.full(8 * 5, np.nan, np.float32).view(np.uint8)), "cloud_empty"),
}


@pytest.mark.parametrize("case", BAD_CLOUDS)
def test_bad_clouds(case):
    changes, reason = BAD_CLOUDS[case]
    with pytest.raises(InputError) as err:
        cloud_to_points(dataclasses.replace(_good_cloud(), **changes))
    assert err.value.reason == reason
    assert str(err.value)


def test_cloud_too_many_points():
    with pytest.raises(InputError) as err:
        cloud_to_points(_good_cloud(), max_points=7)
    assert err.value.reason == "cloud_too_many_points"
    assert len(cloud_to_points(_good_cloud(), max_points=8).points) == 8


# ---------------------------------------------------------------------------------------------- images

RGB = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
GRAY = RGB[..., 0]


def image_msg(encoding: str, pixels: np.ndarray, pad: int = 0):
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    step = rows.shape[1] + pad
    data = np.full((height, step), 77, np.uint8)
    data[:, :rows.shape[1]] = rows
    return T["sensor_msgs/msg/Image"](header=header(), height=height, width=width, encoding=encoding,
                                      is_bigendian=False, step=step, data=data.reshape(-1))


ALPHA = np.full((5, 7, 1), 9, np.uint8)
ENCODED = {
    "rgb8": (RGB, RGB), "bgr8": (RGB[..., ::-1], RGB), "mono8": (GRAY[..., None], np.repeat(GRAY[..., None], 3, 2)),
    "rgba8": (np.concatenate([RGB, ALPHA], 2), RGB), "bgra8": (np.concatenate([RGB[..., ::-1], ALPHA], 2), RGB),
}


@pytest.mark.parametrize("pad", [0, 3], ids=["packed", "padded_step"])
@pytest.mark.parametrize("encoding", ENCODED)
def test_image_encodings(encoding, pad):
    stored, expected = ENCODED[encoding]
    rgb = image_to_rgb(image_msg(encoding, np.ascontiguousarray(stored), pad))
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, expected)


BAD_IMAGES = {
    "mono16": (dict(encoding="mono16"), "image_unknown_encoding"),
    "16UC1": (dict(encoding="16UC1"), "image_unknown_encoding"),
    "bayer": (dict(encoding="bayer_rggb8"), "image_unknown_encoding"),
    "zero_width": (dict(width=0), "image_empty"),
    "zero_height": (dict(height=0, data=np.zeros(0, np.uint8)), "image_empty"),
    "step_too_small": (dict(step=20), "image_bad_step"),
    "data_too_short": (dict(data=np.zeros(5 * 21 - 1, np.uint8)), "image_truncated"),
    "data_too_long": (dict(data=np.zeros(5 * 21 + 1, np.uint8)), "image_trailing_data"),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_bad_images(case):
    changes, reason = BAD_IMAGES[case]
    with pytest.raises(InputError) as err:
        image_to_rgb(dataclasses.replace(image_msg("rgb8", RGB), **changes))
    assert err.value.reason == reason


# A smooth picture with a pure red block, so JPEG stays close and a channel swap would show.
SMOOTH = np.zeros((48, 64, 3), np.uint8)
SMOOTH[..., 1] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
SMOOTH[8:24, 8:32] = (255, 0, 0)


def encode(ext: str, rgb: np.ndarray = SMOOTH) -> np.ndarray:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.reshape(-1)


def compressed_msg(fmt: str, data: np.ndarray):
    return T[ts.COMPRESSED_IMAGE](header=header(), format=fmt, data=np.asarray(data, np.uint8))


@pytest.mark.parametrize("fmt, ext", [("jpeg", ".jpg"), ("rgb8; jpeg compressed bgr8", ".jpg"),
                                      ("png", ".png"), ("bgr8; png compressed bgr8", ".png"), ("", ".png"),
                                      ("mono8; jpeg compressed mono8", ".jpg")])
def test_compressed_images(fmt, ext):
    rgb = compressed_to_rgb(compressed_msg(fmt, encode(ext)))
    assert rgb.shape == SMOOTH.shape and rgb.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(rgb, SMOOTH)
    else:
        assert np.abs(rgb.astype(int) - SMOOTH).mean() < 4
        assert tuple(rgb[16, 20]) > (200, 0, 0) and rgb[16, 20, 2] < 60  # still red, not blue


def test_jpeg_with_zero_padding_after_end_marker():
    data = np.concatenate([encode(".jpg"), np.zeros(5, np.uint8)])
    assert compressed_to_rgb(compressed_msg("jpeg", data)).shape == SMOOTH.shape


@pytest.mark.parametrize("reduction", [2, 4, 8])
def test_jpeg_decoded_smaller_is_the_image_at_that_scale(reduction):
    """A reduced decode has ceil(H / r) x ceil(W / r) pixels showing what the full image shows at that scale; a PNG
    is decoded in full whatever the reduction."""
    rgb = np.ascontiguousarray(np.repeat(np.repeat(SMOOTH, 3, 0), 3, 1)[:-1])  # odd sizes: rounding up is seen
    full = compressed_to_rgb(compressed_msg("jpeg", encode(".jpg", rgb)))
    small = compressed_to_rgb(compressed_msg("jpeg", encode(".jpg", rgb)), reduction)
    h, w = rgb.shape[:2]
    assert small.shape == (-(-h // reduction), -(-w // reduction), 3) and small.dtype == np.uint8
    expected = cv2.resize(full, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - expected).mean() < 6
    np.testing.assert_array_equal(compressed_to_rgb(compressed_msg("png", encode(".png", rgb)), reduction), rgb)


BAD_COMPRESSED = {
    "empty": ("jpeg", np.zeros(0, np.uint8), "image_empty"),
    "truncated_jpeg": ("jpeg", encode(".jpg")[:-200], "image_truncated"),
    "truncated_png": ("png", encode(".png")[:-30], "image_truncated"),
    "tiff_format": ("tiff", encode(".png"), "image_unknown_encoding"),
    "compressed_depth": ("16UC1; compressedDepth png", encode(".png"), "image_unknown_encoding"),
    "format_says_png_data_is_jpeg": ("png", encode(".jpg"), "image_decode_failed"),
    "not_an_image": ("jpeg", np.arange(100, dtype=np.uint8), "image_decode_failed"),
    "jpeg_markers_only": ("jpeg", np.frombuffer(b"\xff\xd8\xff" + bytes(50) + b"\xff\xd9", np.uint8),
                          "image_decode_failed"),
}


@pytest.mark.parametrize("case", BAD_COMPRESSED)
def test_bad_compressed_images(case):
    fmt, data, reason = BAD_COMPRESSED[case]
    with pytest.raises(InputError) as err:
        compressed_to_rgb(compressed_msg(fmt, data))
    assert err.value.reason == reason


# ---------------------------------------------------------------------------------------------- camera info

K = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])


def camera_info(k=K, width=1600, height=900, binning=(0, 0), roi=(0, 0, 0, 0)):
    region = T[ts.REGION_OF_INTEREST](x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3],
                                      do_rectify=False)
    k = np.asarray(k, np.float64)
    return T[ts.CAMERA_INFO](header=header(frame="CAM_FRONT"), height=height, width=width,
                             distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(9),
                             p=np.hstack([k.reshape(3, 3), np.zeros((3, 1))]).reshape(12),
                             binning_x=binning[0], binning_y=binning[1], roi=region)


def test_camera_info():
    for msg in (camera_info(), camera_info(binning=(1, 1), roi=(0, 0, 1600, 900))):
        k, width, height = camera_info_to_intrinsics(msg)
        np.testing.assert_array_equal(k, K)
        assert (width, height) == (1600, 900)


def _k(**entries):
    k = K.copy()
    for key, value in entries.items():
        k[int(key[1]), int(key[2])] = value
    return k


BAD_INFOS = {
    "zero_fx": (dict(k=_k(k00=0.0)), "camera_info_invalid"),
    "negative_fy": (dict(k=_k(k11=-5.0)), "camera_info_invalid"),
    "nan": (dict(k=_k(k02=np.nan)), "camera_info_invalid"),
    "inf_fx": (dict(k=_k(k00=np.inf)), "camera_info_invalid"),
    "uncalibrated_zero_k": (dict(k=np.zeros((3, 3))), "camera_info_invalid"),
    "bad_last_row": (dict(k=_k(k22=2.0)), "camera_info_invalid"),
    "zero_width": (dict(width=0), "camera_info_invalid"),
    "binning": (dict(binning=(2, 2)), "camera_info_unsupported"),
    "roi": (dict(roi=(100, 50, 800, 400)), "camera_info_unsupported"),
}


@pytest.mark.parametrize("case", BAD_INFOS)
def test_bad_camera_info(case):
    changes, reason = BAD_INFOS[case]
    with pytest.raises(InputError) as err:
        camera_info_to_intrinsics(camera_info(**changes))
    assert err.value.reason == reason


# ---------------------------------------------------------------------------------------------- tf and time

def transform(translation, xyzw):
    return T[ts.TRANSFORM](translation=T[ts.VECTOR3](*translation), rotation=T[ts.QUATERNION](*xyzw))


def test_transform_uses_ros_quaternion_order():
    s = np.sqrt(0.5)
    matrix = transform_to_matrix(transform((1.0, 2.0, 3.0), (0.0, 0.0, s, s)))  # 90 degrees about +z
    np.testing.assert_allclose(matrix @ [1.0, 0.0, 0.0, 1.0], [1.0, 3.0, 3.0, 1.0], atol=1e-12)
    q = np.array([0.3, -0.2, 0.5, 0.78])
    q /= np.linalg.norm(q)
    matrix = transform_to_matrix(transform((0.0, 0.0, 0.0), q))
    np.testing.assert_allclose(matrix[:3, :3], quat_to_matrix([q[3], q[0], q[1], q[2]]), atol=1e-12)
    nearly_unit = transform_to_matrix(transform((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.004)))
    np.testing.assert_allclose(nearly_unit, np.eye(4), atol=1e-12)


@pytest.mark.parametrize("translation, xyzw", [((0, 0, 0), (0, 0, 0, 0)), ((0, 0, 0), (0, 0, 0, 2)),
                                               ((np.nan, 0, 0), (0, 0, 0, 1)), ((0, 0, 0), (np.inf, 0, 0, 1))])
def test_bad_transforms(translation, xyzw):
    with pytest.raises(InputError) as err:
        transform_to_matrix(transform([float(v) for v in translation], [float(v) for v in xyzw]))
    assert err.value.reason == "transform_invalid"


def test_tf_message():
    def stamped(parent, child, x):
        return T[ts.TRANSFORM_STAMPED](header=header(frame=parent), child_frame_id=child,
                                       transform=transform((x, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)))

    msg = cdr_roundtrip(T[ts.TF_MESSAGE](transforms=[stamped("base_link", "LIDAR_TOP", 1.0),
                                                     stamped("map", "base_link", 2.0),
                                                     stamped("base_link", "LIDAR_TOP", 3.0)]), ts.TF_MESSAGE)
    matrices = tf_message_to_matrices(msg)
    assert set(matrices) == {("base_link", "LIDAR_TOP"), ("map", "base_link")}
    assert matrices[("base_link", "LIDAR_TOP")][0, 3] == 3.0 and matrices[("map", "base_link")][0, 3] == 2.0


@pytest.mark.parametrize("ns, sec, nanosec", [(0, 0, 0), (5_000_000_007, 5, 7), (1_533_151_603_547_590_000,
                                                                                 1_533_151_603, 547_590_000),
                                              (-1, -1, 999_999_999)])
def test_stamps(ns, sec, nanosec):
    stamp = ns_to_stamp(ns, T[ts.TIME])
    assert (stamp.sec, stamp.nanosec) == (sec, nanosec)
    assert stamp_to_ns(cdr_roundtrip(stamp, ts.TIME)) == ns


# ---------------------------------------------------------------------------------------------- detections

def make_detections(n: int = 10) -> Detections:
    rng = np.random.default_rng(3)
    boxes = np.zeros((n, 9), np.float32)
    boxes[:, :3] = rng.uniform(-50, 50, (n, 3))
    boxes[:, 3:6] = rng.uniform(0.3, 12, (n, 3))
    boxes[:, 6] = np.linspace(-7, 7, n)  # beyond [-pi, pi) on purpose
    boxes[:, 7:9] = rng.uniform(-5, 5, (n, 2))
    return Detections(boxes, rng.uniform(0.05, 1.0, n).astype(np.float32), np.arange(n) % len(DETECTION_CLASSES))


def test_detections_round_trip():
    det = make_detections()
    msg = cdr_roundtrip(detections_to_msg(det, header(), rosbags_types()), ts.DETECTION3D_ARRAY)
    assert msg.header.frame_id == "LIDAR_TOP" and stamp_to_ns(msg.header.stamp) == 12_000_000_345
    first = msg.detections[0]
    assert first.id == "" and first.header.frame_id == "LIDAR_TOP"
    assert first.results[0].hypothesis.class_id == DETECTION_CLASSES[int(det.labels[0])]
    w, l, h = det.boxes[0, 3:6]
    assert (first.bbox.size.x, first.bbox.size.y, first.bbox.size.z) == pytest.approx((l, w, h))
    back = msg_to_detections(msg)
    np.testing.assert_allclose(back.boxes[:, :6], det.boxes[:, :6], atol=1e-5)
    np.testing.assert_allclose(wrap_angle(back.boxes[:, 6] - det.boxes[:, 6]), 0.0, atol=1e-5)
    assert np.all((back.boxes[:, 6] >= -np.pi) & (back.boxes[:, 6] < np.pi))
    np.testing.assert_array_equal(back.boxes[:, 7:], 0.0)  # vision_msgs carries no velocity
    np.testing.assert_allclose(back.scores, det.scores, atol=1e-6)
    np.testing.assert_array_equal(back.labels, det.labels)


def test_empty_detections_round_trip():
    msg = cdr_roundtrip(detections_to_msg(Detections(), header(), rosbags_types()), ts.DETECTION3D_ARRAY)
    back = msg_to_detections(msg)
    assert len(back) == 0 and back.boxes.shape == (0, 9)


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: setattr(d.results[0].hypothesis, "class_id", "tram"), "detection_unknown_class"),
    (lambda d: setattr(d, "results", []), "detection_no_result"),
])
def test_bad_detection_messages(mutate, reason):
    msg = detections_to_msg(make_detections(2), header(), rosbags_types())
    mutate(msg.detections[1])
    with pytest.raises(InputError) as err:
        msg_to_detections(msg)
    assert err.value.reason == reason


def test_best_hypothesis_wins():
    msg = detections_to_msg(make_detections(1), header(), rosbags_types())
    result = msg.detections[0].results[0]
    better = dataclasses.replace(result, hypothesis=T[ts.OBJECT_HYPOTHESIS](class_id="bus", score=2.0))
    msg.detections[0].results.append(better)
    assert DETECTION_CLASSES[int(msg_to_detections(msg).labels[0])] == "bus"


def test_markers():
    det = make_detections(3)
    det.scores[0] = 0.904
    msg = cdr_roundtrip(detections_to_markers(det, header(), rosbags_types(), 250_000_000, "detections"),
                        ts.MARKER_ARRAY)
    marker = T[ts.MARKER]
    assert len(msg.markers) == 1 + 2 * len(det)
    assert msg.markers[0].action == marker.DELETEALL
    assert len({m.id for m in msg.markers}) == len(msg.markers)
    assert all(m.ns == "detections" and m.header.frame_id == "LIDAR_TOP" for m in msg.markers)
    cubes = [m for m in msg.markers[1:] if m.type == marker.CUBE]
    texts = [m for m in msg.markers[1:] if m.type == marker.TEXT_VIEW_FACING]
    assert len(cubes) == len(texts) == len(det)
    for i, (cube, text) in enumerate(zip(cubes, texts)):
        name = DETECTION_CLASSES[int(det.labels[i])]
        x, y, z, w, l, h, yaw = det.boxes[i, :7]
        assert cube.action == marker.ADD and (cube.lifetime.sec, cube.lifetime.nanosec) == (0, 250_000_000)
        assert (cube.scale.x, cube.scale.y, cube.scale.z) == pytest.approx((l, w, h))
        assert (cube.pose.position.x, cube.pose.position.y) == pytest.approx((x, y))
        q = cube.pose.orientation
        assert np.arctan2(2 * q.w * q.z, 1 - 2 * q.z * q.z) == pytest.approx(float(wrap_angle(yaw)), abs=1e-6)
        assert (cube.color.r, cube.color.g, cube.color.b) == pytest.approx(CLASS_COLORS[name])
        assert 0 < cube.color.a < 1
        assert text.text == f"{name} {det.scores[i]:.2f}" and text.pose.position.z > z + h / 2
    assert texts[0].text.endswith(" 0.90")


def test_label_info():
    msg = cdr_roundtrip(label_info_msg(header(), rosbags_types(), threshold=0.3), ts.LABEL_INFO)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(DETECTION_CLASSES))
    assert msg.threshold == pytest.approx(0.3)


def check_rclpy_fields(monkeypatch) -> None:
    """Make every imported rclpy message class assert its field types, as under ROS_PYTHON_CHECK_FIELDS=1 (which
    each generated module reads once, on import, hence the patch): a float32 numpy scalar where a Python float is
    due would then fail in the node."""
    for module in list(sys.modules.values()):
        if isinstance(getattr(module, "ros_python_check_fields", None), str):
            monkeypatch.setattr(module, "ros_python_check_fields", "1")


def test_rclpy_point_cloud(monkeypatch):
    """An rclpy PointCloud2 (data an array.array) reads like the rosbags one."""
    serialization = pytest.importorskip("rclpy.serialization")
    pytest.importorskip("sensor_msgs.msg")
    check_rclpy_fields(monkeypatch)
    fields, point_step = LAYOUTS["ouster"]
    values = field_values(fields, 12)
    packed = pack_cloud(fields, values, point_step, height=3, row_pad=4)
    field_cls = import_message_class(ts.POINT_FIELD)
    cloud = import_message_class(ts.POINT_CLOUD2)(
        header=import_message_class(ts.HEADER)(frame_id="lidar"), height=packed.height, width=packed.width,
        fields=[field_cls(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in packed.fields],
        is_bigendian=False, point_step=packed.point_step, row_step=packed.row_step, data=packed.data.tobytes(),
        is_dense=True)
    cloud = serialization.deserialize_message(serialization.serialize_message(cloud), type(cloud))
    assert isinstance(cloud.data, array.array)
    np.testing.assert_array_equal(cloud_to_points(cloud).points, expected_points(values))


def test_rclpy_output_messages(monkeypatch):
    """The builders with rclpy's classes (the node's case) make messages that serialise and read back."""
    serialization = pytest.importorskip("rclpy.serialization")
    pytest.importorskip("vision_msgs.msg")
    types = rclpy_types()
    check_rclpy_fields(monkeypatch)
    ros_header = import_message_class(ts.HEADER)(stamp=ns_to_stamp(12_000_000_345, import_message_class(ts.TIME)),
                                                 frame_id="lidar")
    det = make_detections(4)
    for msg in (detections_to_msg(det, ros_header, types), detections_to_markers(det, ros_header, types, 10**8, "d"),
                label_info_msg(ros_header, types)):
        # float32 fields round on the first trip, and Fast CDR leaves alignment padding uninitialised, so compare
        # the messages of the first and second round trips, never raw bytes.
        once = serialization.deserialize_message(serialization.serialize_message(msg), type(msg))
        assert serialization.deserialize_message(serialization.serialize_message(once), type(msg)) == once
    back = msg_to_detections(detections_to_msg(det, ros_header, types))
    np.testing.assert_allclose(back.boxes[:, :6], det.boxes[:, :6], atol=1e-5)
