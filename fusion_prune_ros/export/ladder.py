"""The node's profile from a finished sweep: the latency ladder of variants the policy steps along under a
budget, and the fallbacks for sensor loss (`write_profile`); with a ship folder, the chosen variants' deployable
files are copied out of the sweep folder."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError
from ..runtime.graph_files import graph_digest
from ..runtime.latency_key import ORT_CPU_2T
from ..runtime.profile import Profile, Variant, save_profile
from .dense_timing import dense_latency
from .manifest import MANIFEST_FILE, Manifest, with_folders
from .onnx_export import sha256
from .shared_weights import WEIGHTS_FILE, pack

LADDER = (("fused", "fused"), ("lidar", "camera_lost"))  # graphs a latency step may use, judged under these conditions


@dataclass(frozen=True)
class Candidate:
    """A model whose graphs may go into the profile: the dense model or a channel-pruned variant."""

    name: str
    folder: Path
    method: str
    sparsity: float
    granularity: str
    metrics: dict  # condition -> {"mAP", "NDS", ...}
    complexity: dict
    latency: dict  # graph -> median ms

    @classmethod
    def of_variant(cls, m: Manifest, folder: Path) -> "Candidate":
        return cls(m.name, folder, m.method, m.sparsity, m.granularity, m.metrics, m.complexity,
                   {graph: t["median_ms"] for graph, t in m.latency_ms[str(ORT_CPU_2T)].items()})

    def nds(self, condition: str) -> float:
        return self.metrics.get(condition, {}).get("NDS", -1.0)

    def variant(self, graph: str, profile_dir: Path) -> Variant:
        rel = lambda p: os.path.relpath(p, profile_dir)  # noqa: E731
        return Variant(name=f"{self.name}-{graph}", modality=graph, onnx=rel(self.folder / f"{graph}.onnx"),
                       checkpoint=rel(self.folder / "model.pt"), method=self.method, sparsity=self.sparsity,
                       granularity=self.granularity, params_m=self.complexity.get("params_m", 0.0),
                       gflops=self.complexity.get(graph, {}).get("gflops", 0.0),
                       metrics={k: {"mAP": v["mAP"], "NDS": v["NDS"]} for k, v in self.metrics.items()},
                       latency_ms={str(ORT_CPU_2T): self.latency[graph]},
                       sha256=graph_digest(self.folder / f"{graph}.onnx"))


def write_profile(manifests: list, dense_dir: Path, variants_root: Path, profile_path: Path,
                  ship_root: Path | None = None, max_nds_loss: float = 0.05, min_step_gain: float = 0.10,
                  extra_folders: tuple = ()) -> Profile:
    """The node's profile: its latency ladder, then the fallbacks for sensor loss.

    The ladder is the Pareto front (accuracy vs latency) over the fused graphs *and* the LiDAR-only graphs of the
    dense model and every channel-pruned variant, most accurate first: with both sensors working the policy may
    step down to either kind (a LiDAR-only graph is judged by its camera-lost accuracy, which is what it computes).
    A graph more than `max_nds_loss` below the dense fused NDS is no step: a fast detector that misses what the
    dense one finds is not what a budget should buy. Steps closer than `min_step_gain` in latency are thinned out
    (`thin_ladder`). Then the most accurate LiDAR-only graph (camera loss) and
    camera-only graph (LiDAR loss) when the ladder lacks them. Camera-only graphs are never latency steps (the
    policy uses them only without LiDAR).

    With `ship_root`, the chosen pruned variants' deployable files (checkpoint, the graphs the profile uses with
    their weights, manifest) are copied to ship_root/<variant> and the profile points there: the sweep's own
    folder holds evaluation output and every variant, far more than a package should carry.

    `extra_folders`: channel variants built outside the sweep (`fusion-prune prune`, e.g. with a time target and a
    longer fine-tune) that are candidates too, timed beside the dense model in the same re-timing as the rest."""
    dense_meta = json.loads((dense_dir / "metadata.json").read_text())
    dense = Candidate("dense", dense_dir, "dense", 0.0, "none", dense_meta["metrics"], dense_meta["complexity"],
                      dense_latency(dense_meta, variants_root))
    candidates = [dense] + [Candidate.of_variant(m, folder) for m, folder in with_folders(manifests, variants_root,
                                                                                             extra_folders)
                            if m.granularity == "channel" and m.seed == 0]
    names = [c.name for c in candidates]
    if len(set(names)) < len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"two candidate variants share a name ({', '.join(clash)}): the profile and the shipped "
                        "folders are keyed by it")
    chosen = _ladder(candidates, dense.nds("fused") - max_nds_loss, min_step_gain)
    for mode, condition in (("lidar", "camera_lost"), ("camera", "lidar_lost")):
        best = max(candidates, key=lambda c: c.nds(condition))
        if (best, mode) not in chosen:
            chosen.append((best, mode))
    if ship_root is not None:
        chosen = _ship_all(chosen, Path(ship_root))
    variants = [c.variant(mode, profile_path.parent) for c, mode in chosen]
    detector = os.path.relpath(dense_dir / "detector.yaml", profile_path.parent)
    profile = Profile(name=profile_path.stem, variants=variants, detector=detector)
    profile_path.parent.mkdir(parents=True, exist_ok=True)
    save_profile(profile, profile_path)
    return profile


def _ladder(candidates: list, floor: float, min_step_gain: float) -> list:
    """(candidate, graph) steps: the Pareto front of the graphs at or above the NDS `floor`, most accurate first,
    thinned (`thin_ladder`)."""
    graphs = [(c, mode, c.nds(condition)) for c in candidates for mode, condition in LADDER
              if c.nds(condition) >= floor]
    front = []
    for c, mode, score in sorted(graphs, key=lambda g: (g[0].latency[g[1]], -g[2])):
        if not front or score > front[-1][2]:
            front.append((c, mode, score))
    front.sort(key=lambda g: -g[2])
    return [(c, mode) for c, mode, _ in thin_ladder(front, lambda g: g[0].latency[g[1]], min_step_gain)]


def _ship_all(chosen: list, ship_root: Path) -> list:
    """Copy the chosen pruned variants to ship_root, removing variants an earlier sweep shipped that are no longer
    chosen; the steps then point at the copies."""
    keep = {c.name for c, _ in chosen}
    for stale in ship_root.glob(f"*/{MANIFEST_FILE}"):
        if stale.parent.name not in keep:
            shutil.rmtree(stale.parent)
    shipped: dict = {}
    for c, _ in chosen:
        if c.name not in shipped:
            shipped[c.name] = _ship(c, [m for c2, m in chosen if c2 is c], ship_root)
    return [(shipped[c.name], mode) for c, mode in chosen]


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


def _ship(candidate: Candidate, modes: list, ship_root: Path) -> Candidate:
    """Copy a pruned variant's checkpoint and manifest, and its graphs in `modes` with a weights file of only the
    tensors they use (`shared_weights.pack`), to ship_root/<name>; the shipped manifest lists the shipped files.
    A candidate chosen for two modes is shipped once with both. The dense model already lives in models/."""
    if candidate.method == "dense":
        return candidate
    dest = ship_root / candidate.name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copyfile(candidate.folder / "model.pt", dest / "model.pt")
    graphs = pack([candidate.folder / f"{m}.onnx" for m in modes], dest)
    manifest = Manifest.read(candidate.folder)
    manifest.files = {p.name: sha256(p) for p in [dest / "model.pt", *graphs, dest / WEIGHTS_FILE]}
    manifest.write(dest)
    return replace(candidate, folder=dest)
