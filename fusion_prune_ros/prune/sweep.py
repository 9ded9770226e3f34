"""`fusion-prune sweep`: methods x sparsity levels x granularities -> variants and their result rows (the node's
profile is chosen from them in export/ladder.py). Resumable: finished variants (manifest present) are read back, not
redone.

This module plans, runs and resumes variants and returns typed rows (`ResultRow`); the reports written from them
(tables, plots, the targets checked) live in fusion_prune_ros/analysis, which the product never imports."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from tqdm import tqdm

from ..config import load_yaml
from ..errors import UserError
from ..export.dense_timing import dense_latency
from ..export.manifest import Manifest, read_manifests
from ..runtime.latency_key import ORT_CPU_2T
from .framework_version import FRAMEWORK_VERSION
from .method import EXTRA_OPTIMISER_STEPS
from .registry import check_method
from .variant import DataOverride, PruneConfig, PruneSpec, prune_variant
from .variant_claim import VariantBusy


@dataclass
class SweepConfig:
    """config/prune/sweep*.yaml: what to run, in order (the plan is printed with its estimated cost first)."""

    prune: PruneConfig = field(default_factory=PruneConfig)
    channel_methods: list = field(default_factory=list)
    channel_levels: list = field(default_factory=list)
    unstructured_methods: list = field(default_factory=list)
    unstructured_levels: list = field(default_factory=list)
    nm24_methods: list = field(default_factory=list)
    extra_seeds: list = field(default_factory=list)  # seeds run in addition to 0, at extra_seed_levels
    extra_seed_levels: list = field(default_factory=list)
    # [method, sparsity, seed] channel runs after the extra seeds, for rows only some methods need: more seeds where
    # a verdict is closer than the seed spread, or levels a re-run repeats for some methods only.
    extra_runs: list = field(default_factory=list)


def plan(cfg: SweepConfig) -> list:
    """The variants in the order they are built; an unknown method anywhere in the config is an error up front."""
    for method in sorted({*cfg.channel_methods, *cfg.unstructured_methods, *cfg.nm24_methods}):
        check_method(method)
    # Level by level, every method at a level before the next level: an interrupted sweep has comparable rows.
    specs = [PruneSpec(m, s, "channel") for s in cfg.channel_levels for m in cfg.channel_methods]
    specs += [PruneSpec(m, s, "channel", seed) for seed in cfg.extra_seeds for s in cfg.extra_seed_levels
              for m in cfg.channel_methods]
    for run in cfg.extra_runs:
        if not (isinstance(run, (list, tuple)) and len(run) == 3 and run[0] in cfg.channel_methods):
            raise UserError(f"extra_runs entry {run!r}: expected [method, sparsity, seed] with a method of "
                            f"channel_methods ({', '.join(cfg.channel_methods)})")
        specs.append(PruneSpec(run[0], float(run[1]), "channel", int(run[2])))
    specs += [PruneSpec(m, s, "unstructured") for m in cfg.unstructured_methods for s in cfg.unstructured_levels]
    specs += [PruneSpec(m, 0.5, "nm24") for m in cfg.nm24_methods]
    return specs


@dataclass
class SweepStart:
    """A plan against what the sweep folder already holds, before anything is built."""

    specs: list  # PruneSpec, in build order
    done: int  # of them finished in the folder
    earlier: dict  # name -> ResultRow of the --carry CSV (empty without one)
    carried: list  # rows of planned variants taken from it because their folders are not here


def start(specs: list, out_root: str | Path, carry: str | Path | None = None) -> SweepStart:
    """What is done, and what an earlier results CSV (`carry`, see `carried_rows`) supplies."""
    out_root = Path(out_root)
    done = sum(Manifest.exists(out_root / s.name) for s in specs)
    earlier = read_rows(carry) if carry else {}
    carried = carried_rows(earlier, [s.name for s in specs], {m.name for m in read_manifests(out_root)})
    return SweepStart(specs, done, earlier, carried)


def run_sweep(dense: str | Path, cfg: SweepConfig, out_root: str | Path, quiet: bool = False,
              limit: int | None = None, skip: frozenset = frozenset(), data: DataOverride | None = None) -> list:
    """Run the plan in order (at most `limit` new variants); returns the manifests of the variants this process
    finished or found finished. Variants another worker is building (see variant_claim) are left to it, and
    those named in `skip` (rows carried from an earlier run, `carried_rows`) are not built again. `data`: the
    data set to use instead of the one the dense checkpoint was trained on."""
    out_root = Path(out_root)
    specs = [s for s in plan(cfg) if s.name not in skip]
    manifests, started = [], 0
    log = out_root / "sweep_log.jsonl"
    out_root.mkdir(parents=True, exist_ok=True)
    for spec in tqdm(specs, desc="sweep", disable=quiet, unit="variant"):
        done = Manifest.exists(out_root / spec.name)
        if not done and limit is not None and started >= limit:
            continue
        try:
            manifests.append(prune_variant(dense, spec, cfg.prune, out_root, quiet=True, log=log, data=data))
        except VariantBusy as busy:
            tqdm.write(f"skipped: {busy}")
            continue
        started += not done
    return manifests


def read_log(out_root: str | Path) -> list:
    """The sweep log's entries: one per variant, written by the process that finished it (prune_variant's `log`)."""
    path = Path(out_root) / "sweep_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def load_sweep_config(path: str | Path) -> SweepConfig:
    return load_yaml(SweepConfig, path)


class ResultRow(TypedDict):
    """One variant (or the dense model) in the sweep's results: what the CSV holds, one column per key."""

    name: str
    method: str
    granularity: str  # "-" for the dense model
    sparsity: float  # target fraction of prunable parameters removed
    seed: int
    realised: float  # realised sparsity, overall and per module
    camera: float
    lidar: float
    fusion: float
    params_m: float
    gflops: float  # fused graph
    mAP: float  # official metrics: fused, camera lost, LiDAR lost (NaN where not evaluated)
    NDS: float
    mAP_cam_lost: float
    NDS_cam_lost: float
    mAP_lidar_lost: float
    NDS_lidar_lost: float
    ort_ms: float  # ONNX Runtime CPU 2 threads, fused graph median; speed-up against dense timed beside it
    ort_speedup: float
    gpu_ms: float  # from a variant-latency timing file; NaN without one
    gpu_speedup: float
    scoring_s: float
    finetune_s: float
    # optimiser steps a method takes before pruning besides the fine-tuning all share (CrossPrune's ADMM,
    # AlterMOMA's reactivation; method.EXTRA_OPTIMISER_STEPS); NaN where the manifest does not record it
    extra_optimiser_steps: float
    framework: int  # the framework version the variant was built with (prune.framework_version); dense: current


