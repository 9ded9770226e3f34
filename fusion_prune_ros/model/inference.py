"""Run a detector over a cached split and score it under each modality condition with the official metric."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from ..config import DetectorConfig
from ..data.dataset import DetectionDataset, FrameCache, collate
from .decode import DecodeConfig, decode

# Evaluation conditions: name -> presence flags (LiDAR, camera) fed to the fused network.
CONDITIONS = {"fused": (1.0, 1.0), "camera_lost": (1.0, 0.0), "lidar_lost": (0.0, 1.0)}


def torch_runner(model: torch.nn.Module) -> Callable:
    """batch -> (heatmap logits, regression) as numpy arrays for the fused graph (presence from the batch)."""
    def run(batch):
        with torch.no_grad():
            heat, reg = model(batch["lidar_bev"], batch["images"], batch["cam_grid"], batch["presence"])
        return heat.cpu().numpy(), reg.cpu().numpy()
    return run


def predict(runner: Callable, cache: FrameCache, cfg: DetectorConfig, presence=(1.0, 1.0), batch_size: int = 4,
            decode_cfg: DecodeConfig = DecodeConfig(), quiet: bool = False, limit: int | None = None) -> dict:
    """{sample_token: Detections} for every frame of the cache (or its first `limit`)."""
    dataset = DetectionDataset(cache, cfg, presence=presence, targets=False)
    indices = list(range(len(dataset) if limit is None else min(limit, len(dataset))))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                         collate_fn=collate)
    out = {}
    for batch in tqdm(loader, desc=f"predict {presence}", disable=quiet, mininterval=5.0):
        heat, reg = runner(batch)
        for i, det in zip(batch["index"].tolist(), decode(heat, reg, cfg.grid, decode_cfg)):
            out[cache.tokens[i]] = det
    return out


def evaluate_conditions(runner: Callable, cache: FrameCache, cfg: DetectorConfig, nusc, split: str,
                        out_dir: str | Path, conditions=tuple(CONDITIONS), quiet: bool = False) -> dict:
    """{condition: metrics summary} through the official DetectionEval."""
    from ..evaluation.metrics import evaluate_predictions

    results = {}
    for name in conditions:
        presence = CONDITIONS[name]
        preds = predict(runner, cache, cfg, presence, quiet=quiet)
        results[name] = evaluate_predictions(nusc, preds, split, Path(out_dir) / name,
                                             use_camera=presence[1] > 0, use_lidar=presence[0] > 0)
    return results
