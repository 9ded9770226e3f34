"""`fusion-prune sweep`: methods x sparsity levels x granularities -> variants, a results table, a Pareto plot
and the node's default profile. Resumable: finished variants (manifest present) are read back, not redone."""
from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..config import load_yaml
from ..errors import UserError
from ..export.onnx_export import sha256
from ..export.ship import LATENCY_KEY
from ..runtime.profile import Profile, Variant, save_profile
from .variant import PruneConfig, PruneSpec, prune_variant
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
    # [method, sparsity, seed] channel runs after the extra seeds: more seeds where a verdict is closer than the
    # seed spread, without running every method again at that level.
    extra_seed_runs: list = field(default_factory=list)


def plan(cfg: SweepConfig) -> list:
    # Level by level, every method at a level before the next level: an interrupted sweep has comparable rows.
    specs = [PruneSpec(m, s, "channel") for s in cfg.channel_levels for m in cfg.channel_methods]
    specs += [PruneSpec(m, s, "channel", seed) for seed in cfg.extra_seeds for s in cfg.extra_seed_levels
              for m in cfg.channel_methods]
    for run in cfg.extra_seed_runs:
        if not (isinstance(run, (list, tuple)) and len(run) == 3 and run[0] in cfg.channel_methods):
            raise UserError(f"extra_seed_runs entry {run!r}: expected [method, sparsity, seed] with a method of "
                            f"channel_methods ({', '.join(cfg.channel_methods)})")
        specs.append(PruneSpec(run[0], float(run[1]), "channel", int(run[2])))
    specs += [PruneSpec(m, s, "unstructured") for m in cfg.unstructured_methods for s in cfg.unstructured_levels]
    specs += [PruneSpec(m, 0.5, "nm24") for m in cfg.nm24_methods]
    return specs


def run_sweep(dense: str | Path, cfg: SweepConfig, out_root: str | Path, quiet: bool = False,
              limit: int | None = None, skip: frozenset = frozenset()) -> list:
    """Run the plan in order (at most `limit` new variants); returns the manifests of the variants this process
    finished or found finished. Variants another worker is building (see variant_claim) are left to it, and
    those named in `skip` (rows carried from an earlier run, `carried_rows`) are not built again."""
    out_root = Path(out_root)
    specs = [s for s in plan(cfg) if s.name not in skip]
    manifests, started = [], 0
    log = out_root / "sweep_log.jsonl"
    out_root.mkdir(parents=True, exist_ok=True)
    for spec in tqdm(specs, desc="sweep", disable=quiet, unit="variant"):
        done = (out_root / spec.name / "manifest.json").is_file()
        if not done and limit is not None and started >= limit:
            continue
        try:
            manifests.append(prune_variant(dense, spec, cfg.prune, out_root, quiet=True, log=log))
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


def collect(out_root: str | Path) -> list:
    return [json.loads(p.read_text()) for p in sorted(Path(out_root).glob("*/manifest.json"))]


COLUMNS = ("name", "method", "granularity", "sparsity", "seed", "realised", "camera", "lidar", "fusion", "params_m",
           "gflops", "mAP", "NDS", "mAP_cam_lost", "NDS_cam_lost", "mAP_lidar_lost", "NDS_lidar_lost",
           "ort_ms", "ort_speedup", "gpu_ms", "gpu_speedup", "scoring_s", "finetune_s")


LADDER = (("fused", "fused"), ("lidar", "camera_lost"))  # graphs a latency step may use, judged under these conditions
DENSE_LATENCY = "dense_latency.json"  # the dense graphs re-timed beside the variants (remeasure_latency)


