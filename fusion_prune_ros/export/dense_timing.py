"""The dense model's graph timings, the reference every variant's speed-up is taken against.

A sweep re-times the dense graphs beside its variants (`prune.retime`) and writes them to the sweep folder's
`dense_latency.json`; without that file the export's own timing in the model folder's `metadata.json` is used.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..runtime.latency_key import ORT_CPU_2T

DENSE_LATENCY = "dense_latency.json"


def dense_latency(dense_meta: dict, variants_root: Path) -> dict:
    """graph -> median ms of the dense graphs: the side-by-side re-timing when there is one, else the export's."""
    key = str(ORT_CPU_2T)
    path = Path(variants_root) / DENSE_LATENCY
    if path.is_file():
        return {graph: v["median_ms"] for graph, v in json.loads(path.read_text())[key].items()}
    return {graph: g[key]["median_ms"] for graph, g in dense_meta["graphs"].items()}
