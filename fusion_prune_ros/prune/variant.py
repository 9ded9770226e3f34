"""`fusion-prune prune`: one method x sparsity x granularity -> a fine-tuned, evaluated, exported variant.

Every method gets the same calibration frames, the same fine-tuning budget (optimiser steps, learning rate,
schedule, data and augmentation) and the same evaluation, so their differences are the methods' own. A variant
folder holds the checkpoint, the three ONNX graphs and `manifest.json` (method, sparsity target and realised, per
modality and per layer, parameters, FLOPs, official metrics fused / camera lost / LiDAR lost, ONNX Runtime CPU
latency, scoring and fine-tuning cost, file hashes). A finished variant (manifest present) is never redone; an
interrupted fine-tune resumes from its checkpoint.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..config import DetectorConfig, load_yaml, to_dict
from ..data.dataset import Augment, DetectionDataset, build_cache
from ..data.nusc import require_dataset
from ..errors import UserError
from ..export.manifest import GRAPHS, Manifest
from ..export.onnx_export import INPUT_NAMES, export_all, sha256
from ..export.shared_weights import WEIGHTS_FILE
from ..model.checkpoint import load_detector, save_detector
from ..model.flops import count_flops, example_inputs
from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from ..runtime.latency_key import ORT_CPU_2T
from ..runtime.timing import time_calls
from ..training.fit import FitHooks, fit, flush_denormals
from .calibration import PruneContext, calibration_batches
from .framework_version import FRAMEWORK_VERSION
from .granularity import GRANULARITIES, apply_masks, channel_prune, nm24_masks, unstructured_masks
from .method import Plan
from .registry import build_method, check_method, check_target
from .target import PARAMS, TIME, Target
from .units import prunable_units
from .variant_claim import CLAIM, claimed


@dataclass
class PruneConfig:
    """The shared budget of a comparison (config/prune/*.yaml)."""

    calibration_frames: int = 128
    calibration_batch: int = 8
    finetune_steps: int = 300
    finetune_lr: float = 2e-4
    finetune_batch: int = 8
    # Channel widths in multiples of this (0: none). 8 by default: on the 2-core CPU a DM3D 80 % variant with widths
    # such as 2, 3 and 11 fine-tuned at 1 step in 2 minutes (oneDNN's 1x1-conv weight gradient), rounded to 8 at
    # 0.75 s per step; 8 is also the tensor-core and AVX2 width.
    round_to: int = 8
    latency_iterations: int = 20
    conditions: tuple = ("fused", "camera_lost", "lidar_lost")
    method_options: dict = field(default_factory=dict)  # method -> its builder's keyword arguments (registry.py)


@dataclass(frozen=True)
class DataOverride:
    """The data set to score, fine-tune and evaluate on instead of the one in the dense checkpoint's config (e.g.
    the real nuScenes): fields left None keep the checkpoint's."""

    dataroot: str | None = None
    version: str | None = None

    def apply(self, cfg: DetectorConfig) -> DetectorConfig:
        if self.dataroot:
            cfg.data.dataroot = self.dataroot
        if self.version:
            cfg.data.version = self.version
        return cfg


@dataclass(frozen=True)
class PruneSpec:
    """One variant. Its target is either `sparsity`, the fraction of prunable parameters to remove, or
    `time_target`, the fraction of the prunable units' measured time to remove (then `sparsity` is None): the
    variant's name says which ("dm3d-channel-30-s0" vs "dm3d-channel-t30-s0")."""

    method: str
    sparsity: float | None
    granularity: str
    seed: int = 0
    time_target: float | None = None

    @property
    def target(self) -> Target:
        return Target(PARAMS, self.sparsity) if self.time_target is None else Target(TIME, self.time_target)

    @property
    def name(self) -> str:
        return f"{self.method}-{self.granularity}-{self.target.label}-s{self.seed}"


def check_spec(spec: PruneSpec) -> None:
    """Reject an unknown method or granularity, a spec with both or neither target, a target outside (0, 1), or a
    time target that the method or the granularity cannot meet, naming what is allowed."""
    check_method(spec.method)
    if spec.granularity not in GRANULARITIES:
        raise UserError(f"unknown granularity {spec.granularity!r}: expected one of {', '.join(GRANULARITIES)}")
    if (spec.sparsity is None) == (spec.time_target is None):
        raise UserError("give one target: a parameter sparsity or a time target")
    target = spec.target
    if not 0.0 < target.fraction < 1.0:
        raise UserError(f"{'time target' if target.kind == TIME else 'sparsity'} must be in (0, 1), "
                        f"got {target.fraction}")
    check_target(spec.method, target)
    if target.kind == TIME and spec.granularity != "channel":
        # the latency table times output widths: zeroed weights leave a conv's time as it was
        raise UserError(f"a time target prices channel widths: granularity channel, not {spec.granularity}")


def prune_variant(dense: str | Path, spec: PruneSpec, pcfg: PruneConfig, out_root: str | Path,
                  quiet: bool = False, log: Path | None = None, data: DataOverride | None = None) -> Manifest:
    """Run (or resume) one variant; returns its manifest. When this call finished it (it was not found finished, nor
    finished by another worker while this one took the claim), one line {"variant", "seconds", "started",
    "finished", "pid"} is appended to `log`, covering this call's part of the work (a resumed variant's earlier
    part is not in it): the times let the sweep's cost report tell parallel workers' throughput from one variant's
    wall time. `data`: another data set than the checkpoint's (a missing one is a UserError naming how to make
    it, raised before the variant folder is claimed)."""
    check_spec(spec)
    out = Path(out_root) / spec.name
    if Manifest.exists(out):
        return Manifest.read(out)
    loaded = load_detector(dense)
    (data or DataOverride()).apply(loaded[1])
    require_dataset(loaded[1].data.dataroot, loaded[1].data.version)
    with claimed(out):
        if Manifest.exists(out):  # finished by another worker between the check above and the claim
            return Manifest.read(out)
        started = datetime.now(timezone.utc)
        manifest = _build(loaded, spec, pcfg, out, quiet)
        manifest.write(out)
        (out / "pruned.pt").unlink(missing_ok=True)
        shutil.rmtree(out / "finetune", ignore_errors=True)
        if log is not None:
            finished = datetime.now(timezone.utc)
            entry = {"variant": spec.name, "seconds": round((finished - started).total_seconds(), 1),
                     "started": started.isoformat(timespec="seconds"),
                     "finished": finished.isoformat(timespec="seconds"), "pid": os.getpid()}
            with open(log, "a") as f:
                f.write(json.dumps(entry) + "\n")
    (out / CLAIM).unlink(missing_ok=True)  # after the manifest: a later process stops at the manifest check
    return manifest


def _build(loaded: tuple, spec: PruneSpec, pcfg: PruneConfig, out: Path, quiet: bool) -> Manifest:
    """Score, prune, fine-tune (resuming from `out`'s checkpoints), evaluate and export `loaded` (the dense
    checkpoint's model, config and metadata); returns the manifest."""
    model, cfg, dense_meta = loaded
    torch.manual_seed(spec.seed)
    flush_denormals()  # methods run backward passes through pruned and masked networks too
    train_cache = build_cache(cfg, cfg.data.train_split, quiet=quiet)
    t = cfg.train
    augment = Augment(flip=t.flip, drop_lidar=t.drop_lidar, drop_camera=t.drop_camera,
                      drop_single_camera=t.drop_single_camera, photometric=True)
    train_set = DetectionDataset(train_cache, cfg, augment, seed=spec.seed)
    plain = DetectionDataset(train_cache, cfg, Augment(), seed=0)
    calibration = calibration_batches(plain, pcfg.calibration_frames, pcfg.calibration_batch, seed=0)
    # Methods that train (AlterMOMA's reactivation, CrossPrune's ADMM) mask modalities themselves: their data keeps
    # the geometric and photometric augmentation but no random modality dropout on top.
    scoring_set = DetectionDataset(train_cache, cfg, Augment(flip=t.flip, photometric=True), seed=spec.seed)
    ctx = PruneContext(model, cfg, calibration, scoring_set, spec.seed, pcfg.round_to or None)

    pruned_path = out / "pruned.pt"
    method = build_method(spec.method, **pcfg.method_options.get(spec.method, {}))
    if pruned_path.is_file():  # pruned before an interruption: reuse it
        state = torch.load(pruned_path, weights_only=False)
        pruned, masks, scoring = state["module"], state["masks"], state["scoring"]
    else:
        start = time.time()
        plan = method.plan(ctx, spec.target, spec.granularity)
        # "seconds": the wall time of the method's steps, the same quantity for every method
        scoring = {**plan.info, "seconds": round(time.time() - start, 1), "parameter_target": plan.allocation.sparsity}
        pruned, masks, scoring["structure"] = _apply(plan, spec, pcfg, cfg)
        torch.save({"module": pruned, "masks": masks, "scoring": scoring}, pruned_path)
    # Bound to the pruned network before it trains: which channels it kept can only be read now.
    regulariser = method.loss.bind(ctx, pruned) if method.loss is not None else None

    train_cfg = replace(cfg.train, batch_size=pcfg.finetune_batch, pct_start=0.05, seed=spec.seed)
    hooks = FitHooks(regulariser=regulariser, after_step=(lambda m: apply_masks(m, masks)) if masks else None)
    start = time.time()
    ft = fit(pruned, train_set, train_cfg, out / "finetune", steps=pcfg.finetune_steps, lr=pcfg.finetune_lr,
             hooks=hooks, quiet=quiet)
    if masks:
        apply_masks(pruned, masks)
    finetune = {"steps": pcfg.finetune_steps, "lr": pcfg.finetune_lr, "batch": pcfg.finetune_batch,
                "seconds": round(time.time() - start, 1), "regulariser": regulariser is not None,
                "final_loss": {k: v for k, v in ft.items() if k in ("heatmap", "regression", "regulariser")}}
    manifest = _finish(pruned, cfg, dense_meta, spec, pcfg, scoring, finetune, masks, out, quiet)
    if spec.time_target is not None:  # the manifest's sparsity is a parameter fraction for every variant
        manifest = replace(manifest, sparsity=scoring["parameter_target"], time_target=spec.time_target)
    return manifest


SPARSITY_TOLERANCE = 0.01  # realised vs target fraction of prunable parameters, absolute, for every variant


def _apply(plan: Plan, spec: PruneSpec, pcfg: PruneConfig, cfg: DetectorConfig) -> tuple:
    """A plan -> (model to fine-tune, masks or None, structure info); a UserError when the pruned network misses
    the allocation's parameter fraction by more than SPARSITY_TOLERANCE (methods are compared at equal size)."""
    work = copy.deepcopy(plan.model)
    allocation = plan.allocation
    if spec.granularity == "channel":
        pruned, info = channel_prune(work, plan.scores, allocation.sparsity, example_inputs(cfg)["fused"],
                                     round_to=pcfg.round_to or None, keep=allocation.keep)
        check_realised(spec, allocation.sparsity, info["realised_sparsity"])
        return pruned, None, info
    masks = unstructured_masks(work, plan.scores, allocation.sparsity, allocation.keep) \
        if spec.granularity == "unstructured" else nm24_masks(work, plan.scores)
    apply_masks(work, masks)
    realised = round(_mask_sparsity(masks), 4)
    check_realised(spec, allocation.sparsity, realised)
    return work, masks, {"realised_sparsity": realised}


def check_realised(spec: PruneSpec, target: float, realised: float) -> None:
    """Raise a UserError naming target and realised sparsity when they differ by more than SPARSITY_TOLERANCE."""
    if round(abs(realised - target), 4) > SPARSITY_TOLERANCE:  # realised is reported to 4 decimals
        raise UserError(f"{spec.name}: realised sparsity {realised:.4f} misses the target {target:.4f} by more "
                        f"than {SPARSITY_TOLERANCE}")


def _mask_sparsity(masks: dict) -> float:
    return 1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def sparsity_report(model, dense_model) -> dict:
    """Realised sparsity of prunable parameters (removed channels and zeroed weights), overall and per modality,
    and per layer, against the dense model."""
    dense_units = {u.name: u for u in prunable_units(dense_model)}
    per_layer, per_mod_total, per_mod_kept = {}, {}, {}
    for u in prunable_units(model):
        total = dense_units[u.name].numel
        kept = int((u.weight != 0).sum())
        per_layer[u.name] = round(1 - kept / total, 4)
        per_mod_total[u.modality] = per_mod_total.get(u.modality, 0) + total
        per_mod_kept[u.modality] = per_mod_kept.get(u.modality, 0) + kept
    overall = 1 - sum(per_mod_kept.values()) / sum(per_mod_total.values())
    return {"overall": round(overall, 4),
            "per_modality": {m: round(1 - per_mod_kept[m] / per_mod_total[m], 4) for m in per_mod_total},
            "per_layer": per_layer}


def _finish(pruned, cfg: DetectorConfig, dense_meta: dict, spec: PruneSpec, pcfg: PruneConfig, scoring: dict,
            finetune: dict, masks, out: Path, quiet: bool) -> Manifest:
    from ..data.nusc import open_nuscenes
    from ..model.inference import evaluate_conditions, torch_runner
    from ..evaluation.metrics import brief_metrics

    pruned.eval()
    from ..model.detector import FusionDetector

    dense_model = FusionDetector(cfg)
    nusc = open_nuscenes(cfg.data.dataroot, cfg.data.version)
    val_cache = build_cache(cfg, cfg.data.val_split, quiet=quiet)
    results = evaluate_conditions(torch_runner(pruned), val_cache, cfg, nusc, cfg.data.val_split, out / "eval",
                                  conditions=pcfg.conditions, quiet=quiet)
    save_detector(pruned, cfg, out / "model.pt", structured=True)
    paths = export_all(pruned, cfg, out)
    backend = OnnxRuntimeBackend(device="cpu", threads=2)
    inputs = {n: t.numpy() for n, t in zip(INPUT_NAMES["fused"], example_inputs(cfg)["fused"])}
    latency = {}
    for mode, path in paths.items():
        session = backend.load(path, mode)
        latency[mode] = time_calls(lambda: session.run(inputs), pcfg.latency_iterations)
    return Manifest(name=spec.name, method=spec.method, sparsity=spec.sparsity, granularity=spec.granularity,
                    seed=spec.seed, dense=dense_meta.get("name", "dense"),
                    sparsity_realised=sparsity_report(pruned, dense_model), complexity=count_flops(pruned, cfg),
                    metrics={k: brief_metrics(v) for k, v in results.items()},
                    latency_ms={str(ORT_CPU_2T): {m: latency[m] for m in GRAPHS}},
                    scoring=scoring, finetune=finetune, prune_config=to_dict(pcfg),
                    files={p.name: sha256(p) for p in [out / "model.pt", *paths.values(), out / WEIGHTS_FILE]},
                    framework=FRAMEWORK_VERSION)


def describe(manifest: Manifest) -> list:
    """Lines summarising a finished variant: realised sparsity, size, accuracy per condition, CPU latency."""
    real, size = manifest.sparsity_realised, manifest.complexity
    lines = [f"{manifest.name}: realised sparsity {real['overall']:.3f} (camera "
             f"{real['per_modality'].get('camera', 0):.3f}, LiDAR {real['per_modality'].get('lidar', 0):.3f}), "
             f"{size['params_m']:.3f} M params, {size['fused']['gflops']:.2f} GFLOPs"]
    lines += [f"  {cond:<12} mAP {v['mAP']:.4f}  NDS {v['NDS']:.4f}" for cond, v in manifest.metrics.items()]
    return lines + [f"  ONNX Runtime CPU (2 threads) fused {manifest.median_ms('fused'):.1f} ms"]


def load_prune_config(path: str | Path | None) -> PruneConfig:
    return load_yaml(PruneConfig, path) if path else PruneConfig()
