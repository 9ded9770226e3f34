"""One frame through the detector, ROS-free: AssembledFrame -> preprocessing -> the active variant -> Detections.

The node, the bag replay and the benchmarks all call this; it times every stage, so the node's overhead
(everything but the network) is measured the same way everywhere. The frames come from the assembler, with the
images already at the network's size. The camera sampling grid depends only on the calibration (with the ego motion
between each image and the sweep) and on which cameras are present, so it is cached per (calibration, mask).
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..config import DetectorConfig
from ..detections import Detections
from ..model.decode import DecodeConfig, decode
from ..model.pillars import lidar_bev
from ..model.preprocess import camera_grid
from .memory import keep_freed_memory
from .multisweep import multisweep_cloud
from .pool import VariantPool

if TYPE_CHECKING:
    from .assembled import AssembledFrame

GRID_CACHE_SIZE = 16


@dataclass
class FrameResult:
    detections: Detections
    variant: str
    timings_ms: dict = field(default_factory=dict)  # preprocess, network, decode, total


class Pipeline:
    def __init__(self, cfg: DetectorConfig, pool: VariantPool, decode_cfg: DecodeConfig = DecodeConfig()):
        self.cfg = cfg
        self.pool = pool
        self.decode_cfg = decode_cfg
        self._grids: OrderedDict = OrderedDict()
        keep_freed_memory()  # a frame's arrays reuse the last frame's memory instead of faulting in fresh pages
        # The compiled kernels of preprocessing and decoding load (or compile) now rather than on the first frame.
        nothing = np.zeros((1, 4), np.float32)
        lidar_bev(multisweep_cloud(nothing, [(nothing, np.eye(4), 0.0)]), cfg.grid)
        empty_map = np.full((1, 10, cfg.grid.head_cells, cfg.grid.head_cells), -10.0, np.float32)
        decode(empty_map, empty_map, cfg.grid, decode_cfg)
        camera_grid(np.eye(3)[None], np.eye(4)[None], np.ones(1, bool), (1, 1), cfg.grid, cfg.camera)

    def _grid(self, frame: AssembledFrame) -> np.ndarray:
        key = hashlib.sha1(frame.intrinsics.tobytes() + frame.cam_from_lidar.tobytes()
                           + frame.camera_present.tobytes() + str(frame.source_size).encode()).hexdigest()
        if key not in self._grids:
            self._grids[key] = camera_grid(frame.intrinsics, frame.cam_from_lidar, frame.camera_present,
                                           frame.source_size, self.cfg.grid, self.cfg.camera)
            if len(self._grids) > GRID_CACHE_SIZE:
                self._grids.popitem(last=False)
        self._grids.move_to_end(key)
        return self._grids[key]

    def inputs(self, frame: AssembledFrame, modality: str) -> dict:
        """The network inputs a graph of `modality` needs (batch of one)."""
        out = {}
        if modality in ("fused", "lidar"):
            out["lidar_bev"] = lidar_bev(frame.cloud(), self.cfg.grid)[None]
        if modality in ("fused", "camera"):
            out["images"] = frame.image_planes()
            out["cam_grid"] = self._grid(frame)[None]
        if modality == "fused":
            out["presence"] = np.array([[float(frame.lidar_present), float(frame.camera_present.any())]],
                                       np.float32)
        return out

    def run(self, frame: AssembledFrame, variant: str) -> FrameResult:
        modality = self.pool.profile.variant(variant).modality
        t0 = time.perf_counter()
        inputs = self.inputs(frame, modality)
        t1 = time.perf_counter()
        heat, reg = self.pool[variant].run(inputs)
        t2 = time.perf_counter()
        (det,) = decode(heat, reg, self.cfg.grid, self.decode_cfg)
        t3 = time.perf_counter()
        return FrameResult(det, variant, {"preprocess": (t1 - t0) * 1e3, "network": (t2 - t1) * 1e3,
                                          "decode": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3})
