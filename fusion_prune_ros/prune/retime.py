"""The sweep's graphs re-timed side by side with the dense model, and the floor of what channel pruning can gain.

Each variant is timed when it finishes, often while the next one trains on the same cores; re-timed together in
one process, the table's speed-ups are ratios from one run.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import DetectorConfig, load_yaml
from ..errors import UserError
from ..export.dense_timing import DENSE_LATENCY
from ..export.manifest import GRAPHS, with_folders
from ..export.onnx_export import INPUT_NAMES, export_onnx
from ..model.checkpoint import load_detector
from ..model.flops import count_flops, example_inputs
from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from ..runtime.latency_key import ORT_CPU_2T
from ..runtime.op_profile import profile_ops
from ..runtime.timing import time_side_by_side
from .granularity import narrowest


def remeasure_latency(manifests: list, dense_dir: Path, variants_root: Path, iterations: int = 40,
                      extra_folders: tuple = ()) -> None:
    """Re-time the dense model's and every variant's three graphs side by side (ONNX Runtime CPU, 2 threads) and
    write the numbers into the manifests (the sweep's own measurement kept as `latency_in_sweep_ms`) and
    variants_root/dense_latency.json, with the narrowest channel-pruned network (granularity.narrowest) timed
    beside them: the floor of what channel pruning can gain. `extra_folders`: variants built outside the sweep
    (`fusion-prune prune`) that a profile may choose from, re-timed in the same run and written back in place."""
    key = str(ORT_CPU_2T)
    cfg = load_yaml(DetectorConfig, dense_dir / "detector.yaml")
    inputs = {n: t.numpy() for n, t in zip(INPUT_NAMES["fused"], example_inputs(cfg)["fused"])}
    # Spinning off and one timed call per graph per round: two re-timings then agree within about 5 %; with
    # spinning on and 4 rounds of 10 calls the ratios moved by a median of 17 % (docs/pruning.md).
    backend = OnnxRuntimeBackend(device="cpu", threads=2, spinning=False)
    variants = with_folders(manifests, variants_root, extra_folders)
    folders = {"dense": dense_dir}
    for m, folder in variants:
        if m.name in folders:
            raise UserError(f"{folder}: a variant named {m.name} is already among the ones re-timed")
        folders[m.name] = folder
    fns = {}
    for name, folder in folders.items():
        for mode in GRAPHS:
            session = backend.load(folder / f"{mode}.onnx", mode)
            fns[(name, mode)] = (lambda s: lambda: s.run(inputs))(session)
    floor_model = narrowest(load_detector(dense_dir / "model.pt")[0], example_inputs(cfg)["fused"])
    (variants_root / "channel_floor").mkdir(parents=True, exist_ok=True)
    floor_path = export_onnx(floor_model, cfg, "fused", variants_root / "channel_floor" / "fused.onnx")
    fns[("channel_floor", "fused")] = (lambda s: lambda: s.run(inputs))(backend.load(floor_path, "fused"))
    timed = time_side_by_side(fns, iterations, rounds=iterations)
    dense = {mode: timed[("dense", mode)] for mode in GRAPHS}
    size = count_flops(floor_model, cfg)
    # Where the floor's time goes, against dense (same idle machine, right after the timing). The ~150 timed
    # sessions are released first, so the profiled session runs alone: while their thread pools stayed alive, the
    # floor's GridSample read 0.5 ms in one report and 3.9 ms in the next.
    fns.clear()
    ops = {"dense": profile_ops(dense_dir / "fused.onnx", inputs), "floor": profile_ops(floor_path, inputs)}
    floor = {"params_m": size["params_m"], "gflops": size["fused"]["gflops"],
             key: timed[("channel_floor", "fused")], "ops": ops}
    (variants_root / DENSE_LATENCY).write_text(json.dumps({key: dense, "channel_floor": floor}, indent=1))
    for m, folder in variants:
        if not m.remeasured_with_dense:
            m.latency_in_sweep_ms = {key: m.latency_ms[key]}
        m.latency_ms = {**m.latency_ms, key: {graph: timed[(m.name, graph)] for graph in GRAPHS}}
        m.remeasured_with_dense = True
        m.write(folder)


def channel_floor(variants_root: Path) -> dict | None:
    """The narrowest network's size and latency from the last side-by-side re-timing (None before one), with the
    dense fused graph's median from the same timing as "dense_ms": the floor's ratio is between those two."""
    path = Path(variants_root) / DENSE_LATENCY
    if not path.is_file():
        return None
    timed = json.loads(path.read_text())
    return {**timed["channel_floor"], "dense_ms": timed[str(ORT_CPU_2T)]["fused"]["median_ms"]}