def remeasure_latency(manifests: list, dense_dir: Path, variants_root: Path, iterations: int = 40) -> None:
    """Re-time the dense model's and every variant's three graphs side by side (ONNX Runtime CPU, 2 threads) and
    write the numbers into the manifests (the sweep's own measurement kept as `ort-cpu-2t-in-sweep`) and
    variants_root/dense_latency.json, with the narrowest channel-pruned network (granularity.narrowest) timed
    beside them: the floor of what channel pruning can gain. Each variant is timed when it finishes, often while
    the next one trains on the same cores; re-timed together, the table's speed-ups are ratios from one run."""
    from ..config import DetectorConfig
    from ..export.onnx_export import INPUT_NAMES, export_onnx
    from ..model.checkpoint import load_detector
    from ..model.flops import count_flops, example_inputs
    from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from ..runtime.op_profile import profile_ops
    from ..runtime.timing import time_side_by_side
    from .granularity import narrowest

    cfg = load_yaml(DetectorConfig, dense_dir / "detector.yaml")
    inputs = {n: t.numpy() for n, t in zip(INPUT_NAMES["fused"], example_inputs(cfg)["fused"])}
    # Spinning off and one timed call per graph per round: two re-timings then agree within about 5 %; with
    # spinning on and 4 rounds of 10 calls the ratios moved by a median of 17 % (docs/pruning.md).
    backend = OnnxRuntimeBackend(device="cpu", threads=2, spinning=False)
    folders = {"dense": dense_dir, **{m["name"]: variants_root / m["name"] for m in manifests}}
    fns = {}
    for name, folder in folders.items():
        for mode in ("fused", "lidar", "camera"):
            session = backend.load(folder / f"{mode}.onnx", mode)
            fns[(name, mode)] = (lambda s: lambda: s.run(inputs))(session)
    floor_model = narrowest(load_detector(dense_dir / "model.pt")[0], example_inputs(cfg)["fused"])
    (variants_root / "channel_floor").mkdir(parents=True, exist_ok=True)
    floor_path = export_onnx(floor_model, cfg, "fused", variants_root / "channel_floor" / "fused.onnx")
    fns[("channel_floor", "fused")] = (lambda s: lambda: s.run(inputs))(backend.load(floor_path, "fused"))
    timed = time_side_by_side(fns, iterations, rounds=iterations)
    dense = {mode: timed[("dense", mode)] for mode in ("fused", "lidar", "camera")}
    size = count_flops(floor_model, cfg)
    # Where the floor's time goes, against dense (same idle machine, right after the timing). The ~150 timed
    # sessions are released first, so the profiled session runs alone: while their thread pools stayed alive, the
    # floor's GridSample read 0.5 ms in one report and 3.9 ms in the next.
    fns.clear()
    ops = {"dense": profile_ops(dense_dir / "fused.onnx", inputs), "floor": profile_ops(floor_path, inputs)}
    floor = {"params_m": size["params_m"], "gflops": size["fused"]["gflops"],
             LATENCY_KEY: timed[("channel_floor", "fused")], "ops": ops}
    (variants_root / DENSE_LATENCY).write_text(json.dumps({LATENCY_KEY: dense, "channel_floor": floor}, indent=1))
    for m in manifests:
        lat = m["latency_ms"]
        lat.setdefault(f"{LATENCY_KEY}-in-sweep", lat[LATENCY_KEY])
        lat[LATENCY_KEY] = {mode: timed[(m["name"], mode)] for mode in ("fused", "lidar", "camera")}
        lat["remeasured_with_dense"] = True
        (variants_root / m["name"] / "manifest.json").write_text(json.dumps(m, indent=1))


def dense_latency(dense_meta: dict, variants_root: Path) -> dict:
    """mode -> median ms of the dense graphs: the side-by-side re-timing when there is one, else the export's."""
    path = Path(variants_root) / DENSE_LATENCY
    if path.is_file():
        return {mode: v["median_ms"] for mode, v in json.loads(path.read_text())[LATENCY_KEY].items()}
    return {mode: g[LATENCY_KEY]["median_ms"] for mode, g in dense_meta["graphs"].items()}


def channel_floor(variants_root: Path) -> dict | None:
    """The narrowest network's size and latency from the last side-by-side re-timing (None before one), with the
    dense fused graph's median from the same timing as "dense_ms": the floor's ratio is between those two."""
    path = Path(variants_root) / DENSE_LATENCY
    if not path.is_file():
        return None
    timed = json.loads(path.read_text())
    return {**timed["channel_floor"], "dense_ms": timed[LATENCY_KEY]["fused"]["median_ms"]}


def scoring_seconds(manifest: dict) -> float:
    """Wall seconds of scoring. (Manifests written before scorer_seconds existed may hold a scorer's per-stage
    breakdown under "seconds"; its total is the same wall time.)"""
    value = manifest["scoring"]["seconds"]
    return float(value["total"]) if isinstance(value, dict) else float(value)