COLUMNS = tuple(ResultRow.__annotations__)


def rows(manifests: list, dense: dict, dense_ms: float | None = None, gpu: dict | None = None) -> list:
    """One `ResultRow` per variant (plus the dense model), for the table, the CSV and the plot. `dense_ms`: the
    dense fused graph's latency from the same run as the variants' (default: the export's). `gpu`: a
    variant_latency result (fused graphs timed on a GPU, dense among them); variants it lacks get NaN."""
    gpu_ms = {name: t["fused"]["median_ms"] for name, t in (gpu or {}).get("latency_ms", {}).items()}

    def gpu_cols(name: str) -> dict:
        if name not in gpu_ms or "dense" not in gpu_ms:
            return {"gpu_ms": float("nan"), "gpu_speedup": float("nan")}
        return {"gpu_ms": gpu_ms[name], "gpu_speedup": round(gpu_ms["dense"] / gpu_ms[name], 2)}

    if dense_ms is None:
        dense_ms = dense["graphs"]["fused"][str(ORT_CPU_2T)]["median_ms"]
    out = [{"name": "dense", "method": "dense", "granularity": "-", "sparsity": 0.0, "seed": 0, "realised": 0.0,
            "camera": 0.0, "lidar": 0.0, "fusion": 0.0, "params_m": dense["complexity"]["params_m"],
            "gflops": dense["complexity"]["fused"]["gflops"], **_metric_cols(dense["metrics"]), "ort_ms": dense_ms,
            "ort_speedup": 1.0, **gpu_cols("dense"), "scoring_s": 0.0, "finetune_s": 0.0,
            "extra_optimiser_steps": 0.0, "framework": FRAMEWORK_VERSION}]
    for m in manifests:
        ms = m.median_ms("fused")
        per = m.sparsity_realised["per_modality"]
        out.append({"name": m.name, "method": m.method, "granularity": m.granularity,
                    "sparsity": m.sparsity, "seed": m.seed, "realised": m.sparsity_realised["overall"],
                    "camera": per.get("camera", 0.0), "lidar": per.get("lidar", 0.0),
                    "fusion": per.get("fusion", 0.0), "params_m": m.complexity["params_m"],
                    "gflops": m.complexity["fused"]["gflops"], **_metric_cols(m.metrics), "ort_ms": ms,
                    "ort_speedup": round(dense_ms / ms, 2), **gpu_cols(m.name),
                    "scoring_s": float(m.scoring["seconds"]), "finetune_s": m.finetune["seconds"],
                    "extra_optimiser_steps": float(m.scoring.get(EXTRA_OPTIMISER_STEPS, float("nan"))),
                    "framework": m.framework})
    return out


