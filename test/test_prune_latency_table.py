"""The measured latency table (unit x pruned fraction) the layer-adaptive allocator can spend instead of FLOPs."""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.model.detector import FusionDetector
from fusion_prune_ros.model.flops import example_inputs
from fusion_prune_ros.prune.latency_table import conv_graph, input_shapes, latency_table, pruned_width
from fusion_prune_ros.prune.units import prunable_units
from md_tables import number, table_with, tables

SMALL = Path(__file__).parents[1] / "config" / "detector" / "small.yaml"


@pytest.mark.parametrize("module,in_shape", [
    (nn.Conv2d(16, 32, 3, 2, 1, bias=False), (2, 16, 20, 24)),
    (nn.Conv2d(16, 24, (1, 4), (1, 4)), (1, 16, 10, 32)),  # the camera's height-collapsing conv, with a bias
    (nn.Conv2d(8, 16, 3, 1, 2, dilation=2), (1, 8, 9, 9)),
    (nn.ConvTranspose2d(32, 16, 2, 2, bias=False), (1, 32, 8, 8)),
])
def test_the_timed_graph_is_the_unit_conv_at_the_pruned_width(module, in_shape):
    """Same kernel, stride, padding, dilation: the one-node graph's output is the module's, with fewer channels."""
    x = np.random.default_rng(0).standard_normal(in_shape).astype(np.float32)
    expected = tuple(module(torch.from_numpy(x)).shape)
    for width in (module.out_channels, 8):
        session = ort.InferenceSession(conv_graph(module, in_shape, width).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"x": x})
        assert y.shape == (expected[0], width, *expected[2:])


def test_grouped_convs_are_refused_not_timed_wrongly():
    with pytest.raises(ValueError, match="grouped"):
        conv_graph(nn.Conv2d(8, 8, 3, groups=8), (1, 8, 5, 5), 8)


def test_pruned_widths_are_what_channel_pruning_realises():
    assert [pruned_width(64, phi, 8) for phi in (0.0, 0.1, 0.5, 0.9, 0.99)] == [64, 56, 32, 8, 8]
    assert [pruned_width(10, phi, 1) for phi in (0.0, 0.55, 0.99)] == [10, 4, 1]


def test_latency_table_of_the_small_detector():
    cfg = load_yaml(DetectorConfig, SMALL)
    torch.manual_seed(0)
    model = FusionDetector(cfg).eval()
    inputs = example_inputs(cfg)["fused"]
    units = prunable_units(model)
    shapes = input_shapes(model, inputs, units)
    assert set(shapes) == {u.name for u in units}
    assert all(shapes[u.name][1] == u.module.in_channels for u in units)
    phis = (0.0, 0.5, 0.9)
    table = latency_table(model, inputs, phis, round_to=8, iterations=4, rounds=2)
    assert set(table.ms) == {u.name for u in units} and table.phis == phis
    for u in units:
        assert np.all(table.ms[u.name] > 0)
        assert table.widths[u.name][0] == u.module.out_channels
        assert list(table.widths[u.name]) == sorted(table.widths[u.name], reverse=True)
    grid = table.on_grid(np.array([0.0, 0.25, 0.9]))
    name = units[0].name
    ms = table.ms[name]
    assert grid[name][0] == ms[0] and grid[name][2] == ms[2] and grid[name][1] == pytest.approx((ms[0] + ms[1]) / 2)
    assert table.total({u.name: 0.0 for u in units}) == pytest.approx(sum(table.ms[u.name][0] for u in units))


def test_the_report_sets_time_kept_beside_flops_kept(tmp_path):
    from fusion_prune_ros.analysis.latency_report import format_latency_table
    from fusion_prune_ros.analysis.plots import latency_table_plot
    from fusion_prune_ros.prune.latency_table import LatencyTable

    phis = tuple(np.round(np.arange(10) / 10, 2))
    widths = {"a": [pruned_width(48, p, 8) for p in phis], "b": [pruned_width(16, p, 8) for p in phis]}
    ms = {"a": np.array(widths["a"], float) / 48 * 2.0 + 0.5, "b": np.full(10, 1.0)}
    table = LatencyTable(phis, ms, widths)
    lines = format_latency_table(table, {"a": 3e6, "b": 1e6}, {"a": "lidar", "b": "camera"}, graph_ms=5.0)
    text = "\n".join(lines)
    units = table_with(text, "unit", "module", "C_out", "MACs share", "ms at full width")
    assert [r["unit"] for r in units["rows"]] == ["a", "b"]  # one row per unit, slowest first
    a = units["rows"][0]
    assert (a["module"], a["C_out"], number(a["MACs share"]), number(a["ms at full width"])) == ("lidar", "48", 75.0, 2.5)
    # a at phi 0.5: width 24 of 48 -> 1.5 of 2.5 ms = 60 % of the time for 50 % of the FLOPs
    time_kept, flops_kept = (number(x) for x in a["phi 0.5: time / FLOPs kept"].split("/"))
    assert (time_kept, flops_kept) == (60.0, 50.0)
    totals = tables(text)[1]  # the units' summed time at every phi
    assert len(totals["columns"]) == 1 + len(phis) and totals["columns"][1].startswith("phi 0.0: 3.50 ms")
    assert all(x in lines[-1] for x in ("3.50 ms", "5.00 ms", "70%"))  # the units' share of the whole graph
    latency_table_plot(table, {"a": "lidar", "b": "camera"}, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0
