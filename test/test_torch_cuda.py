"""PyTorch's CUDA path (fp16 weights, one CUDA graph per session) against the CPU in fp32, on the shipped models:
the dense detector and the channel-pruned variants in models/variants (pickled modules with widths no config
describes). Runs where PyTorch sees a GPU; CI and the 2-core machines skip it."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.export.onnx_export import INPUT_NAMES
from fusion_prune_ros.model.flops import example_inputs
from fusion_prune_ros.runtime.backends import create_backend

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: PyTorch's GPU path (fp16, CUDA graph) runs only where one is")

ROOT = Path(__file__).parents[1]
MODELS = [ROOT / "models" / "base", *sorted(p.parent for p in (ROOT / "models" / "variants").glob("*/model.pt"))]


def _frames(n: int) -> list:
    """n different realistic-range inputs (the presence flags on), so a graph replaying stale inputs would show."""
    cfg = load_yaml(DetectorConfig, ROOT / "models" / "base" / "detector.yaml")
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n):
        f = {name: rng.uniform(-1, 1, t.shape).astype(np.float32)
             for name, t in zip(INPUT_NAMES["fused"], example_inputs(cfg)["fused"])}
        f["presence"] = np.ones_like(f["presence"])
        frames.append(f)
    return frames


@pytest.mark.parametrize("folder", MODELS, ids=[p.name for p in MODELS])
@pytest.mark.parametrize("mode", ["fused", "lidar", "camera"])
def test_cuda_graph_fp16_matches_cpu_fp32_frame_after_frame(folder, mode):
    cpu = create_backend("torch", "cpu").load(folder / f"{mode}.onnx", mode, folder / "model.pt")
    gpu = create_backend("torch", "cuda").load(folder / f"{mode}.onnx", mode, folder / "model.pt")
    assert gpu.cuda_graph and gpu.dtype == torch.float16  # what the node runs on a GPU by default
    previous = None
    for frame in _frames(3):
        want, got = cpu.run(frame), gpu.run(frame)
        assert all(g.dtype == np.float32 for g in got)
        heat_want, heat_got = 1 / (1 + np.exp(-want[0])), 1 / (1 + np.exp(-got[0]))
        assert np.abs(heat_want - heat_got).max() < 2e-2  # fp16 against fp32, on scores in [0, 1]
        for w, g in zip(want[1:], got[1:]):
            np.testing.assert_allclose(g, w, atol=5e-2 * (1 + np.abs(w).max()))
        if previous is not None:  # the replayed graph read this frame's inputs, not the captured ones
            assert not np.allclose(got[0], previous)
        previous = got[0]
    alone = gpu.device_ms(frame, 5)  # the graph without the copies: what variant-latency reports beside a call
    assert len(alone) == 5 and all(0 < ms < 1000 for ms in alone)
