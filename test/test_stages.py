"""Staged training (training/stages.py): a LiDAR-only and a camera-only stage, then the fused detector started
from both, each a resumable run of its own config."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.model.checkpoint import load_detector
from fusion_prune_ros.model.detector import build_detector
from fusion_prune_ros.training.detector import train_detector
from fusion_prune_ros.training.stages import check_stage, initialise_fusion

SMALL = Path(__file__).parents[1] / "config" / "detector" / "small.yaml"


def _stage(tiny_root, stage: str, steps: int = 3, **train) -> DetectorConfig:
    c = load_yaml(DetectorConfig, SMALL)
    c.data.dataroot, c.data.train_split = str(tiny_root), "mini_train"
    c.train.steps, c.train.stage = steps, stage
    c.train.drop_lidar = c.train.drop_camera = 0.0
    for key, value in train.items():
        setattr(c.train, key, value)
    return c


@pytest.fixture(scope="module")
def stages(tiny_root, tmp_path_factory):
    """The two single-modality stages, trained for a few steps; the LiDAR one scored."""
    tmp = tmp_path_factory.mktemp("stages")
    lidar = train_detector(_stage(tiny_root, "lidar"), tmp / "lidar", quiet=True)
    train_detector(_stage(tiny_root, "camera"), tmp / "camera", quiet=True, evaluate=False)
    return tmp, lidar


def test_a_single_modality_stage_trains_its_branch_only_and_is_scored_without_the_other_sensor(stages, tiny_root):
    tmp, lidar_meta = stages
    assert set(lidar_meta["metrics"]) == {"camera_lost"} and lidar_meta["training"]["stage"] == "lidar"
    untrained = build_detector(_stage(tiny_root, "lidar")).state_dict()  # the same seed
    for stage, own, other in (("lidar", "lidar.", "camera."), ("camera", "camera.", "lidar.")):
        trained = load_detector(tmp / stage / "model.pt")[0].state_dict()
        assert any(not torch.equal(v, untrained[k]) for k, v in trained.items() if k.startswith(own))
        assert all(torch.equal(v, untrained[k]) for k, v in trained.items() if k.startswith(other)), stage


def test_the_fused_stage_starts_from_both_stages(stages, tiny_root):
    tmp, _ = stages
    cfg = _stage(tiny_root, "fused", init_lidar=str(tmp / "lidar" / "model.pt"),
                 init_camera=str(tmp / "camera" / "model.pt"))
    model = build_detector(cfg)
    initialise_fusion(model, cfg, cfg.train.init_lidar, cfg.train.init_camera)
    lidar = load_detector(tmp / "lidar" / "model.pt")[0].state_dict()
    camera = load_detector(tmp / "camera" / "model.pt")[0].state_dict()
    split = cfg.model.lidar_bev
    for k, v in model.state_dict().items():
        if k == "fuser.conv.0.weight":
            assert torch.equal(v[:, :split], lidar[k][:, :split]) and torch.equal(v[:, split:], camera[k][:, split:])
        else:
            assert torch.equal(v, (camera if k.startswith("camera.") else lidar)[k]), k
    meta = train_detector(cfg, tmp / "fused", quiet=True, evaluate=False)
    assert meta["training"]["initialised_from"]["lidar"] == cfg.train.init_lidar
    # Swapped sources are refused: each must come from the stage it is used for.
    swapped = copy.deepcopy(cfg)
    swapped.train.init_lidar, swapped.train.init_camera = cfg.train.init_camera, cfg.train.init_lidar
    with pytest.raises(UserError, match="trained as stage 'camera', not 'lidar'"):
        initialise_fusion(build_detector(swapped), swapped, swapped.train.init_lidar, swapped.train.init_camera)


@pytest.mark.parametrize("train, message", [
    ({"stage": "radar"}, "expected one of lidar, camera, fused"),
    ({"stage": "lidar", "drop_lidar": 0.1}, "set train.drop_lidar to 0"),
    ({"stage": "camera", "drop_camera": 0.1}, "set train.drop_camera to 0"),
    ({"stage": "lidar", "init_lidar": "x.pt"}, "start the fused stage"),
    ({"stage": "fused", "init_lidar": "x.pt"}, "give train.init_lidar and train.init_camera"),
])
def test_stage_settings_that_cannot_work_are_one_line_errors(tiny_root, train, message):
    cfg = _stage(tiny_root, "fused")
    for key, value in train.items():
        setattr(cfg.train, key, value)
    with pytest.raises(UserError, match=message):
        check_stage(cfg.train)


def test_the_v2_recipe_is_three_stages_of_one_architecture():
    from fusion_prune_ros.config import to_dict

    folder = SMALL.parent / "v2"
    stages = {s: load_yaml(DetectorConfig, folder / f"{s}.yaml") for s in ("lidar", "camera", "fused")}
    for name, cfg in stages.items():
        assert cfg.train.stage == name
        check_stage(cfg.train)
        assert to_dict(cfg.model) == to_dict(stages["fused"].model) and cfg.grid == stages["fused"].grid
    assert stages["fused"].train.init_lidar and stages["fused"].train.init_camera
    widths = [w for name in ("lidar_channels", "camera_out", "camera_bev", "lidar_bev", "fused", "bev_channels",
                             "head_channels") for w in np.atleast_1d(getattr(stages["fused"].model, name))]
    assert all(w % 16 == 0 for w in widths)


def test_a_single_modality_stage_reads_only_its_modality(tiny_root):
    """A stage's frames carry its modality as the fused training reads it and zeros for the other (not read)."""
    from fusion_prune_ros.data.dataset import Augment, DetectionDataset, build_cache

    cfg = _stage(tiny_root, "fused")
    cache = build_cache(cfg, "mini_train", quiet=True)
    aug = Augment(flip=True, photometric=True)
    full = DetectionDataset(cache, cfg, aug, seed=0)[(3, 1)]
    lidar = DetectionDataset(cache, cfg, aug, presence=(1.0, 0.0), seed=0)[(3, 1)]
    camera = DetectionDataset(cache, cfg, aug, presence=(0.0, 1.0), seed=0)[(3, 1)]
    np.testing.assert_array_equal(lidar["lidar_bev"], full["lidar_bev"])
    np.testing.assert_array_equal(camera["images"], full["images"])
    np.testing.assert_array_equal(camera["cam_grid"], full["cam_grid"])
    for item, absent in ((lidar, ("images", "cam_grid")), (camera, ("lidar_bev",))):
        for key in absent:
            assert item[key].shape == full[key].shape and item[key].dtype == full[key].dtype and not item[key].any()
        np.testing.assert_array_equal(item["heatmap"], full["heatmap"])
