"""`fusion-prune train`: caches -> dense detector -> fit -> checkpoint -> official metrics under sensor loss.

One documented command reproduces the shipped model; everything it measured goes into the run folder
(metrics.json, train_log.jsonl, model.pt with its metadata).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import torch
import torch.distributed as dist

from .. import __version__
from ..config import DetectorConfig, to_dict
from ..data.dataset import Augment, DetectionDataset, build_cache
from ..model.checkpoint import save_detector
from ..model.detector import build_detector
from ..model.flops import count_flops
from .fit import fit
from .stages import STAGE_CONDITIONS, STAGE_PRESENCE, check_stage, initialise_fusion, trained_module


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _data_version(dataroot: str) -> dict:
    synth = Path(dataroot) / "synth.json"
    if not synth.is_file():
        return {"dataroot": dataroot}
    s = json.loads(synth.read_text())
    return {"dataroot": dataroot, "generator": s["generator"], "seed": s["config"]["seed"],
            "scenes": len(s["scenes"]), "samples": s["samples"], "synth_config": s["config"]}


def train_detector(cfg: DetectorConfig, out: Path, device: str = "cpu", quiet: bool = False,
                   evaluate: bool = True) -> dict:
    """Train the config's stage (`train.stage`, training/stages.py; the default trains the fused detector from
    scratch) and score it; returns the run's metadata, also in out/metrics.json and out/model.pt."""
    check_stage(cfg.train)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # torchrun's per-machine counts: each process takes its machine's share of the cores, and its own GPU there
    # (set before the process group, whose NCCL collectives run on the current device).
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:  # one process builds the cache, the others wait for it
        build_cache(cfg, cfg.data.train_split, quiet=quiet)
    if world > 1:
        dist.barrier()
    train_cache = build_cache(cfg, cfg.data.train_split, quiet=True)
    t = cfg.train
    augment = Augment(flip=t.flip, drop_lidar=t.drop_lidar, drop_camera=t.drop_camera,
                      drop_single_camera=t.drop_single_camera, photometric=True)
    dataset = DetectionDataset(train_cache, cfg, augment, presence=STAGE_PRESENCE[t.stage], seed=t.seed)
    model = build_detector(cfg)
    initialised = initialise_fusion(model, cfg, t.init_lidar, t.init_camera) if t.init_lidar else None
    summary = fit(trained_module(model, t.stage), dataset, t, out, device=device, quiet=quiet)
    if rank != 0:
        return summary
    model.cpu()
    training = {**summary, "stage": t.stage, "initialised_from": initialised, "world_size": world, "device": device,
                "cpu": platform.processor()}
    meta = {"package": f"fusion_prune_ros {__version__}", "git_commit": _git_commit(), "config": to_dict(cfg),
            "data": _data_version(cfg.data.dataroot), "training": training,
            "command": f"fusion-prune train --config <{cfg.name}.yaml> --out {out}",
            "complexity": count_flops(model, cfg)}
    if evaluate:
        from ..data.nusc import open_nuscenes
        from ..evaluation.metrics import brief_metrics
        from ..model.inference import evaluate_conditions, torch_runner

        nusc = open_nuscenes(cfg.data.dataroot, cfg.data.version)
        val_cache = build_cache(cfg, cfg.data.val_split, quiet=quiet)
        results = evaluate_conditions(torch_runner(model), val_cache, cfg, nusc, cfg.data.val_split,
                                      out / "eval", conditions=STAGE_CONDITIONS[t.stage], quiet=quiet)
        meta["metrics"] = {name: brief_metrics(s) for name, s in results.items()}
    save_detector(model, cfg, out / "model.pt", meta)
    (out / "metrics.json").write_text(json.dumps(meta, indent=1))
    return meta
