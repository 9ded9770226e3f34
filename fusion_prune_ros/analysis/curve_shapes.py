"""`fusion-prune curve-shapes`: do the layer-adaptive allocators' curves price what channel pruning removes?

MMPrune4U and DM3D measure a unit's distortion curve by zeroing its lowest-magnitude *weights*; a channel-pruned
variant loses whole output channels instead. This measures both curves for every prunable unit of a model, on the
same calibration frames as the sweep, with only that unit pruned: the weakest weights (|w|) at fraction phi, and
the weakest output channels (L1) that the framework removes for the same parameter fraction (`channel_zeroing`).
If the two rank the units alike, the allocation does not care which is used; where they disagree, the weight
curves send the DP to prune units that are cheap to thin but expensive to narrow. With `--variants`, it also
checks the DP's other assumption, that single-unit distortions add up, on whole allocations (docs/pruning.md,
"Measured on our detector: why MMPrune4U collapses at 90 %").
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.dataset import Augment, DetectionDataset, build_cache
from ..export.manifest import Manifest
from ..model.checkpoint import load_detector
from ..prune.calibration import calibration_batches
from ..prune.channel_zeroing import channel_fraction, channels_zeroed, output_channel_norms, weakest_channels_zeroed
from ..prune.methods.altermoma_stats import spearman
from ..prune.output_distortion import dense_references, output_distortion, zeroed
from ..prune.units import prunable_units
from ..prune.variant import DataOverride


@dataclass
class CurveShapesConfig:
    grid: tuple = (0.2, 0.4, 0.6, 0.8, 0.9, 0.95)  # MMPrune4U's grid (without 0, where both are 0)
    calibration_frames: int = 128  # the sweep's calibration set (config/prune/sweep.yaml)
    calibration_batch: int = 8
    batches: int = 2  # MMPrune4U's curve_batches


def measure_curve_shapes(model: torch.nn.Module, batches: list, grid: tuple, quiet: bool = False) -> dict:
    """unit name -> {"weights": [D at each phi], "channels": [D at each phi]}; D = E||y - y'||^2 per frame of the
    head's outputs (`output_distortion`: heatmaps everywhere, regression at the dense object centres), only that
    unit pruned, eval mode."""
    model.eval()
    result = {}
    with torch.no_grad():
        distortion = partial(output_distortion, model, batches, dense_references(model, batches))
        for u in tqdm(prunable_units(model), desc="curve shapes", disable=quiet):
            order = torch.argsort(u.weight.detach().abs().flatten(), stable=True)
            curves = {"weights": [], "channels": []}
            for phi in grid:
                with zeroed(u, order, phi):
                    curves["weights"].append(distortion())
                with channels_zeroed(model, u, phi):
                    curves["channels"].append(distortion())
            result[u.name] = curves
    return result


def allocation_distortion(model: torch.nn.Module, batches: list, widths: dict) -> dict:
    """The distortion of a channel allocation (unit name -> channels kept) on the dense weights: every unit cut
    alone, summed (what a DP over single-unit curves minimises, assuming additivity), and all units cut together
    (what the network then computes, before fine-tuning)."""
    model.eval()
    units = {u.name: u for u in prunable_units(model)}
    cut = {n: output_channel_norms(units[n]).numel() - k for n, k in widths.items() if n in units}
    with torch.no_grad():
        distortion = partial(output_distortion, model, batches, dense_references(model, batches))
        single = {}
        for n, c in cut.items():
            if c > 0:
                with weakest_channels_zeroed(model, units[n], c):
                    single[n] = distortion()
        with ExitStack() as stack:
            for n, c in cut.items():
                stack.enter_context(weakest_channels_zeroed(model, units[n], c))
            joint = distortion()
    by_modality = {m: sum(v for n, v in single.items() if units[n].modality == m)
                   for m in sorted({u.modality for u in units.values()})}
    return {"summed": sum(single.values()), "joint": joint, "summed_by_modality": by_modality}


def run_curve_shapes(dense: str | Path, cfg: CurveShapesConfig, variants: tuple = (), quiet: bool = False,
                     data: DataOverride | None = None) -> dict:
    """The curve comparison on `dense`, and `allocation_distortion` of each channel-pruned variant folder given
    (its kept widths from manifest.json, cut from the dense weights) beside its NDS after fine-tuning."""
    model, dcfg, _ = load_detector(dense)
    (data or DataOverride()).apply(dcfg)
    start = time.time()
    plain = DetectionDataset(build_cache(dcfg, dcfg.data.train_split, quiet=quiet), dcfg, Augment(), seed=0)
    batches = calibration_batches(plain, cfg.calibration_frames, cfg.calibration_batch, seed=0)[:cfg.batches]
    curves = measure_curve_shapes(model, batches, cfg.grid, quiet)
    allocations = {}
    for folder in map(Path, variants):
        manifest = Manifest.read(folder)
        allocations[str(folder)] = {**allocation_distortion(model, batches, manifest.scoring["structure"]["channels"]),
                                    "NDS": manifest.nds("fused"),
                                    "lidar_pruned": manifest.sparsity_realised["per_modality"].get("lidar", 0.0)}
    return {"grid": list(cfg.grid), "curves": curves, "allocations": allocations,
            "seconds": round(time.time() - start, 1), "frames": sum(len(b["presence"]) for b in batches)}


def curve_shapes_report(result: dict, dense: str, variants: tuple = ()) -> list:
    """The Markdown report: what was measured and the command, then `format_curve_shapes`'s tables."""
    command = " ".join(["fusion-prune curve-shapes --dense", dense, *(["--variants", *variants] if variants else [])])
    return ["# Distortion curves: weakest weights vs weakest whole channels", "",
            "Generated by `fusion-prune curve-shapes` (fusion_prune_ros/analysis/curve_shapes.py) on "
            f"`{dense}`: each prunable unit pruned alone, the output distortion of the head (sigmoid heatmaps "
            f"everywhere and regression maps at the dense model's object centres, squared error per frame) on {result['frames']} calibration frames of the sweep's "
            "set. Weights: the fraction phi of the unit's smallest |w| zeroed (the curves MMPrune4U and DM3D "
            "allocate with). Channels: the weakest output channels (L1) that channel pruning removes for the same "
            "parameter fraction, zeroed with their BatchNorm scale and shift (what Torch-Pruning's removal "
            f"computes). {result['seconds']:.0f} s.", "", f"`{command}`", "", *format_curve_shapes(result)]


