"""Backends behind one interface: ONNX Runtime and PyTorch agree; TensorRT is written to its documented API and
runs only where `tensorrt` and a GPU exist."""
import numpy as np
import pytest

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.export.onnx_export import INPUT_NAMES
from fusion_prune_ros.model.flops import example_inputs
from fusion_prune_ros.runtime.backends import available_kinds, create_backend
from fusion_prune_ros.runtime.backends import tensorrt_backend
from fusion_prune_ros.runtime.profile import load_profile


@pytest.fixture(scope="module")
def profile(shipped):
    return load_profile(shipped / "profiles" / "dense.yaml")


def _inputs(profile):
    cfg = load_yaml(DetectorConfig, profile.path(profile.detector))
    rng = np.random.default_rng(0)
    out = {n: rng.uniform(-1, 1, t.shape).astype(np.float32)
           for n, t in zip(INPUT_NAMES["fused"], example_inputs(cfg)["fused"])}
    out["presence"] = np.ones_like(out["presence"])
    return out


def test_onnxruntime_and_torch_agree_on_every_variant(profile):
    ort, torch_cpu = create_backend("onnxruntime", "cpu"), create_backend("torch", "cpu")
    inputs = _inputs(profile)
    for v in profile.variants:
        a = ort.load(profile.path(v.onnx), v.modality).run(inputs)
        b = torch_cpu.load(profile.path(v.onnx), v.modality, profile.path(v.checkpoint)).run(inputs)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-4)


def test_onnxruntime_without_spinning_gives_the_same_outputs(profile):
    """The sweep's re-timing runs sessions with spinning off: an option of the thread pool, not of the numbers."""
    from fusion_prune_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    quiet = OnnxRuntimeBackend(spinning=False)
    assert quiet.session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    v, inputs = profile.variants[0], _inputs(profile)
    a = OnnxRuntimeBackend().load(profile.path(v.onnx), v.modality).run(inputs)
    b = quiet.load(profile.path(v.onnx), v.modality).run(inputs)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_auto_picks_the_fastest_available_backend():
    kinds = available_kinds()
    assert kinds[-1] == ("onnxruntime", "cpu")  # always there, the last resort
    backend = create_backend("auto")
    assert (backend.kind, backend.device) == kinds[0]


def test_bad_files_and_names_are_one_line_errors(tmp_path, profile):
    ort = create_backend("onnxruntime", "cpu")
    with pytest.raises(UserError, match="not found"):
        ort.load(tmp_path / "missing.onnx", "fused")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(profile.path(profile.variants[0].onnx).read_bytes()[:1000])
    with pytest.raises(UserError, match="cannot load ONNX model"):
        ort.load(corrupt, "fused")
    with pytest.raises(UserError, match="unknown backend"):
        create_backend("tpu")
    with pytest.raises(UserError, match="checkpoint"):
        create_backend("torch", "cpu").load(profile.path(profile.variants[0].onnx), "fused")


@pytest.mark.skipif(not tensorrt_backend.available(),
                    reason="TensorRT cannot be installed here (PyPI has only a stub that downloads from NVIDIA's "
                           "index) and no GPU is present: the TensorRT backend runs only on a target with both")
def test_tensorrt_engine_is_cached_and_matches_onnxruntime(profile, tmp_path):
    opts = tensorrt_backend.BuildOptions(fp16=False, cache_dir=str(tmp_path))
    backend = tensorrt_backend.TensorRTBackend(device="cuda", build=opts)
    v = profile.variants[0]
    inputs = _inputs(profile)
    trt_out = backend.load(profile.path(v.onnx), v.modality).run(inputs)
    ort_out = create_backend("onnxruntime", "cpu").load(profile.path(v.onnx), v.modality).run(inputs)
    for x, y in zip(trt_out, ort_out):
        np.testing.assert_allclose(x, y, atol=1e-3)
    engines = list(tmp_path.glob("*.engine"))
    mtime = engines[0].stat().st_mtime_ns
    backend.load(profile.path(v.onnx), v.modality)  # same key: loaded from the cache, not rebuilt
    assert [e.stat().st_mtime_ns for e in tmp_path.glob("*.engine")] == [mtime]
    engines[0].write_bytes(b"not an engine")  # a foreign / truncated engine is rebuilt, not a crash
    backend.load(profile.path(v.onnx), v.modality)
    assert engines[0].stat().st_size > 100


def test_tensorrt_unavailable_is_a_clear_error():
    if tensorrt_backend.available():
        pytest.skip("TensorRT is available here")
    with pytest.raises(UserError, match="TensorRT is not available"):
        create_backend("tensorrt", "cuda")
