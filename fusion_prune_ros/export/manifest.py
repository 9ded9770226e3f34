"""A variant's manifest: the one record of what was built and measured that the offline stage hands on (to the
sweep's table, the node's profile and the analyses), read and written only here.

`manifest.json` sits in the variant's folder beside `model.pt` and the three ONNX graphs; its presence marks the
variant finished, so it is written last and atomically.
"""
from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ..config import from_dict
from ..documents import read_document
from ..errors import UserError
from ..runtime.latency_key import ORT_CPU_2T, LatencyKey

MANIFEST_FILE = "manifest.json"
GRAPHS = ("fused", "lidar", "camera")


@dataclass
class Manifest:
    name: str
    method: str
    # Parameter target: the fraction of prunable parameters to remove. Under a time target it is the fraction the
    # allocation removed, so that every variant's `sparsity` means the same quantity.
    sparsity: float
    granularity: str  # "channel", "unstructured" or "nm24"
    seed: int
    dense: str  # name of the dense model the variant was pruned from
    sparsity_realised: dict  # "overall", "per_modality", "per_layer": removed fraction of prunable parameters
    complexity: dict  # "params_m", and per graph {"gflops"}
    metrics: dict  # condition (fused, camera_lost, lidar_lost) -> evaluation.metrics.brief_metrics
    latency_ms: dict  # str(LatencyKey) -> graph -> runtime.timing.summarise
    scoring: dict  # what the method measured and chose, its wall seconds ("seconds")
    finetune: dict  # steps, lr, batch, seconds, final losses
    prune_config: dict  # the shared budget (prune.variant.PruneConfig)
    files: dict  # file name -> sha256
    # The pruning framework's version the variant was built with (prune.framework_version): rows of different
    # versions were built under different rules.
    framework: int
    # Time target: the fraction of the prunable units' measured time to remove (DM3D with a latency cost); None
    # when the target was a parameter count.
    time_target: float | None = None
    # The sweep's own timing, kept when the graphs are re-timed side by side with the dense model.
    latency_in_sweep_ms: dict = field(default_factory=dict)
    remeasured_with_dense: bool = False

    @staticmethod
    def path(folder: str | Path) -> Path:
        return Path(folder) / MANIFEST_FILE

    @classmethod
    def exists(cls, folder: str | Path) -> bool:
        return cls.path(folder).is_file()

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        path = cls.path(folder)
        data = read_document(path, json.loads, json.JSONDecodeError, f"no variant manifest at {path}",
                             f"{path} is not valid JSON")
        missing = [f.name for f in fields(cls) if f.name not in data
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:  # e.g. `framework`, which a variant built before its version lacks
            raise UserError(f"{path}: missing key(s) {', '.join(missing)}")
        manifest = from_dict(cls, data, str(path))
        for key in manifest.latency_ms:
            LatencyKey.parse(key)
        return manifest

    def write(self, folder: str | Path) -> Path:
        """Write atomically: a reader never sees half a manifest, and a half-written one never marks a variant
        finished."""
        path = self.path(folder)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)
        return path

    def timing(self, graph: str = "fused", key: LatencyKey = ORT_CPU_2T) -> dict:
        """The timing summary (median_ms, p95_ms, ...) of one graph on one backend."""
        try:
            return self.latency_ms[str(key)][graph]
        except KeyError:
            raise UserError(f"variant {self.name}: no {graph} latency measured on {key}") from None

    def median_ms(self, graph: str = "fused", key: LatencyKey = ORT_CPU_2T) -> float:
        return float(self.timing(graph, key)["median_ms"])

    def nds(self, condition: str = "fused") -> float:
        """NDS under a sensor condition; -1 where that condition was not evaluated."""
        return float(self.metrics.get(condition, {}).get("NDS", -1.0))


def with_folders(manifests: list, root: Path, extra_folders: tuple = ()) -> list:
    """(manifest, folder) pairs: a sweep's variants in root/<name>, then variants built elsewhere (read from their
    folders), which a profile may choose among and a re-timing writes back in place."""
    return ([(m, Path(root) / m.name) for m in manifests]
            + [(Manifest.read(f), Path(f)) for f in extra_folders])


def read_manifests(root: str | Path) -> list:
    """The manifests of every finished variant in `root`, by name."""
    return [Manifest.read(p.parent) for p in sorted(Path(root).glob(f"*/{MANIFEST_FILE}"))]
