"""Shared fixtures: one tiny generated nuScenes-format set per test session (both splits, day and night)."""
import os

import pytest

# Every ROS process started by the tests keeps DDS discovery on this machine (see the README).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

TINY = dict(train_scenes=1, val_scenes=1, scene_seconds=2.0, image_width=160, image_height=90,
            lidar_azimuth_steps=360)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    from fusion_prune_ros.data.synth.generate import SynthConfig, generate

    root = tmp_path_factory.mktemp("nusc") / "mini"
    generate(SynthConfig(**TINY), root, quiet=True)
    return root


@pytest.fixture(scope="session")
def tiny_nusc(tiny_root):
    from fusion_prune_ros.data.nusc import open_nuscenes

    return open_nuscenes(tiny_root, "v1.0-mini")


@pytest.fixture(scope="session")
def shipped(tiny_root, tiny_nusc, tmp_path_factory):
    """A briefly trained small model shipped with a dense profile (fused / LiDAR-only / camera-only graphs), and a
    bag of the validation scene: what the replay and the real-ROS tests run."""
    from pathlib import Path

    from fusion_prune_ros.bag.to_bag import convert
    from fusion_prune_ros.config import DetectorConfig, load_yaml
    from fusion_prune_ros.export.ship import ship
    from fusion_prune_ros.training.detector import train_detector

    tmp = tmp_path_factory.mktemp("shipped")
    cfg = load_yaml(DetectorConfig, Path(__file__).parents[1] / "config" / "detector" / "small.yaml")
    cfg.data.dataroot = str(tiny_root)
    cfg.train.steps = 10
    train_detector(cfg, tmp / "run", quiet=True)
    ship(tmp / "run" / "model.pt", tmp / "models", "dense", tmp / "profiles" / "dense.yaml", iterations=3)
    convert(tiny_nusc, ["scene-0103"], tmp / "val_bag", progress=False)  # the mini_val scene
    return tmp
