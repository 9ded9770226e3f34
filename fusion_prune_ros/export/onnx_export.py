"""ONNX export of the three graphs (fused, LiDAR-only, camera-only): everything between preprocessing and decoding.

Shapes inside are static (batch 1, six cameras): dynamic point counts stay in preprocessing, and TensorRT builds
its fastest engines for static shapes. torch's default (dynamo + onnxscript) exporter at opset 18, its native
opset (GridSample needs >= 16); the graph holds only Conv, ConvTranspose, GridSample, DepthToSpace (unless the
detector leaves the head's pixel shuffle to the decoder), Resize and shape ops, all supported by TensorRT 10.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import torch

from ..config import DetectorConfig
from ..errors import UserError
from ..model.detector import FusionDetector, deployed_outputs
from ..model.flops import example_inputs, graph
from ..model.graph_io import INPUT_NAMES, OUTPUT_NAMES
from ..runtime.graph_files import hash_file
from .shared_weights import pack

OPSET = 18


def export_onnx(model: FusionDetector, cfg: DetectorConfig, mode: str, path: str | Path) -> Path:
    """Write one graph to `path` and check it with onnx.checker; returns the path."""
    path = Path(path)
    model.eval()
    inputs = example_inputs(cfg)[mode]
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), deployed_outputs(model):
        torch.onnx.export(graph(model, mode), inputs, str(tmp), input_names=INPUT_NAMES[mode],
                          output_names=OUTPUT_NAMES, opset_version=OPSET, dynamo=True, verbose=False,
                          external_data=False)
    onnx.checker.check_model(onnx.load(str(tmp)))
    tmp.replace(path)
    return path


def export_all(model: FusionDetector, cfg: DetectorConfig, out_dir: str | Path) -> dict:
    """fused / lidar / camera graphs as fused.onnx ..., their weights in one shared weights.bin
    (`shared_weights.pack`); returns {mode: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {mode: export_onnx(model, cfg, mode, out_dir / f"{mode}.onnx") for mode in INPUT_NAMES}
    return dict(zip(paths, pack(list(paths.values()), out_dir)))


def onnx_session(path: str | Path, threads: int = 2):
    """An ONNX Runtime CPU session; a missing or corrupt file is a one-line error."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for invalid models
        raise UserError(f"cannot load ONNX model {path}: {str(e).splitlines()[0][:200]}") from None


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    hash_file(h, Path(path))
    return h.hexdigest()


def parity(model: FusionDetector, cfg: DetectorConfig, mode: str, path: str | Path, seed: int = 0) -> float:
    """Max |ORT - torch| over both outputs for random inputs of the graph's shapes (fp32)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.rand(t.shape, generator=gen) * 2 - 1 for t in example_inputs(cfg)[mode]]
    if mode == "fused":
        inputs[3] = torch.ones_like(inputs[3])
    with torch.no_grad(), deployed_outputs(model):
        expected = graph(model.eval(), mode)(*inputs)
    session = onnx_session(path)
    got = session.run(None, {n: t.numpy() for n, t in zip(INPUT_NAMES[mode], inputs)})
    return float(max(np.abs(g - e.numpy()).max() for g, e in zip(got, expected)))
