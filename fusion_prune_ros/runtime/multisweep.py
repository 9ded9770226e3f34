"""The multi-sweep LiDAR cloud of a frame, as the devkit's `LidarPointCloud.from_file_multisweep` builds it: every
sweep without the points within 1 m of the sensor, the earlier sweeps moved into the key sweep's frame, the time
lag as a fifth column.

A sweep serves the next `n_sweeps - 1` frames, so it is filtered once, when it arrives (`remove_close`), and each
frame only moves the kept points: one compiled pass per sweep writes them, transformed and with their lag, straight
into the frame's cloud. The transform is applied in float64 and rounded to float32 afterwards, as the devkit does.
The assembler hands the pipeline the sweeps unmerged (`MultiSweep`): a frame whose graph reads no LiDAR never merges
them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

NEAR_SENSOR_M = 1.0  # the devkit's remove_close radius for multi-sweep clouds


def remove_close(points: np.ndarray) -> np.ndarray:
    """(N, 4) x, y, z, intensity -> the points outside |x| < 1 m and |y| < 1 m (the devkit's
    LidarPointCloud.remove_close), as a new contiguous (M, 4) float32 array. The test runs in the points' own
    precision, as the devkit's does."""
    pts = np.ascontiguousarray(points)
    if pts.dtype != np.float32 and pts.dtype != np.float64:
        pts = pts.astype(np.float32)
    return _far_points(pts, NEAR_SENSOR_M)


@njit(cache=True, nogil=True)
def _far_points(pts, radius):
    keep = np.empty(pts.shape[0], np.bool_)
    for i in range(pts.shape[0]):
        keep[i] = not (abs(pts[i, 0]) < radius and abs(pts[i, 1]) < radius)
    out = np.empty((keep.sum(), 4), np.float32)
    k = 0
    for i in range(pts.shape[0]):
        if keep[i]:
            for j in range(4):
                out[k, j] = pts[i, j]
            k += 1
    return out


def multisweep_cloud(key_sweep: np.ndarray, earlier: list) -> np.ndarray:
    """The frame's (N, 5) float32 cloud: the key sweep's points (lag 0), then each earlier sweep's in the order given.

    key_sweep: (N, 4) float32, already through `remove_close`. earlier: [(points (M, 4) float32 through
    `remove_close`, 4x4 key LiDAR <- that sweep's LiDAR, time lag in seconds)].
    """
    total = len(key_sweep) + sum(len(points) for points, _, _ in earlier)
    out = np.empty((total, 5), np.float32)
    n = len(key_sweep)
    out[:n, :4] = key_sweep
    out[:n, 4] = 0.0
    for points, key_from_sweep, lag in earlier:
        _moved_into(out, n, points, np.ascontiguousarray(key_from_sweep, np.float64), np.float32(lag))
        n += len(points)
    return out


@dataclass(frozen=True)
class MultiSweep:
    """A LiDAR frame's sweeps, unmerged: the key sweep and the earlier ones as `multisweep_cloud` takes them."""

    key: np.ndarray  # (N, 4) float32, through `remove_close`
    earlier: tuple  # ((points (M, 4) float32 through `remove_close`, 4x4 key LiDAR <- sweep LiDAR, lag s), ...)

    def cloud(self) -> np.ndarray:
        return multisweep_cloud(self.key, list(self.earlier))


@njit(cache=True, nogil=True)
def _moved_into(out, start, pts, t, lag):
    """out[start + i] = (t applied to point i in float64, rounded to float32; its intensity; lag)."""
    for i in range(pts.shape[0]):
        x, y, z = np.float64(pts[i, 0]), np.float64(pts[i, 1]), np.float64(pts[i, 2])
        row = start + i
        for j in range(3):
            out[row, j] = np.float32(x * t[j, 0] + y * t[j, 1] + z * t[j, 2] + t[j, 3])
        out[row, 3] = pts[i, 3]
        out[row, 4] = lag
