"""`fusion-prune allocation-ablation`: does DM3D's layer-adaptive allocation beat a uniform one at equal FLOPs?

DM3D (Xu et al., 2024) credits its accuracy to the layer-adaptive allocation (docs/pruning.md, "DP vs uniform
allocation at equal FLOPs"). Both allocations here share everything else: DM3D's within-unit
ranking (|w g| of the detection-output objective, the same calibration frames as the sweep) and unstructured masks,
so only the per-unit pruned fractions differ. Uniform prunes every unit by s; the DP gets exactly the FLOPs uniform
keeps and spends them where the distortion curves say they matter (the Hessian curves on the forward-measured
scale, as DM3D's scorer; `scale: hessian` for the raw ones). Each model is scored with the official
metrics on the val split *before* fine-tuning: the allocation's own effect, which fine-tuning would partly repair
for either (the sweep compares methods after equal fine-tuning).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import to_dict
from ..data.dataset import Augment, DetectionDataset, build_cache
from ..model.checkpoint import load_detector
from ..prune.calibration import calibration_batches
from ..prune.granularity import apply_masks, unstructured_masks
from ..prune.importance import Scores
from ..prune.knapsack import by_modality, dp_allocate, sparsity_of, total
from ..prune.methods.hessian_curves import distortion_curves, forward_scaled
from ..prune.unit_flops import budget_used, flops_costs
from ..prune.units import prunable_units
from ..prune.variant import DataOverride


@dataclass
class AllocationAblationConfig:
    sparsities: tuple = (0.5, 0.8)
    calibration_frames: int = 128  # the sweep's calibration set (config/prune/sweep.yaml)
    calibration_batch: int = 8
    steps: int = 100  # ratio grid of the curves, as DM3D's scorer
    scale: str = "forward"  # as DM3D's scorer: curves on the forward-measured scale ("hessian": raw curves)
    scale_ratio: float = 0.5
    scale_batches: int = 2
    conditions: tuple = ("fused",)


def run_allocation_ablation(dense: str | Path, out: str | Path, cfg: AllocationAblationConfig,
                            quiet: bool = False, data: DataOverride | None = None) -> dict:
    from ..data.nusc import open_nuscenes
    from ..model.inference import evaluate_conditions, torch_runner
    from ..evaluation.metrics import brief_metrics

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, dcfg, _ = load_detector(dense)
    (data or DataOverride()).apply(dcfg)
    model.eval()
    start = time.time()
    plain = DetectionDataset(build_cache(dcfg, dcfg.data.train_split, quiet=quiet), dcfg, Augment(), seed=0)
    calibration = calibration_batches(plain, cfg.calibration_frames, cfg.calibration_batch, seed=0)
    units = prunable_units(model)
    c = distortion_curves(model, calibration, dcfg, cfg.steps)
    if cfg.scale == "forward":
        c, _ = forward_scaled(model, calibration[:cfg.scale_batches], c, cfg.scale_ratio)
    weights, grads, kappa, ratios, curves, flops = c.weights, c.grads, c.kappa, c.ratios, c.curves, c.flops
    numels = {u.name: u.numel for u in units}
    costs = flops_costs({n: flops[n] for n in curves}, ratios)
    scoring_s = round(time.time() - start, 1)

    nusc = open_nuscenes(dcfg.data.dataroot, dcfg.data.version)
    val_cache = build_cache(dcfg, dcfg.data.val_split, quiet=quiet)
    rows = []
    for s in cfg.sparsities:
        phi = float(ratios[int(np.argmin(np.abs(ratios - s)))])
        uniform = {n: phi for n in curves}
        allocations = {"uniform": uniform, "dp": dp_allocate(curves, ratios, costs, budget_used(uniform, flops))}
        for name, choice in allocations.items():
            work = copy.deepcopy(model)
            scores = Scores({n: (w * grads[n]).abs() for n, w in weights.items()})
            apply_masks(work, unstructured_masks(work, scores, s, keep={n: 1.0 - p for n, p in choice.items()}))
            metrics = evaluate_conditions(torch_runner(work.eval()), val_cache, dcfg, nusc, dcfg.data.val_split,
                                          out / f"{name}-{round(s * 100)}", conditions=cfg.conditions, quiet=quiet)
            rows.append({"sparsity": s, "allocation": name, "param_sparsity": round(sparsity_of(choice, numels), 4),
                         "flops_kept": round(budget_used(choice, flops) / sum(flops.values()), 4),
                         "predicted_distortion": total(choice, ratios, curves),
                         "sparsity_by_modality": by_modality(units, choice),
                         "metrics": {k: brief_metrics(v) for k, v in metrics.items()}})
    result = {"config": to_dict(cfg), "scoring_seconds": scoring_s, "seconds": round(time.time() - start, 1),
              "kappa": kappa, "rows": rows}
    (out / "allocation_ablation.json").write_text(json.dumps(result, indent=1))
    return result


def ablation_report(result: dict) -> list:
    """The Markdown report: how the two allocations were made and scored, then `format_ablation`'s table."""
    curves = ("Curves: DM3D's Hessian curves on the forward-measured scale (the scorer's default). "
              if result["config"]["scale"] == "forward" else "Curves: DM3D's raw Hessian curves (`--scale hessian`). ")
    return ["# DM3D: DP allocation vs uniform allocation at equal FLOPs (before fine-tuning)", "",
            "Generated by `fusion-prune allocation-ablation` (fusion_prune_ros/analysis/allocation_ablation.py): the "
            "same within-unit ranking (|w g|, DM3D's objective) and calibration frames; uniform prunes every "
            "prunable conv by the target; the DP spends exactly the FLOPs uniform keeps. " + curves
            + "Official metrics on the generated val split, no fine-tuning. "
            f"Curves and gradients: {result['scoring_seconds']:.0f} s; whole run {result['seconds']:.0f} s.", "",
            *format_ablation(result)]


def format_ablation(result: dict) -> list:
    """Markdown lines: one row per sparsity x allocation."""
    conditions = list(result["rows"][0]["metrics"]) if result["rows"] else []
    head = "| prunable sparsity target | allocation | realised | FLOPs kept (prunable convs) | predicted distortion | " \
           + " | ".join(f"mAP {c} | NDS {c}" for c in conditions) + " | camera | LiDAR | fusion | head |"
    lines = [head, "|" + "---|" * (9 + 2 * len(conditions))]
    for r in result["rows"]:
        m = r["metrics"]
        mod = r["sparsity_by_modality"]
        lines.append(f"| {r['sparsity']:.0%} | {r['allocation']} | {r['param_sparsity']:.3f} | {r['flops_kept']:.3f} | "
                     f"{r['predicted_distortion']:.3g} | "
                     + " | ".join(f"{m[c]['mAP']:.4f} | {m[c]['NDS']:.4f}" for c in conditions)
                     + f" | {mod.get('camera', 0):.3f} | {mod.get('lidar', 0):.3f} | {mod.get('fusion', 0):.3f} | "
                       f"{mod.get('head', 0):.3f} |")
    return lines