def rows(manifests: list, dense: dict, dense_ms: float | None = None, gpu: dict | None = None) -> list:
    """One flat row per variant (plus the dense model), for the table, the CSV and the plot. `dense_ms`: the
    dense fused graph's latency from the same run as the variants' (default: the export's). `gpu`: a
    variant_latency result (fused graphs timed on a GPU, dense among them); variants it lacks get NaN."""
    gpu_ms = {name: t["fused"]["median_ms"] for name, t in (gpu or {}).get("latency_ms", {}).items()}

    def gpu_cols(name: str) -> dict:
        if name not in gpu_ms or "dense" not in gpu_ms:
            return {"gpu_ms": float("nan"), "gpu_speedup": float("nan")}
        return {"gpu_ms": gpu_ms[name], "gpu_speedup": round(gpu_ms["dense"] / gpu_ms[name], 2)}

    if dense_ms is None:
        dense_ms = dense["graphs"]["fused"][LATENCY_KEY]["median_ms"]
    out = [{"name": "dense", "method": "dense", "granularity": "-", "sparsity": 0.0, "seed": 0, "realised": 0.0,
            "camera": 0.0, "lidar": 0.0, "fusion": 0.0, "params_m": dense["complexity"]["params_m"],
            "gflops": dense["complexity"]["fused"]["gflops"], **_metric_cols(dense["metrics"]), "ort_ms": dense_ms,
            "ort_speedup": 1.0, **gpu_cols("dense"), "scoring_s": 0.0, "finetune_s": 0.0}]
    for m in manifests:
        ms = m["latency_ms"]["ort-cpu-2t"]["fused"]["median_ms"]
        per = m["sparsity_realised"]["per_modality"]
        out.append({"name": m["name"], "method": m["method"], "granularity": m["granularity"],
                    "sparsity": m["sparsity"], "seed": m["seed"], "realised": m["sparsity_realised"]["overall"],
                    "camera": per.get("camera", 0.0), "lidar": per.get("lidar", 0.0),
                    "fusion": per.get("fusion", 0.0), "params_m": m["complexity"]["params_m"],
                    "gflops": m["complexity"]["fused"]["gflops"], **_metric_cols(m["metrics"]), "ort_ms": ms,
                    "ort_speedup": round(dense_ms / ms, 2), **gpu_cols(m["name"]), "scoring_s": scoring_seconds(m),
                    "finetune_s": m["finetune"]["seconds"]})
    return out


TEXT_COLUMNS = ("name", "method", "granularity")


