"""Measured latency per (unit, pruned fraction): the third cost an allocator can spend besides a parameter count
and FLOPs (docs/pruning.md, "A measured latency table instead of FLOPs").

Why: FLOPs fall linearly with the channels removed, time on the target does not. On ONNX Runtime CPU a conv's time
moves in steps of the SIMD width and flattens out at narrow widths, where memory traffic and the operator's fixed
cost dominate (the channel floor: 3.8x faster at about 9x fewer FLOPs, docs/pruning.md). A knapsack fed FLOPs
spends the budget on cuts that save little time; fed this table it spends it where the time goes.

How: every prunable conv is timed alone, as a one-node ONNX graph (onnx.helper; the module's kernel, stride,
padding and dilation; random weights) on the input shape it sees in one forward of the example frame, at output
widths (1 - phi) * C_out rounded to `round_to` (the widths channel pruning will realise), with the ONNX Runtime
settings of the sweep's latency column (2 threads, spinning off), the widths timed side by side in interleaved
rounds. phi is the fraction of the unit's weights removed, taken from its output channels with the input width
dense: the same weight fraction the FLOPs cost (FLOPs x (1 - phi)) charges, on the grid DM3D's curves live on (a
unit is charged for its own weights only; the next unit's cheaper input is that unit's business). Timed alone, a
conv also pays ONNX Runtime's layout reorders (NCHW <-> blocked NCHWc) that a whole graph amortises, so the table
is a relative price per unit, not a prediction of the graph's time. The table lives on a coarse grid and is
interpolated linearly onto the allocator's ratio grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from ..runtime.timing import sample_side_by_side
from .units import observe_units, prunable_units

COARSE = tuple(np.round(np.arange(10) / 10, 2))  # phi = 0, 0.1, ..., 0.9


@dataclass
class LatencyTable:
    """ms[unit][k]: median milliseconds of the unit's conv alone with its output channels pruned by phis[k]."""

    phis: tuple
    ms: dict
    widths: dict  # unit -> the output widths timed, one per phi

    def on_grid(self, ratios) -> dict:
        """unit -> latency at each of `ratios` (linear between the timed phis, flat beyond the last)."""
        return {n: np.interp(np.asarray(ratios, float), self.phis, ms) for n, ms in self.ms.items()}

    def total(self, choice: dict) -> float:
        """Summed unit latency of an allocation (unit -> pruned fraction)."""
        return float(sum(np.interp(phi, self.phis, self.ms[n]) for n, phi in choice.items()))


def input_shapes(model: nn.Module, inputs: tuple, units: list) -> dict:
    """unit name -> the shape of the tensor its conv reads in one forward of `inputs`."""
    shapes = {}
    observe_units(model, inputs, units, lambda name, module, args, out: shapes.__setitem__(name, tuple(args[0].shape)))
    return shapes


def conv_graph(module: nn.Module, in_shape: tuple, out_channels: int):
    """A one-node ONNX model: `module`'s conv (or transposed conv) with `out_channels` outputs on `in_shape`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if module.groups != 1:
        raise ValueError(f"grouped convs are not in the latency table yet (groups={module.groups})")
    if isinstance(module.padding, str):
        raise ValueError(f"padding={module.padding!r}: give the conv explicit padding")
    transposed = isinstance(module, nn.ConvTranspose2d)
    cin = in_shape[1]
    kernel = list(module.kernel_size)
    shape = (cin, out_channels, *kernel) if transposed else (out_channels, cin, *kernel)
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.01, "w")]
    names = ["x", "w"]
    if module.bias is not None:
        inits.append(numpy_helper.from_array(np.zeros(out_channels, np.float32), "b"))
        names.append("b")
    attrs = {"kernel_shape": kernel, "strides": list(module.stride), "dilations": list(module.dilation),
             "pads": [*module.padding, *module.padding], "group": 1}
    if transposed:
        attrs["output_padding"] = list(module.output_padding)
    node = helper.make_node("ConvTranspose" if transposed else "Conv", names, ["y"], **attrs)
    graph = helper.make_graph([node], "unit", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=onnx.IR_VERSION)


def pruned_width(channels: int, phi: float, round_to: int) -> int:
    """The output width channel pruning realises for a pruned fraction phi (at least one `round_to` block)."""
    keep = (1.0 - phi) * channels
    if round_to > 1:
        return int(min(channels, max(round_to, round_to * round(keep / round_to))))
    return int(max(1, round(keep)))


def latency_table(model: nn.Module, inputs: tuple, phis: tuple = COARSE, round_to: int = 8, iterations: int = 20,
                  rounds: int = 4, threads: int = 2) -> LatencyTable:
    """Time every prunable unit of `model` (on `inputs`, one example frame) at every pruned fraction in `phis`."""
    import onnxruntime as ort

    from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    options = OnnxRuntimeBackend(device="cpu", threads=threads, spinning=False).session_options()
    units = prunable_units(model)
    shapes = input_shapes(model, inputs, units)
    rng = np.random.default_rng(0)
    ms, widths = {}, {}
    for u in units:
        out = u.module.out_channels
        widths[u.name] = [pruned_width(out, float(phi), round_to) for phi in phis]
        x = {"x": rng.standard_normal(shapes[u.name]).astype(np.float32)}
        sessions = {w: ort.InferenceSession(conv_graph(u.module, shapes[u.name], w).SerializeToString(), options,
                                            providers=["CPUExecutionProvider"]) for w in set(widths[u.name])}
        # Unrounded medians: a narrow unit runs in a tenth of a millisecond (summarise rounds to 0.01 ms).
        samples = sample_side_by_side({w: (lambda s: lambda: s.run(None, x))(s) for w, s in sessions.items()},
                                      iterations, rounds)
        median = {w: float(np.median(v)) for w, v in samples.items()}
        ms[u.name] = np.array([median[w] for w in widths[u.name]])
    return LatencyTable(tuple(float(p) for p in phis), ms, widths)