@dataclass
class SweepResults:
    """What a sweep folder holds, as rows: the dense model first, then every variant by name."""

    table: list  # ResultRow
    manifests: list  # of the variants built in this folder
    carried: list  # rows carried from an earlier results CSV (their folders are not here)
    dense_ms: float  # the dense fused graph's median in this folder's timing (the built rows' reference)


def results(out_root: str | Path, dense_dir: str | Path, carried: list = (), earlier: dict | None = None,
            gpu: dict | None = None) -> SweepResults:
    """The rows of every variant in `out_root` plus the `carried` ones (`carried_rows`) that no worker has built
    here since. `gpu`: a variant-latency timing restricted to current models (or None): the gpu_* columns."""
    out_root, dense_dir = Path(out_root), Path(dense_dir)
    manifests = read_manifests(out_root)
    built = {m.name for m in manifests}
    carried = [r for r in carried if r["name"] not in built]  # another worker, run without --carry, built it
    dense_meta = json.loads((dense_dir / "metadata.json").read_text())
    dense_ms = dense_latency(dense_meta, out_root)["fused"]
    table = rows(manifests, dense_meta, dense_ms, gpu)
    table = table[:1] + sorted(table[1:] + carried, key=lambda r: r["name"])
    if carried and earlier and "dense" in earlier:
        # The carried rows' speed-ups are against the earlier run's dense timing, and the GPU timing file (if any)
        # went with the earlier folder: the dense row keeps those columns, the built rows' ratios are their own.
        kept = ("ort_ms", "ort_speedup") + (("gpu_ms", "gpu_speedup") if gpu is None else ())
        table[0].update({c: earlier["dense"][c] for c in kept})
    return SweepResults(table, manifests, carried, dense_ms)


TEXT_COLUMNS = ("name", "method", "granularity")
INT_COLUMNS = ("seed", "framework")


def read_rows(csv_path: str | Path) -> dict:
    """name -> row of a results CSV (analysis.sweep_report.write_table), with the types `rows` gives them."""
    path = Path(csv_path)
    if not path.is_file():
        raise UserError(f"no results CSV to carry rows from: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise UserError(f"{path}: columns {reader.fieldnames} are not the sweep table's {list(COLUMNS)}")
        return {r["name"]: {c: r[c] if c in TEXT_COLUMNS else int(r[c]) if c in INT_COLUMNS else float(r[c])
                            for c in COLUMNS} for r in reader}


def carried_rows(earlier: dict, planned: list, present: set) -> list:
    """The rows of an earlier report (`read_rows`) for planned variants whose folders are not in the sweep folder.

    Why: the sweep folder (runs/variants) holds gigabytes of evaluation output and is not committed, so a fresh
    machine starts without it, while the CSV beside the report is committed. Re-running 50-odd variants to finish a
    plan is 10 hours of CPU; carrying their measured rows lets the last variants complete the table. A carried row
    keeps its numbers as measured then, its speed-ups included (ratios against the dense graph of that run's
    re-timing); variants with a folder here are always read from their manifests, never carried."""
    return [earlier[name] for name in planned if name not in present and name in earlier]


def _metric_cols(metrics: dict) -> dict:
    get = lambda c, k: metrics.get(c, {}).get(k, float("nan"))  # noqa: E731
    return {"mAP": get("fused", "mAP"), "NDS": get("fused", "NDS"), "mAP_cam_lost": get("camera_lost", "mAP"),
            "NDS_cam_lost": get("camera_lost", "NDS"), "mAP_lidar_lost": get("lidar_lost", "mAP"),
            "NDS_lidar_lost": get("lidar_lost", "NDS")}
