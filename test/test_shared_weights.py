"""A model folder's graphs share one weights file: smaller on disk, the same outputs, and every file a graph needs
copied and hashed with it."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.export.onnx_export import sha256
from fusion_prune_ros.export.shared_weights import ALIGN, WEIGHTS_FILE, pack
from fusion_prune_ros.model.graph_io import INPUT_NAMES, input_shapes
from fusion_prune_ros.runtime.graph_files import graph_digest, graph_files

MODES = ("fused", "lidar", "camera")


def _tensor_bytes(path) -> dict:
    """{(dtype, dims, bytes): size} of a graph's initializers of at least 1 KB (external data resolved)."""
    return {(t.data_type, tuple(t.dims), t.raw_data): len(t.raw_data)
            for t in onnx.load(str(path)).graph.initializer if len(t.raw_data) >= 1024}


def _run(path, mode: str, cfg: DetectorConfig) -> list:
    rng = np.random.default_rng(0)
    shapes = input_shapes(cfg)
    inputs = {n: rng.uniform(-1, 1, shapes[n]).astype(np.float32) for n in INPUT_NAMES[mode]}
    if "presence" in inputs:
        inputs["presence"][:] = 1.0
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs)


def _inline_copy(path, dest):
    """The graph with every weight inside it, as the exporter writes it before packing."""
    onnx.save(onnx.load(str(path)), str(dest))
    return dest


def test_the_shipped_graphs_share_one_weights_file_and_compute_what_inline_weights_compute(shipped, tmp_path):
    models = shipped / "models"
    cfg = load_yaml(DetectorConfig, models / "detector.yaml")
    weights = models / WEIGHTS_FILE
    distinct: dict = {}
    for mode in MODES:
        graph = models / f"{mode}.onnx"
        assert graph_files(graph) == [graph, weights]
        tensors = _tensor_bytes(graph)
        distinct.update(tensors)
        inline = _inline_copy(graph, tmp_path / f"{mode}.onnx")
        # the graph file lost its large tensors, keeping a reference (location, offset, length) to each
        assert graph.stat().st_size <= inline.stat().st_size - sum(tensors.values()) + 200 * len(tensors)
        for packed_out, inline_out in zip(_run(graph, mode, cfg), _run(inline, mode, cfg)):
            np.testing.assert_array_equal(packed_out, inline_out)
    # each distinct tensor once, each starting at a multiple of ALIGN
    assert sum(distinct.values()) <= weights.stat().st_size <= sum(distinct.values()) + ALIGN * len(distinct)
    one = onnx.load(str(models / "fused.onnx"), load_external_data=False).graph.initializer
    offsets = [int(e.value) for t in one for e in t.external_data if e.key == "offset"]
    assert offsets and all(o % ALIGN == 0 for o in offsets)


def test_packing_a_subset_keeps_only_its_tensors_and_the_digest_covers_the_weights(shipped, tmp_path):
    models = shipped / "models"
    cfg = load_yaml(DetectorConfig, models / "detector.yaml")
    (lidar,) = pack([models / "lidar.onnx"], tmp_path / "ship")
    assert lidar == tmp_path / "ship" / "lidar.onnx"
    assert (tmp_path / "ship" / WEIGHTS_FILE).stat().st_size < (models / WEIGHTS_FILE).stat().st_size
    for a, b in zip(_run(lidar, "lidar", cfg), _run(models / "lidar.onnx", "lidar", cfg)):
        np.testing.assert_array_equal(a, b)
    # the digest changes with the weights even though the graph file does not
    before, graph_bytes = graph_digest(lidar), lidar.read_bytes()
    assert before != sha256(lidar)
    blob = bytearray((tmp_path / "ship" / WEIGHTS_FILE).read_bytes())
    blob[ALIGN - 1 if len(blob) < ALIGN else 0] ^= 1
    (tmp_path / "ship" / WEIGHTS_FILE).write_bytes(bytes(blob))
    assert lidar.read_bytes() == graph_bytes and graph_digest(lidar) != before
    # a graph whose weights file is missing is a clear error, not a load failure deep in a runtime
    (tmp_path / "ship" / WEIGHTS_FILE).unlink()
    with pytest.raises(UserError, match="weights file.*missing"):
        graph_files(lidar)
    # a graph with its weights inline is its own digest
    inline = _inline_copy(models / "camera.onnx", tmp_path / "camera.onnx")
    assert graph_files(inline) == [inline] and graph_digest(inline) == sha256(inline)
