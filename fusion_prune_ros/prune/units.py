"""Prunable units: the conv weights of the camera branch, the LiDAR branch, the fuser and the BEV backbone / head,
each tagged with its modality (docs/pruning.md, "The framework").

The final 1x1 head convs (they define the outputs) stay dense, and so does the first conv of each branch (it reads the
raw input) unless the detector makes its output channels prunable. Biases and BatchNorm are not scored; under channel pruning BatchNorm is sliced with its conv.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

MODALITY_OF_PREFIX = (("camera.", "camera"), ("lidar.", "lidar"), ("fuser.", "fusion"), ("bev.", "fusion"),
                      ("head.", "head"))
INPUT_CONVS = ("lidar.stem.0", "camera.backbone.stem.0")
OUTPUT_CONVS = ("head.heatmap", "head.regression")


def dense_layers(model: nn.Module) -> tuple:
    """The convs no pruning touches: the two output convs, and the input convs unless the detector makes their
    output channels prunable (`ModelConfig.prunable_input_convs`; their inputs, the raw data, stay whole)."""
    return OUTPUT_CONVS + (() if getattr(model, "prunable_input_convs", False) else INPUT_CONVS)


@dataclass(frozen=True)
class Unit:
    name: str
    module: nn.Module
    modality: str

    @property
    def weight(self):
        return self.module.weight

    @property
    def numel(self) -> int:
        return self.module.weight.numel()


def modality_of(name: str) -> str:
    """The module tag of a layer name (camera, lidar, fusion or head)."""
    modality = next((m for prefix, m in MODALITY_OF_PREFIX if name.startswith(prefix)), None)
    if modality is None:
        raise ValueError(f"conv {name} belongs to no known module of the detector")
    return modality


def prunable_units(model: nn.Module) -> list:
    return [Unit(name, module, modality_of(name)) for name, module in model.named_modules()
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and name not in dense_layers(model)]


def prunable_params(model: nn.Module) -> int:
    return sum(u.numel for u in prunable_units(model))


def weights_of(model: nn.Module) -> dict:
    """unit name -> a detached copy of its weight."""
    return {u.name: u.weight.detach().clone() for u in prunable_units(model)}


def observe_units(model: nn.Module, inputs: tuple, units: list, record: Callable) -> None:
    """One forward of `inputs` (eval mode, no gradients) calling record(unit name, module, args, output) for every
    unit's conv as it runs: what the units see in a real frame (input shapes, output pixels), for cost models."""
    handles = [u.module.register_forward_hook(
        (lambda name: lambda module, args, out: record(name, module, args, out))(u.name)) for u in units]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
