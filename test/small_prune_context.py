"""The pruning tests' shared context: the small detector (seeded), synthetic training items with targets from random
boxes, and two calibration batches. No data set is read, so the framework's tests run without one."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.data.dataset import collate
from fusion_prune_ros.model.detector import build_detector
from fusion_prune_ros.model.flops import example_inputs
from fusion_prune_ros.model.targets import build_targets
from fusion_prune_ros.prune.calibration import PruneContext

SMALL = Path(__file__).parents[1] / "config" / "detector" / "small.yaml"


def small_prune_context() -> PruneContext:
    cfg = load_yaml(DetectorConfig, SMALL)
    lidar, images, grid, _ = example_inputs(cfg)["fused"]
    rng = np.random.default_rng(0)
    items = []
    for i in range(8):
        boxes = np.column_stack([rng.uniform(-40, 40, (3, 2)), np.zeros(3), np.full(3, 2.0), np.full(3, 4.5),
                                 np.full(3, 1.6), rng.uniform(-np.pi, np.pi, 3), np.zeros((3, 2))])
        heatmap, regression, reg_mask, vel_mask = build_targets(boxes, rng.integers(0, 10, 3), cfg.grid)
        items.append({"index": i, "lidar_bev": rng.standard_normal(lidar.shape[1:]).astype(np.float32),
                      "images": rng.standard_normal(images.shape).astype(np.float32),
                      "cam_grid": rng.uniform(-1, 1, grid.shape[1:]).astype(np.float32),
                      "presence": np.ones(2, np.float32), "heatmap": heatmap, "regression": regression,
                      "reg_mask": reg_mask, "vel_mask": vel_mask})
    torch.manual_seed(0)
    return PruneContext(build_detector(cfg).eval(), cfg, [collate(items[:2]), collate(items[2:4])], items, seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """The small detector's convolutions are tiny: one thread runs them fastest and does not fight a busy machine
    for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
