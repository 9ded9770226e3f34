"""A model folder's graphs written with their weights in one shared file (ONNX external data).

The LiDAR-only and camera-only graphs are the fused graph without one branch, so the three graphs of a model hold
mostly the same tensors: detector v2's dense graphs carry 39.0 MB of weights in three files, 13.9 MB of them
distinct. The package ships its models inside its repository, so `pack` writes each distinct tensor once, into
one weights file beside the graphs, which name it by offset and length. ONNX Runtime and TensorRT's ONNX parser
read such weights from the graph's folder (`runtime/graph_files.py` lists what a graph consists of). Each tensor
starts at a multiple of 4096 bytes, the alignment the ONNX spec recommends so that a runtime may map the file
instead of copying it; tensors under 1 KB stay inside their graph.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
from onnx.external_data_helper import set_external_data

from ..atomic import write_bytes_atomically

WEIGHTS_FILE = "weights.bin"
ALIGN = 4096
INLINE_BELOW = 1024  # bytes: onnx's own threshold for external data


def pack(sources: list, out_dir: str | Path, weights_name: str = WEIGHTS_FILE) -> list:
    """Write the graphs `sources` (paths; weights inline or external) into `out_dir` under their file names, every
    tensor of INLINE_BELOW bytes or more in one file `weights_name` there, each distinct tensor once; returns the
    written graphs' paths. The sources are read whole before anything is written, so out_dir may be their own
    folder, and a graph is replaced only once the weights file it names is complete."""
    out_dir = Path(out_dir)
    models = [onnx.load(str(p)) for p in sources]  # external data resolved from each source's own folder
    blob, where = bytearray(), {}
    for model in models:
        for tensor in model.graph.initializer:
            if not tensor.HasField("raw_data") or len(tensor.raw_data) < INLINE_BELOW:
                continue
            data = tensor.raw_data
            key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(data).digest())
            if key not in where:
                blob.extend(b"\0" * (-len(blob) % ALIGN))
                where[key] = len(blob)
                blob.extend(data)
            set_external_data(tensor, weights_name, where[key], len(data))
            tensor.ClearField("raw_data")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(out_dir / weights_name, bytes(blob))
    paths = [out_dir / Path(p).name for p in sources]
    for model, path in zip(models, paths):
        write_bytes_atomically(path, model.SerializeToString())
    return paths
