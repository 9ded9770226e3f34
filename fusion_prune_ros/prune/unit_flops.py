"""The FLOPs each prunable unit costs: the budget DM3D's knapsack spends (docs/pruning.md, "DM3D-style"), beside
the measured latency table (latency_table.py)."""
from __future__ import annotations

import numpy as np
from torch import nn

from .units import observe_units, prunable_units


def unit_macs(model: nn.Module, inputs: tuple, units: list | None = None) -> dict:
    """unit name -> multiply-accumulates of its conv for one forward of `inputs` (forward hooks): output pixels x
    weight numel for a conv, input pixels x weight numel for a transposed conv (each input pixel scatters the
    whole kernel). units: default the model's prunable units."""
    macs = {}

    def record(name, module, args, out):
        if isinstance(module, nn.ConvTranspose2d):
            pixels = args[0].numel() // args[0].shape[1]
        else:
            pixels = out.numel() // out.shape[1]
        macs[name] = pixels * module.weight.numel()

    observe_units(model, inputs, prunable_units(model) if units is None else units, record)
    return macs


def flops_costs(flops: dict, ratios: np.ndarray) -> dict:
    """unit -> its FLOPs at each pruned fraction (linear: the weights kept)."""
    return {n: f * (1.0 - np.asarray(ratios, float)) for n, f in flops.items()}


def budget_used(choice: dict, flops: dict) -> float:
    """The FLOPs an allocation (unit -> pruned fraction) keeps."""
    return sum(flops[n] * (1.0 - p) for n, p in choice.items())