def format_curve_shapes(result: dict) -> list:
    """Markdown: per phi, the rank agreement of the two kinds of curve across units and the units each ranks
    costliest; then every unit's two curves."""
    grid, curves = result["grid"], result["curves"]
    names = list(curves)
    lines = ["| phi | channels removed | Spearman across units | costliest 3, weight curves | costliest 3, channel curves |",
             "|---|---|---|---|---|"]
    for k, phi in enumerate(grid):
        w = torch.tensor([curves[n]["weights"][k] for n in names])
        c = torch.tensor([curves[n]["channels"][k] for n in names])
        top = lambda v: ", ".join(names[i] for i in v.argsort(descending=True)[:3].tolist())  # noqa: E731
        lines.append(f"| {phi:.2f} | {channel_fraction(phi):.0%} | {spearman(w, c):.2f} | {top(w)} | {top(c)} |")
    if result.get("allocations"):
        lines += ["", "Whole allocations (channel widths of each variant, cut from the dense weights by L1, before "
                  "fine-tuning) vs the variant's NDS after fine-tuning:", "",
                  "| variant | summed single-unit D | of which LiDAR units | joint D | joint / summed | LiDAR pruned "
                  "| NDS after fine-tuning |", "|---|---|---|---|---|---|---|"]
        for name, a in result["allocations"].items():
            lines.append(f"| {name} | {a['summed']:.4g} | {a['summed_by_modality'].get('lidar', 0.0):.4g} | "
                         f"{a['joint']:.4g} | {a['joint'] / a['summed']:.2f} | {a['lidar_pruned']:.0%} | "
                         f"{a['NDS']:.4f} |")
    lines += ["", "D per unit (weights / channels) at each phi:", "",
              "| unit | " + " | ".join(f"{phi:.2f}" for phi in grid) + " |", "|---|" + "---|" * len(grid)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{a:.3g} / {b:.3g}" for a, b in
                                              zip(curves[n]["weights"], curves[n]["channels"])) + " |")
    return lines
