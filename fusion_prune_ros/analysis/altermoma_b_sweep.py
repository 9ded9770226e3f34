"""`fusion-prune altermoma-b-sweep`: how AlterMOMA's scores depend on B, the number of reactivation steps.

AlterMOMA's paper (Sun et al., NeurIPS 2024) does not report B, so its effect is measured here (docs/pruning.md,
"The B sweep"). One reactivation run per masked modality gives
theta_B for every B (`reactivation_trajectory`); for each B this reports what the sweep's variants are made of:
the share of each module marked redundant (negative AlterEva), the share of each module that one global threshold
at the target sparsity removes (the paper's unstructured rule), how far the ranking is from the largest B's, and
the channel-level reactivation the paper describes. B = 0 is DeCI alone (theta_B = theta0, so ReRI = 0).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.dataset import Augment, DetectionDataset, build_cache
from ..model.checkpoint import load_detector
from ..prune.calibration import calibration_batches
from ..prune.gradients import weight_gradients
from ..prune.methods.alter_eva import MODULE_OF_MODALITY, Stage, alter_eva
from ..prune.methods.altermoma_stats import channels_reactivated, eva_stats, spearman
from ..prune.methods.reactivation import reactivation_trajectory
from ..prune.units import prunable_units, weights_of
from ..prune.variant import DataOverride

MODULES = ("camera", "lidar", "fusion")


@dataclass
class BSweepConfig:
    steps: tuple = (0, 25, 50, 100, 200)  # the sweep's variants use B = 100
    reactivation_lr: float = 1e-4
    batch_size: int = 4
    calibration_frames: int = 128  # the sweep's calibration set (config/prune/sweep.yaml)
    calibration_batch: int = 8
    sparsity: float = 0.8
    seed: int = 0


def pruned_by_module(scores: dict, modules: dict, sparsity: float) -> dict:
    """module -> the share of its weights below one global threshold that removes `sparsity` of all weights."""
    flat = torch.cat([scores[n].flatten() for n in modules])
    k = int(round(sparsity * flat.numel()))
    threshold = torch.kthvalue(flat, k).values if k > 0 else -float("inf")
    out = {}
    for module in MODULES:
        names = [n for n, m in modules.items() if m == module]
        if names:
            below = sum(int((scores[n] <= threshold).sum()) for n in names)
            out[module] = round(below / sum(scores[n].numel() for n in names), 4)
    return out


def run_b_sweep(dense: str | Path, cfg: BSweepConfig, quiet: bool = False, data: DataOverride | None = None) -> dict:
    model, dcfg, _ = load_detector(dense)
    (data or DataOverride()).apply(dcfg)
    model.eval()
    start = time.time()
    cache = build_cache(dcfg, dcfg.data.train_split, quiet=quiet)
    calibration = calibration_batches(DetectionDataset(cache, dcfg, Augment(), seed=0), cfg.calibration_frames,
                                      cfg.calibration_batch, seed=0)
    # the scorer's reactivation data (prune/variant.py): augmented, no random modality dropout
    scoring_set = DetectionDataset(cache, dcfg, Augment(flip=dcfg.train.flip, photometric=True), seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    theta0 = weights_of(model)
    grads = weight_gradients(model, calibration)
    deci = {k: (w * grads[k]).abs() for k, w in theta0.items()}
    units = prunable_units(model)
    modules = {u.name: MODULE_OF_MODALITY[u.modality] for u in units}
    stages = {}  # masked modality -> B -> Stage
    for modality in ("lidar", "camera"):
        g0 = weight_gradients(model, calibration, modality)
        before = {k: w * g0[k] for k, w in theta0.items()}
        stages[modality] = {}
        trajectory = reactivation_trajectory(model, scoring_set, modality, cfg.steps, cfg.reactivation_lr,
                                             cfg.batch_size, cfg.seed)
        for b, work in tqdm(trajectory, total=len(set(cfg.steps)), desc=f"{modality} masked", disable=quiet):
            g_b = weight_gradients(work, calibration, modality)
            stages[modality][b] = Stage(before, {k: w * g_b[k] for k, w in theta0.items()}, time.time() - start)
            # (seconds: since the sweep started; the one run serves every B)
    largest = max(cfg.steps)
    evas = {b: alter_eva(deci, stages["lidar"][b].reri(), stages["camera"][b].reri(), modules, 1.0, 1.0)
            for b in sorted(set(cfg.steps))}
    flat = lambda d: torch.cat([d[n].flatten() for n in modules])  # noqa: E731
    rows = []
    for b, eva in evas.items():
        stats = eva_stats(deci, stages["lidar"][b].reri(), stages["camera"][b].reri(), eva, modules)
        rows.append({
            "B": b, "negative": {m: s["negative_fraction"] for m, s in stats.items()},
            "pruned": pruned_by_module(eva, modules, cfg.sparsity),
            "spearman_vs_largest": round(spearman(flat(eva), flat(evas[largest])), 4),
            "lidar_channels": channels_reactivated(deci, stages["camera"][b], [u for u in units if u.modality == "lidar"]),
            "camera_channels": channels_reactivated(deci, stages["lidar"][b], [u for u in units if u.modality == "camera"]),
        })
    return {"rows": rows, "largest": largest, "sparsity": cfg.sparsity, "seconds": round(time.time() - start, 1),
            "reactivation_lr": cfg.reactivation_lr, "batch_size": cfg.batch_size, "steps": list(cfg.steps)}


def b_sweep_report(result: dict, dense: str) -> list:
    """The Markdown report: the command and how B was varied, then `format_b_sweep`'s table."""
    steps = " ".join(map(str, result["steps"]))
    return ["# AlterMOMA: the B sweep (reactivation steps)", "",
            f"Generated by `fusion-prune altermoma-b-sweep --dense {dense} --steps {steps} --sparsity "
            f"{result['sparsity']}` (fusion_prune_ros/analysis/altermoma_b_sweep.py): one reactivation run per masked "
            f"modality (Adam, lr {result['reactivation_lr']:g}, batch {result['batch_size']}, the scorer's data and "
            "seed), theta_B taken at every B; AlterEva with alpha = beta = 1, per-module normalisation, as the sweep's "
            "variants (B = 100). Channels reactivated: of the channels in the bottom half of their unit by DeCI, those "
            "in the top quarter by |theta0 g| with the other modality masked at theta_B. "
            f"{result['seconds']:.0f} s.", "", *format_b_sweep(result)]


def format_b_sweep(result: dict) -> list:
    pct = lambda d: " / ".join(f"{d.get(m, 0.0):.0%}" for m in MODULES)  # noqa: E731
    lines = [f"| B | negative AlterEva (camera / LiDAR / fusion) | removed at {result['sparsity']:.0%} by the global "
             f"threshold (camera / LiDAR / fusion) | Spearman with B = {result['largest']} | LiDAR channels "
             "reactivated (camera masked) | camera channels reactivated (LiDAR masked) |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lc, cc = r["lidar_channels"], r["camera_channels"]
        lines.append(f"| {r['B']} | {pct(r['negative'])} | {pct(r['pruned'])} | {r['spearman_vs_largest']:.2f} | "
                     f"{lc['rose_to_top_quarter']} of {lc['bottom_half_channels']} | "
                     f"{cc['rose_to_top_quarter']} of {cc['bottom_half_channels']} |")
    return lines
