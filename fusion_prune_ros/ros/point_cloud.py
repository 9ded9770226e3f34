"""sensor_msgs/PointCloud2 -> a numpy array of x, y, z, intensity, without importing rclpy.

The cloud is read by field name only, so the same code serves rclpy messages in the node and `rosbags` messages
in bag replay and tests. Clouds come from drivers we do not control, so every malformed one raises `InputError`,
whose `reason` is a short stable code the node counts in its diagnostics; nothing here returns a silently wrong
array.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .uint8_data import uint8_view

# sensor_msgs/PointField datatype codes -> numpy type codes (byte order added per message).
POINT_FIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
XYZ = ("x", "y", "z")
INTENSITY = "intensity"


@dataclass(frozen=True)
class CloudConversion:
    """(N, 4) float32 x, y, z, intensity of the finite points, and how many points were dropped as non-finite
    (NaN / inf in x, y, z or intensity: what a driver writes for 'no return' in an organised cloud)."""

    points: np.ndarray
    dropped_nonfinite: int


def cloud_to_points(msg: Any, max_points: int = 1_000_000, allow_empty: bool = False) -> CloudConversion:
    """sensor_msgs/PointCloud2 of any field layout -> x, y, z, intensity (0 where the cloud has no intensity).

    Fields are found by name, with any datatype, offset, padding, row padding, height and byte order; a field with
    count > 1 contributes its element 0. Intensity is returned as stored (drivers differ: 0-255 integers, 0-1 or
    0-255 floats). The bytes are read through one strided structured view, so the only copy is the output.
    `allow_empty` lets the caller accept a cloud with no (finite) points; `max_points` bounds the work done for
    a corrupt width / height before any memory is allocated.
    """
    offsets = _cloud_fields(msg)
    for name in XYZ:
        if name not in offsets:
            raise InputError("cloud_missing_field", f"PointCloud2 has no '{name}' field (fields: {sorted(offsets)})")
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if row_step < width * point_step:
        raise InputError("cloud_bad_row_step", f"PointCloud2 row_step {row_step} < width {width} x point_step "
                                               f"{point_step}")
    data = uint8_view(msg.data)
    if data.size != row_step * height:
        raise InputError("cloud_size_mismatch", f"PointCloud2 data has {data.size} bytes, row_step {row_step} x "
                                                f"height {height} = {row_step * height}")
    count = height * width
    if count > max_points:
        raise InputError("cloud_too_many_points", f"PointCloud2 has {count} points, more than {max_points}")
    points = np.empty((height, width, 4), np.float32)
    if count:
        order = ">" if msg.is_bigendian else "<"
        names = [n for n in (*XYZ, INTENSITY) if n in offsets]
        dtype = np.dtype({"names": names, "formats": [order + offsets[n][1] for n in names],
                          "offsets": [offsets[n][0] for n in names], "itemsize": point_step})
        grid = np.ndarray((height, width), dtype, buffer=data, strides=(row_step, point_step))
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf and is dropped below
            for column, name in enumerate((*XYZ, INTENSITY)):
                points[..., column] = grid[name] if name in offsets else 0.0
    points = points.reshape(-1, 4)
    finite = np.isfinite(points[:, 0])
    for column in range(1, 4):  # column by column: `isfinite(points).all(axis=1)` is ten times slower
        finite &= np.isfinite(points[:, column])
    dropped = int(count - np.count_nonzero(finite))
    if dropped:
        points = np.compress(finite, points, axis=0)  # a tenth of the time of `points[finite]` on (N, 4)
    if len(points) == 0 and not allow_empty:
        detail = f"all {count} points are non-finite" if count else "it has no points"
        raise InputError("cloud_empty", f"PointCloud2 is empty: {detail}")
    return CloudConversion(points, dropped)


def _cloud_fields(msg: Any) -> dict[str, tuple[int, str]]:
    """name -> (offset, numpy type code) of every field, after checking the declared layout is self-consistent:
    known datatypes, unique names, and every field (all `count` elements) inside `point_step`."""
    out: dict[str, tuple[int, str]] = {}
    point_step = int(msg.point_step)
    for field in msg.fields:
        name, offset, datatype, count = str(field.name), int(field.offset), int(field.datatype), int(field.count)
        if name in out:
            raise InputError("cloud_duplicate_field", f"PointCloud2 declares field '{name}' twice")
        if datatype not in POINT_FIELD_DTYPES:
            raise InputError("cloud_bad_datatype", f"PointCloud2 field '{name}' has unknown datatype {datatype}")
        if count < 1:
            raise InputError("cloud_bad_count", f"PointCloud2 field '{name}' has count {count}")
        code = POINT_FIELD_DTYPES[datatype]
        end = offset + np.dtype(code).itemsize * count
        if end > point_step:
            raise InputError("cloud_bad_point_step", f"PointCloud2 field '{name}' ends at byte {end}, past "
                                                     f"point_step {point_step}")
        out[name] = (offset, code)
    return out
