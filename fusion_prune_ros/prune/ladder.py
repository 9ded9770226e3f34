"""The node's profile from a finished sweep: the latency ladder of variants the policy steps along under a
budget, and the fallbacks for sensor loss (`write_profile`); with a ship folder, the chosen variants' deployable
files are copied out of the sweep folder."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..export.onnx_export import sha256
from ..runtime.profile import Profile, Variant, save_profile
from .sweep import dense_latency

LADDER = (("fused", "fused"), ("lidar", "camera_lost"))  # graphs a latency step may use, judged under these conditions


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
