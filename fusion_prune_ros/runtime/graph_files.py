"""What an ONNX graph consists of on disk: the graph file and the external weight files it names (a model
folder's graphs share one, `export/shared_weights.py`). Copying a graph means copying all of them, and a digest of
what a graph computes (the TensorRT engine cache's key, a profile's `sha256`) must cover the weights too."""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import UserError


def graph_files(onnx_path: str | Path) -> list:
    """[the graph, then each external data file it names, in first-use order]."""
    import onnx

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"ONNX file not found: {onnx_path}")
    model = onnx.load(str(onnx_path), load_external_data=False)
    names: list = []
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            name = next(e.value for e in tensor.external_data if e.key == "location")
            if name not in names:
                names.append(name)
    files = [onnx_path] + [onnx_path.parent / name for name in names]
    missing = [f.name for f in files[1:] if not f.is_file()]
    if missing:
        raise UserError(f"{onnx_path}: its weights file(s) {', '.join(missing)} are missing beside it")
    return files


def graph_digest(onnx_path: str | Path) -> str:
    """sha256 over the graph and its weight files (a graph with its weights inline: the file's own sha256)."""
    files = graph_files(onnx_path)
    h = hashlib.sha256()
    for i, path in enumerate(files):
        if i:
            h.update(b"\0" + path.name.encode() + b"\0")
        hash_file(h, path)
    return h.hexdigest()


def hash_file(h, path: Path) -> None:
    """Feed a file's bytes to the hash object `h`, a MB at a time (graphs and checkpoints need not fit twice)."""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