def read_rows(csv_path: str | Path) -> dict:
    """name -> row of a results CSV written by `write_table`, with the types `rows` gives them."""
    path = Path(csv_path)
    if not path.is_file():
        raise UserError(f"no results CSV to carry rows from: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise UserError(f"{path}: columns {reader.fieldnames} are not the sweep table's {list(COLUMNS)}")
        return {r["name"]: {c: r[c] if c in TEXT_COLUMNS else int(r[c]) if c == "seed" else float(r[c])
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


def write_table(table: list, csv_path: Path, md_path: Path, title: str, notes: list = ()) -> None:
    """The CSV, and the Markdown table followed by `notes` (Markdown lines)."""
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |")
    md_path.write_text("\n".join([*lines, "", *notes]) + "\n")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_profile(manifests: list, dense_dir: Path, variants_root: Path, profile_path: Path,
                  ship_root: Path | None = None, max_nds_loss: float = 0.05, min_step_gain: float = 0.10) -> Profile:
    """The node's profile: its latency ladder, then the fallbacks for sensor loss.

    The ladder is the Pareto front (accuracy vs latency) over the fused graphs *and* the LiDAR-only graphs of the
    dense model and every channel-pruned variant, most accurate first: with both sensors working the policy may
    step down to either kind (a LiDAR-only graph is judged by its camera-lost accuracy, which is what it computes).
    A graph more than `max_nds_loss` below the dense fused NDS is no step: a fast detector that misses what the
    dense one finds is not what a budget should buy. Steps closer than `min_step_gain` in latency are thinned out
    (`thin_ladder`). Then the most accurate LiDAR-only graph (camera loss) and
    camera-only graph (LiDAR loss) when the ladder lacks them. Camera-only graphs are never latency steps (the
    policy uses them only without LiDAR).

    With `ship_root`, the chosen pruned variants' deployable files (checkpoint, the graphs the profile uses,
    manifest) are copied to ship_root/<variant> and the profile points there: the sweep's own folder holds
    evaluation output and every variant, far more than a package should carry."""
    dense_meta = json.loads((dense_dir / "metadata.json").read_text())
    candidates = [{"name": "dense", "folder": dense_dir, "metrics": dense_meta["metrics"],
                   "complexity": dense_meta["complexity"], "method": "dense", "sparsity": 0.0, "granularity": "none",
                   "latency": dense_latency(dense_meta, variants_root)}]
    for m in manifests:
        if m["granularity"] == "channel" and m["seed"] == 0:
            candidates.append({"name": m["name"], "folder": variants_root / m["name"], "metrics": m["metrics"],
                               "complexity": m["complexity"], "method": m["method"], "sparsity": m["sparsity"],
                               "granularity": m["granularity"],
                               "latency": {k: v["median_ms"] for k, v in m["latency_ms"]["ort-cpu-2t"].items()}})
    nds = lambda c, condition: c["metrics"].get(condition, {}).get("NDS", -1.0)  # noqa: E731
    floor = nds(candidates[0], "fused") - max_nds_loss
    graphs = [(c, mode, nds(c, condition)) for c in candidates for mode, condition in LADDER
              if nds(c, condition) >= floor]
    front = []
    for c, mode, score in sorted(graphs, key=lambda g: (g[0]["latency"][g[1]], -g[2])):
        if not front or score > front[-1][2]:
            front.append((c, mode, score))
    front.sort(key=lambda g: -g[2])
    chosen = [(c, mode) for c, mode, _ in thin_ladder(front, lambda g: g[0]["latency"][g[1]], min_step_gain)]
    for mode, condition in (("lidar", "camera_lost"), ("camera", "lidar_lost")):
        best = max(candidates, key=lambda c: nds(c, condition))
        if (best, mode) not in chosen:
            chosen.append((best, mode))
    if ship_root is not None:
        keep = {c["name"] for c, _ in chosen}
        for stale in Path(ship_root).glob("*/manifest.json"):  # variants an earlier sweep shipped, no longer chosen
            if stale.parent.name not in keep:
                shutil.rmtree(stale.parent)
        chosen = [(_ship(c, [m for c2, m in chosen if c2 is c], Path(ship_root)), mode) for c, mode in chosen]
    rel = lambda p: os.path.relpath(p, profile_path.parent)  # noqa: E731
    variants = [Variant(name=f"{c['name']}-{mode}", modality=mode, onnx=rel(c["folder"] / f"{mode}.onnx"),
                        checkpoint=rel(c["folder"] / "model.pt"), method=c["method"], sparsity=c["sparsity"],
                        granularity=c["granularity"], params_m=c["complexity"].get("params_m", 0.0),
                        gflops=c["complexity"].get(mode, {}).get("gflops", 0.0),
                        metrics={k: {"mAP": v["mAP"], "NDS": v["NDS"]} for k, v in c["metrics"].items()},
                        latency_ms={"ort-cpu-2t": c["latency"][mode]},
                        sha256=sha256(c["folder"] / f"{mode}.onnx")) for c, mode in chosen]
    profile = Profile(name=profile_path.stem, variants=variants, detector=rel(dense_dir / "detector.yaml"))
    profile_path.parent.mkdir(parents=True, exist_ok=True)
    save_profile(profile, profile_path)
    return profile


def thin_ladder(front: list, latency, min_step_gain: float) -> list:
    """Keep the steps of a Pareto front (most accurate first) that are each at least `min_step_gain` (a fraction)
    faster than the step kept above them; both ends always stay unless the fastest is within the gain of the top.

    Why: a step whose latency is within the timing noise of its neighbour buys the policy nothing when it steps
    down, yet it ships a model and makes the ladder change between two re-timings of the same graphs. Two full
    re-timings of the sweep's graphs disagreed by up to 8.7 % (90th percentile) per ratio, hence the default 10 %.
    Going down from the top, the first step past the gain is the most accurate one there, so no accuracy is lost
    at any latency the thinned ladder can reach."""
    if not front:
        return []
    kept = [front[0]]
    fastest = front[-1]
    for step in front[1:-1]:
        if (latency(step) <= latency(kept[-1]) * (1 - min_step_gain)
                and latency(fastest) <= latency(step) * (1 - min_step_gain)):
            kept.append(step)
    if len(front) > 1 and latency(fastest) <= latency(kept[-1]) * (1 - min_step_gain):
        kept.append(fastest)
    return kept


def _ship(candidate: dict, modes: list, ship_root: Path) -> dict:
    """Copy a pruned variant's checkpoint, the graphs in `modes` and its manifest to ship_root/<name> (idempotent:
    a candidate chosen for two modes is copied once per graph). The dense model already lives in models/."""
    if candidate["method"] == "dense":
        return candidate
    dest = ship_root / candidate["name"]
    dest.mkdir(parents=True, exist_ok=True)
    for f in ["model.pt", "manifest.json", *(f"{m}.onnx" for m in modes)]:
        shutil.copyfile(candidate["folder"] / f, dest / f)
    return {**candidate, "folder": dest}
