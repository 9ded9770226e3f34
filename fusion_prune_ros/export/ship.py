"""A trained checkpoint -> a deployable model folder and the profile that points the node at it.

The folder holds the checkpoint, the three ONNX graphs (fused, LiDAR-only, camera-only) with the weights they share
(`weights.bin`, `shared_weights.py`), the detector's input config and a metadata file (config, data version and
seed, training command, git commit, FLOPs, parameters, metrics, file hashes, measured ONNX Runtime CPU latency).
The profile lists the three graphs as variants with their accuracy under each sensor condition and their latency,
ready for the policy.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..config import save_yaml
from ..errors import UserError
from ..model.checkpoint import load_detector
from ..model.flops import example_inputs
from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from ..runtime.graph_files import graph_digest
from ..runtime.latency_key import ORT_CPU_2T
from ..runtime.profile import Profile, Variant, save_profile
from ..runtime.timing import time_calls
from .onnx_export import INPUT_NAMES, export_all, parity, sha256
from .shared_weights import WEIGHTS_FILE

def ship(checkpoint: str | Path, out_dir: str | Path, name: str, profile_path: str | Path | None = None,
         iterations: int = 20) -> dict:
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    model, cfg, meta = load_detector(checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint.resolve() != (out_dir / "model.pt").resolve():
        shutil.copyfile(checkpoint, out_dir / "model.pt")
    save_yaml(cfg, out_dir / "detector.yaml")
    paths = export_all(model, cfg, out_dir)
    backend = OnnxRuntimeBackend(device="cpu", threads=2)
    inputs = {n: t.numpy() for n, t in zip(INPUT_NAMES["fused"], example_inputs(cfg)["fused"])}
    graphs = {}
    for mode, path in paths.items():
        err = parity(model, cfg, mode, path)
        if err >= 1e-3:
            raise UserError(f"ONNX Runtime output of {path} differs from PyTorch by {err:.2e}")
        session = backend.load(path, mode)
        graphs[mode] = {"file": path.name, "sha256": graph_digest(path), "bytes": path.stat().st_size,
                        "max_abs_diff_vs_torch": err, str(ORT_CPU_2T): time_calls(lambda: session.run(inputs), iterations)}
    weights = out_dir / WEIGHTS_FILE
    meta = {**meta, "name": name, "graphs": graphs, "checkpoint_sha256": sha256(out_dir / "model.pt"),
            "weights": {"file": weights.name, "sha256": sha256(weights), "bytes": weights.stat().st_size},
            "latency_note": f"ONNX Runtime CPU, 2 threads, batch 1, {os.cpu_count()}-core machine"}
    (out_dir / "metadata.json").write_text(json.dumps(meta, indent=1))
    if profile_path is not None:
        write_dense_profile(meta, out_dir, Path(profile_path), name)
    return meta


def write_dense_profile(meta: dict, model_dir: Path, profile_path: Path, name: str) -> Profile:
    """A profile with the dense model's three graphs: fused first, then the sensor-loss fallbacks. Each variant
    carries the model's metrics under every condition; a LiDAR-only graph computes exactly what the fused network
    computes with the camera missing (tested), so its accuracy is the model's `camera_lost` row."""
    rel = Path(os.path.relpath(model_dir, profile_path.parent))
    complexity = meta.get("complexity", {})
    variants = []
    for mode in ("fused", "lidar", "camera"):
        g = meta["graphs"][mode]
        metrics = meta.get("metrics", {})
        variants.append(Variant(
            name=f"{name}-{mode}", modality=mode, onnx=str(rel / g["file"]), checkpoint=str(rel / "model.pt"),
            params_m=complexity.get("params_m", 0.0), gflops=complexity.get(mode, {}).get("gflops", 0.0),
            metrics={k: {"mAP": v["mAP"], "NDS": v["NDS"]} for k, v in metrics.items()},
            latency_ms={str(ORT_CPU_2T): g[str(ORT_CPU_2T)]["median_ms"]}, sha256=g["sha256"]))
    profile = Profile(name=profile_path.stem, variants=variants, detector=str(rel / "detector.yaml"))
    profile_path.parent.mkdir(parents=True, exist_ok=True)
    save_profile(profile, profile_path)
    return profile
