"""`fusion-prune variant-latency`: the dense model and every sweep variant timed side by side on one backend,
written to one JSON file the sweep report reads (a GPU column beside the ONNX Runtime CPU one).

Why a separate file rather than the manifests: the variants are pruned, fine-tuned and scored on the CPU machine,
while a GPU machine (an NVIDIA H200) is used only for minutes at a time. There the variants' checkpoints are timed
in one process (interleaved rounds, `time_side_by_side`), so the GPU speed-ups are ratios from one run, and the
file comes back whole. A timed call is what the node's backend call costs: inputs copied to the device, the
network, outputs copied back (preprocessing and decoding are not in it).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import DetectorConfig, load_yaml
from ..errors import UserError
from ..export.manifest import MANIFEST_FILE
from ..export.onnx_export import INPUT_NAMES, sha256
from ..model.flops import example_inputs
from ..runtime.backends import create_backend
from ..runtime.machine import cpu_description
from ..runtime.timing import summarise, time_side_by_side

MODES = ("fused", "lidar", "camera")
GPU_LATENCY = "latency_gpu.json"  # in the variants folder: what the sweep report reads


def variant_folders(dense_dir: Path, variants_root: Path) -> dict:
    """name -> folder of model.pt and the <mode>.onnx graphs (the torch backend reads only the checkpoint): the
    dense model, then every finished variant."""
    folders = {"dense": Path(dense_dir)}
    for manifest in sorted(Path(variants_root).glob(f"*/{MANIFEST_FILE}")):
        folders[manifest.parent.name] = manifest.parent
    return folders


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return cpu_description()


def time_variants(dense_dir: Path, variants_root: Path, kind: str, device: str, iterations: int = 100,
                  fp16: bool | None = None) -> dict:
    """{"backend", "device_name", "measured", "iterations", "latency_ms": {name: {mode: summary}},
    "model_sha256": {name: hash of the model.pt timed}} and, for PyTorch on a GPU, "device_ms" in the same layout:
    the CUDA graph alone, without the copies."""
    dense_dir, variants_root = Path(dense_dir), Path(variants_root)
    if not (dense_dir / "detector.yaml").is_file():
        raise UserError(f"no dense model folder at {dense_dir} (detector.yaml missing)")
    cfg = load_yaml(DetectorConfig, dense_dir / "detector.yaml")
    inputs = {n: t.numpy() for n, t in zip(INPUT_NAMES["fused"], example_inputs(cfg)["fused"])}
    options = {} if fp16 is None else {"fp16": fp16}
    backend = create_backend(kind, device, threads=2, **options)
    folders = variant_folders(dense_dir, variants_root)
    sessions = {(name, mode): backend.load(folder / f"{mode}.onnx", mode, folder / "model.pt")
                for name, folder in folders.items() for mode in MODES}
    timed = time_side_by_side({key: (lambda s: lambda: s.run(inputs))(s) for key, s in sessions.items()}, iterations)
    result = {"backend": backend.describe(), "device_name": device_name(backend.device),
              "measured": time.strftime("%Y-%m-%d"), "iterations": iterations, "latency_ms": _nested(timed),
              "model_sha256": {name: sha256(folder / "model.pt") for name, folder in folders.items()}}
    if all(getattr(s, "cuda_graph", False) for s in sessions.values()):
        result["device_ms"] = _nested({key: summarise(s.device_ms(inputs, iterations)) for key, s in sessions.items()})
    return result


def _nested(flat: dict) -> dict:
    out = {}
    for (name, mode), summary in flat.items():
        out.setdefault(name, {})[mode] = summary
    return out


def write_latency(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))


def read_latency(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def current(result: dict | None, manifests: list) -> dict | None:
    """`result` restricted to the dense model and the variants whose model.pt is the one that was timed (the hash
    in the manifest equals the one recorded at timing). A variant redone since (a method changed, a stale folder
    moved away) keeps its name but not its timing: its GPU column must go blank rather than show the old model's.
    The names dropped are listed under "stale"."""
    if result is None:
        return None
    timed = result.get("model_sha256", {})
    now = {m.name: m.files.get("model.pt") for m in manifests}
    keep = {n for n in result["latency_ms"] if n == "dense" or (n in now and timed.get(n) == now[n])}
    out = {k: v for k, v in result.items() if k not in ("latency_ms", "device_ms")}
    for key in ("latency_ms", "device_ms"):
        if key in result:
            out[key] = {n: v for n, v in result[key].items() if n in keep}
    out["stale"] = sorted(set(result["latency_ms"]) - keep)
    return out


def format_variant_latency(result: dict, out: Path) -> list:
    """Plain-text lines: per variant, the fused graph's median and p95, its ratio to dense, the single-modality
    graphs; then the CUDA graph alone (inputs already on the GPU) when the result has it."""
    def table(timings: dict, digits: int) -> list:
        dense = timings["dense"]["fused"]["median_ms"]
        return [f"{name:<34} {t['fused']['median_ms']:>9.{digits}f} {t['fused']['p95_ms']:>7.{digits}f} "
                f"{dense / t['fused']['median_ms']:>7.2f}x {t['lidar']['median_ms']:>9.{digits}f} "
                f"{t['camera']['median_ms']:>10.{digits}f}" for name, t in timings.items()]

    lines = [f"{result['backend']} on {result['device_name']}, {result['iterations']} calls per graph -> {out}",
             f"{'variant':<34} {'fused ms':>9} {'p95':>7} {'vs dense':>8} {'lidar ms':>9} {'camera ms':>10}",
             *table(result["latency_ms"], 2)]
    if "device_ms" in result:
        lines += ["the CUDA graph alone (inputs already on the GPU, CUDA events):", *table(result["device_ms"], 3)]
    return lines
