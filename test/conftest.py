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
