"""The exported graphs' interface: input and output names per modality and the input shapes.

Kept apart from the export and from the torch model, so that what runs the graphs (the backends, the node) needs
neither torch nor onnx.
"""
from __future__ import annotations

import numpy as np

from ..config import DetectorConfig
from ..data.classes import CAMERAS
from .pillars import LIDAR_FEATURES

INPUT_NAMES = {"fused": ["lidar_bev", "images", "cam_grid", "presence"], "lidar": ["lidar_bev"],
               "camera": ["images", "cam_grid"]}
OUTPUT_NAMES = ["heatmap_logits", "regression"]


def input_shapes(cfg: DetectorConfig, batch: int = 1, n_cameras: int = len(CAMERAS)) -> dict:
    """name -> shape of every input of the fused graph (the single-modality graphs take a subset)."""
    g, c = cfg.grid, cfg.camera
    f, z = g.fused_cells, len(g.lift_heights)
    return {"lidar_bev": (batch, LIDAR_FEATURES, g.lidar_cells, g.lidar_cells),
            "images": (batch * n_cameras, 3, c.height, c.width), "cam_grid": (batch, f, f * z, 2),
            "presence": (batch, 2)}


def zero_inputs(cfg: DetectorConfig) -> dict:
    """name -> float32 array of every input, zeros with both sensors present (batch of one)."""
    out = {name: np.zeros(shape, np.float32) for name, shape in input_shapes(cfg).items()}
    out["presence"][:] = 1.0
    return out
