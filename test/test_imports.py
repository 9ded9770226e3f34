"""The node's process imports what inference needs: not the nuScenes devkit, scikit-learn, matplotlib or torch,
and of SciPy only the top-level package that numba's own version check imports. Each import runs in a fresh
interpreter, whose sys.modules is the answer."""
import json
import subprocess
import sys

import pytest

NOT_FOR_INFERENCE = {"nuscenes", "sklearn", "matplotlib", "torch"}


def _modules_after(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    return set(json.loads(out.splitlines()[-1]))


def _assert_inference_only(loaded: set) -> None:
    assert not {m.split(".")[0] for m in loaded} & NOT_FOR_INFERENCE
    scipy = {m for m in loaded if m.split(".")[0] == "scipy"}
    assert scipy <= {m for m in _modules_after("import numba") if m.split(".")[0] == "scipy"}


@pytest.mark.parametrize("module", ["runtime.pipeline", "runtime.pool", "runtime.backends", "tools.bench"])
def test_the_inference_path_imports_no_evaluation_or_training_code(module):
    _assert_inference_only(_modules_after(f"import fusion_prune_ros.{module}"))


@pytest.mark.parametrize("module", ["runtime.core", "ros.node"])
def test_the_node_imports_no_evaluation_or_training_code(module):
    if module == "ros.node":
        pytest.importorskip("rclpy")
    _assert_inference_only(_modules_after(f"import fusion_prune_ros.{module}"))


def test_a_core_on_a_machine_without_cuda_runs_without_torch(shipped):
    """backend 'auto' (the node's default) probes for GPUs without importing torch where no CUDA driver loads."""
    from fusion_prune_ros.runtime.backends import cuda_driver_present

    if cuda_driver_present():
        pytest.skip("a CUDA driver is present: auto may choose a torch backend")
    loaded = _modules_after(
        "from fusion_prune_ros.runtime.core import CoreConfig, DetectorCore\n"
        f"core = DetectorCore(CoreConfig(profile={str(shipped / 'profiles' / 'dense.yaml')!r}))\n"
        "assert core.backend.kind == 'onnxruntime'")
    assert "torch" not in {m.split(".")[0] for m in loaded}
