"""FLOPs and parameters of the detector's graphs, counted by torch's own FlopCounterMode on one frame.

torch counts a multiply-add as 2 FLOPs (fvcore and thop count it as 1); reports give both GFLOPs and GMACs.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import DetectorConfig
from .detector import FusionDetector, SingleModality
from .graph_io import INPUT_NAMES, input_shapes


def example_inputs(cfg: DetectorConfig, batch: int = 1, n_cameras: int = 6) -> dict:
    """Zero-valued inputs of the right shapes for each graph (export, FLOP counting, benchmarks); presence ones."""
    tensors = {name: torch.zeros(shape) for name, shape in input_shapes(cfg, batch, n_cameras).items()}
    tensors["presence"] += 1
    return {mode: tuple(tensors[name] for name in names) for mode, names in INPUT_NAMES.items()}


def graph(model: FusionDetector, mode: str) -> torch.nn.Module:
    return model if mode == "fused" else SingleModality(model, mode).train(model.training)


def count_flops(model: FusionDetector, cfg: DetectorConfig) -> dict:
    """{mode: {'gflops', 'gmacs'}} plus 'params' (millions)."""
    inputs = example_inputs(cfg)
    out = {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}
    model.eval()
    for mode in ("fused", "lidar", "camera"):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            graph(model, mode)(*inputs[mode])
        flops = counter.get_total_flops()
        out[mode] = {"gflops": round(flops / 1e9, 3), "gmacs": round(flops / 2e9, 3)}
    return out
