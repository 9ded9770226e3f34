"""Training: a tiny end-to-end run with official evaluation, exact resume, and the DistributedDataParallel path."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.data.dataset import Augment, DetectionDataset, build_cache
from fusion_prune_ros.model.checkpoint import load_detector
from fusion_prune_ros.model.detector import build_detector
from fusion_prune_ros.training.fit import FitHooks, fit
from fusion_prune_ros.training.detector import train_detector

SMALL = Path(__file__).parents[1] / "config" / "detector" / "small.yaml"


@pytest.fixture(scope="module")
def cfg(tiny_root):
    c = load_yaml(DetectorConfig, SMALL)
    c.data.dataroot = str(tiny_root)
    c.data.train_split = "mini_train"
    return c


def test_end_to_end_train_and_evaluate(cfg, tmp_path):
    meta = train_detector(cfg, tmp_path / "run", quiet=True)
    for condition in ("fused", "camera_lost", "lidar_lost"):
        m = meta["metrics"][condition]
        assert 0.0 <= m["mAP"] <= 1.0 and 0.0 <= m["NDS"] <= 1.0
    assert meta["complexity"]["fused"]["gflops"] > 0 and meta["data"]["seed"] == 0
    model, loaded_cfg, loaded_meta = load_detector(tmp_path / "run" / "model.pt")
    assert loaded_cfg == cfg and loaded_meta["metrics"] == meta["metrics"]
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == cfg.train.steps - 1


def _dataset(cfg):
    t = cfg.train
    aug = Augment(flip=True, drop_lidar=t.drop_lidar, drop_camera=t.drop_camera, drop_single_camera=0.2,
                  photometric=True)
    return DetectionDataset(build_cache(cfg, "mini_train", quiet=True), cfg, aug, seed=0)


def test_resume_gives_the_uninterrupted_result(cfg, tmp_path):
    train = cfg.train
    train.checkpoint_minutes = 0.0  # checkpoint after every step
    steps = 8
    model_a = build_detector(cfg)
    fit(model_a, _dataset(cfg), train, tmp_path / "a", steps=steps, quiet=True)

    class Stop(Exception):
        pass

    calls = []

    def stop_at_5(model):
        calls.append(1)
        if len(calls) == 5:
            raise Stop

    model_b = build_detector(cfg)
    with pytest.raises(Stop):
        fit(model_b, _dataset(cfg), train, tmp_path / "b", steps=steps, quiet=True, hooks=FitHooks(after_step=stop_at_5))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["step"] == 4
    model_b = build_detector(cfg)
    fit(model_b, _dataset(cfg), train, tmp_path / "b", steps=steps, quiet=True)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_ddp_with_gloo_on_two_processes(cfg, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    config = tmp_path / "small.yaml"
    from fusion_prune_ros.config import save_yaml
    save_yaml(cfg, config)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "fusion_prune_ros.cli", "train",
                          "--config", str(config), "--out", str(tmp_path / "ddp"), "--steps", "6", "--no-eval",
                          "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    state = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)
    assert state["step"] == 6
    meta = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert meta["training"]["world_size"] == 2
