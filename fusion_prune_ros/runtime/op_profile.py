"""Where an ONNX graph's time goes on ONNX Runtime CPU: per operator type and per node, from ONNX Runtime's own
profiler, with the same session options the node uses.

Why: channel pruning's latency floor (every prunable conv at its narrowest) is far from zero. This names the
operators that hold the remainder (the convs reading the raw inputs, which the specification keeps dense, the
view transform, the head's pixel shuffle), so the sweep report can say why a speed-up target is out of reach
instead of only that it is.
"""
from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .backends.onnxruntime_backend import OnnxRuntimeBackend


@dataclass
class OpProfile:
    run_ms: float  # median of the profiled runs, as the profiler saw them
    by_op_ms: dict  # operator type (after ONNX Runtime's fusions, e.g. FusedConv) -> ms per run
    top_nodes: list  # the slowest nodes: {"op", "ms", "input_shape", "output_shape", "reads"}
    reads_ms: dict  # graph input name -> ms per run of the nodes whose first input has that input's shape


def profile_ops(onnx_path: str | Path, inputs: dict, threads: int = 2, warmup: int = 5, iterations: int = 30,
                top: int = 6) -> dict:
    """Run the graph warmup + iterations times with profiling on; returns an OpProfile as a dict (JSON-ready).
    A node whose first input has a graph input's shape is taken to read that input (the branches' first convs,
    ONNX Runtime's layout reorders of the raw inputs): its time is summed per input in `reads_ms`."""
    import onnxruntime as ort

    options = OnnxRuntimeBackend(device="cpu", threads=threads).session_options()
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed = {i.name: inputs[i.name] for i in session.get_inputs()}
        for _ in range(warmup + iterations):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    if len(runs) != warmup + iterations:
        raise RuntimeError(f"ONNX Runtime's profile holds {len(runs)} runs, expected {warmup + iterations}")
    start = runs[warmup]["ts"]
    by_op, by_node, info = defaultdict(float), defaultdict(float), {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        by_op[e["args"]["op_name"]] += e["dur"] / 1000 / iterations
        by_node[e["name"]] += e["dur"] / 1000 / iterations
        info[e["name"]] = e["args"]
    input_shapes = {tuple(v.shape): k for k, v in feed.items()}
    nodes, reads_ms = [], defaultdict(float)
    for name in sorted(by_node, key=by_node.get, reverse=True):
        args = info[name]
        shape_in = [next(iter(d.values())) for d in args.get("input_type_shape", [])]
        shape_out = [next(iter(d.values())) for d in args.get("output_type_shape", [])]
        reads = input_shapes.get(tuple(shape_in[0])) if shape_in else None
        if reads:
            reads_ms[reads] += by_node[name]
        nodes.append({"op": args["op_name"], "ms": round(by_node[name], 3),
                      "input_shape": shape_in[0] if shape_in else None,
                      "output_shape": shape_out[0] if shape_out else None, "reads": reads})
    profile = OpProfile(run_ms=float(np.median([r["dur"] for r in runs[warmup:]])) / 1000,
                        by_op_ms={k: round(v, 3) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
                        top_nodes=nodes[:top], reads_ms={k: round(v, 3) for k, v in reads_ms.items()})
    return asdict(profile)
