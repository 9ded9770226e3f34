"""Pruning framework: exact sparsities, the 2:4 pattern, structural pruning equivalent to zeroed channels, and a
tiny end-to-end sweep (two methods, one level, a few steps)."""
import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch_pruning as tp

from fusion_prune_ros.analysis.findings import busy_seconds, cost, findings, max_overlap
from fusion_prune_ros.analysis.plots import per_layer_plot
from fusion_prune_ros.analysis.sweep_report import sweep_results, write_sweep_report, write_table
from fusion_prune_ros.analysis.variant_latency import current, time_variants
from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.export.onnx_export import sha256
from fusion_prune_ros.runtime.graph_files import graph_digest
from fusion_prune_ros.model.detector import FusionDetector
from fusion_prune_ros.model.flops import example_inputs
from fusion_prune_ros.prune.granularity import channel_prune, is_nm24, narrowest, nm24_masks, unstructured_masks
from fusion_prune_ros.prune.allocation import Allocation
from fusion_prune_ros.prune.importance import Scores
from fusion_prune_ros.prune.method import Plan
from fusion_prune_ros.prune.registry import build_method
from fusion_prune_ros.prune.channel_zeroing import channel_fraction, channels_zeroed, output_channel_norms
from fusion_prune_ros.export.dense_timing import dense_latency
from fusion_prune_ros.export.ladder import thin_ladder, write_profile
from fusion_prune_ros.export.manifest import Manifest, read_manifests
from fusion_prune_ros.prune.framework_version import FRAMEWORK_VERSION
from fusion_prune_ros.prune.retime import channel_floor, remeasure_latency
from fusion_prune_ros.prune.sweep import (COLUMNS, SweepConfig, carried_rows, load_sweep_config, plan, read_log,
                                       read_rows, rows, run_sweep)
from fusion_prune_ros.prune.units import INPUT_CONVS, OUTPUT_CONVS, Unit, prunable_params, prunable_units, weights_of
from fusion_prune_ros.prune.variant import PruneConfig, PruneSpec, _apply
from fusion_prune_ros.prune.variant_claim import CLAIM, VariantBusy, claimed
from fusion_prune_ros.runtime.latency_key import ORT_CPU_2T
from fusion_prune_ros.runtime.profile import load_profile
from md_tables import number, table_with, tables

SMALL = Path(__file__).parents[1] / "config" / "detector" / "small.yaml"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = load_yaml(DetectorConfig, SMALL)
    m = FusionDetector(cfg).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return m, cfg


def _inputs(cfg):
    ex = [torch.rand(t.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1 for t in example_inputs(cfg)["fused"]]
    ex[3] = torch.ones_like(ex[3])
    return tuple(ex)


def test_units_are_tagged_and_first_and_last_convs_stay_dense(model):
    m, _ = model
    units = prunable_units(m)
    assert {u.modality for u in units} == {"camera", "lidar", "fusion", "head"}
    assert not {u.name for u in units} & {*INPUT_CONVS, *OUTPUT_CONVS}


def test_a_detector_with_prunable_input_convs_prunes_their_outputs_and_keeps_the_raw_inputs(model):
    """The channel floor of such a detector narrows the two input convs too; the graphs still read 14 pillar
    channels and 3 colour planes."""
    import copy

    m, cfg = model
    wide = copy.deepcopy(m)
    wide.prunable_input_convs = True
    assert set(INPUT_CONVS) <= {u.name for u in prunable_units(wide)}
    assert not {u.name for u in prunable_units(wide)} & set(OUTPUT_CONVS)
    floor = narrowest(wide, _inputs(cfg))
    for name in INPUT_CONVS:
        dense_conv, narrow_conv = dict(wide.named_modules())[name], dict(floor.named_modules())[name]
        assert narrow_conv.out_channels < dense_conv.out_channels
        assert narrow_conv.in_channels == dense_conv.in_channels
    with torch.no_grad():
        heat, reg = floor(*_inputs(cfg))
    assert heat.shape[1] == 10 and reg.shape[1] == 10


def test_unstructured_masks_hit_the_sparsity_exactly(model):
    m, _ = model
    scores = Scores({k: w.abs() for k, w in weights_of(m).items()})
    for sparsity in (0.3, 0.8):
        masks = unstructured_masks(m, scores, sparsity)
        pruned = sum(int((~mk).sum()) for mk in masks.values())
        assert pruned == round(sparsity * prunable_params(m))


def test_nm24_masks_follow_the_pattern_and_keep_the_best(model):
    m, _ = model
    scores = Scores({k: w.abs() for k, w in weights_of(m).items()})
    masks = nm24_masks(m, scores)
    for u in prunable_units(m):
        masked = u.weight.detach() * masks[u.name]
        assert is_nm24(masked, isinstance(u.module, torch.nn.ConvTranspose2d)), u.name
    conv = dict(m.named_modules())["fuser.conv.0"]
    group = conv.weight.detach().permute(0, 2, 3, 1)[0, 0, 0, :4].abs()
    kept = masks["fuser.conv.0"].permute(0, 2, 3, 1)[0, 0, 0, :4]
    assert set(torch.nonzero(kept).flatten().tolist()) == set(group.topk(2).indices.tolist())


@pytest.mark.parametrize("unit", ["camera.neck.smooth.0", "camera.reduce.0", "camera.backbone.stage2.conv2.0",
                                  "lidar.out.0", "fuser.conv.0", "bev.level0.0", "bev.level2.0.0", "head.shared.0"])
def test_structural_pruning_equals_zeroed_channels(model, unit):
    """Removing channels of a dependency group must compute exactly what the dense network computes with those
    channels' outputs forced to zero in every member of the group (through grid_sample, residual adds, the
    transposed convs...). A group mis-traced by the pruning library fails here."""
    m, cfg = model
    ex = _inputs(cfg)
    idxs = [0, 3]
    graph = tp.DependencyGraph().build_dependency(m, example_inputs=ex)
    group = graph.get_pruning_group(dict(m.named_modules())[unit], tp.prune_conv_out_channels, idxs=idxs)
    zeroed = copy.deepcopy(m)
    names = {mod: n for n, mod in m.named_modules()}
    zmods = dict(zeroed.named_modules())
    with torch.no_grad():
        for dep, ids in group:
            if dep.pruning_fn == tp.prune_batchnorm_out_channels:
                bn = zmods[names[dep.layer]]
                bn.weight[ids] = 0
                bn.bias[ids] = 0
        reference = zeroed(*ex)
    pruned = copy.deepcopy(m)
    pgraph = tp.DependencyGraph().build_dependency(pruned, example_inputs=ex)
    pgraph.get_pruning_group(dict(pruned.named_modules())[unit], tp.prune_conv_out_channels, idxs=idxs).prune()
    with torch.no_grad():
        out = pruned(*ex)
    for a, b in zip(reference, out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("unit", ["lidar.out.0", "fuser.conv.0", "bev.level2.0.0", "bev.out.0", "head.shared.0"])
def test_channels_zeroed_computes_what_removing_those_channels_computes(model, unit):
    """The curves of the layer-adaptive allocators under channel granularity: zeroing a unit's weakest output
    channels (conv rows and BatchNorm scale and shift) must give what Torch-Pruning's physical removal of the same
    channels gives, and everything must be restored afterwards. Units whose group holds only themselves (a residual
    group's other members are removed along with them, which a per-unit curve does not model)."""
    m, cfg = model
    ex = _inputs(cfg)
    u = next(x for x in prunable_units(m) if x.name == unit)
    before = copy.deepcopy(m.state_dict())
    with torch.no_grad(), channels_zeroed(m, u, 0.6) as idx:
        zeroed_out = m(*ex)
    assert len(idx) == round(channel_fraction(0.6) * len(output_channel_norms(u))) > 0
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    pruned = copy.deepcopy(m)
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=ex)
    group = graph.get_pruning_group(dict(pruned.named_modules())[unit], tp.prune_conv_out_channels,
                                    idxs=idx.tolist())
    assert [dep.layer for dep, _ in group if dep.pruning_fn == tp.prune_conv_out_channels] == [
        dict(pruned.named_modules())[unit]]
    group.prune()
    with torch.no_grad():
        out = pruned(*ex)
    for a, b in zip(zeroed_out, out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_channels_zeroed_handles_transposed_convs():
    """A ConvTranspose2d keeps its output channels in dim 1 (the detector's transposed convs share residual groups,
    so they are checked on a toy network: up-convolution, norm, ReLU, conv)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 8, 2, stride=2), torch.nn.BatchNorm2d(8),
                                                  torch.nn.ReLU()), torch.nn.Conv2d(8, 3, 3)).eval()
    with torch.no_grad():
        net[0][1].bias.uniform_(0.5, 1.0)  # a leaked shift would show downstream
    x = torch.randn(2, 4, 5, 5)
    u = Unit("0.0", net[0][0], "fusion")
    with torch.no_grad(), channels_zeroed(net, u, 0.75) as idx:
        zeroed_out = net(x)
    keep = [c for c in range(8) if c not in set(idx.tolist())]
    assert len(idx) == 4
    slim = copy.deepcopy(net)
    with torch.no_grad():
        slim[1].weight.data = net[1].weight.data[:, keep]
        slim[1].in_channels = len(keep)
        reference = slim[1](net[0](x)[:, keep])
    torch.testing.assert_close(zeroed_out, reference)


def test_channel_pruning_reaches_the_parameter_target(model):
    m, cfg = model
    scores = Scores({k: w.abs() for k, w in weights_of(m).items()})
    for sparsity in (0.3, 0.7):
        pruned, info = channel_prune(m, scores, sparsity, _inputs(cfg))
        assert abs(info["realised_sparsity"] - sparsity) <= 0.02
        with torch.no_grad():
            heat, reg = pruned(*_inputs(cfg))
        assert heat.shape[1] == 10 and reg.shape[1] == 10  # the head's outputs are untouched
    pruned8, _ = channel_prune(m, scores, 0.5, _inputs(cfg), round_to=4)
    for u in prunable_units(pruned8):
        if u.name != "head.shared.0":
            assert u.module.out_channels % 4 == 0, u.name


def test_unknown_method_is_a_clear_error():
    with pytest.raises(UserError, match="unknown pruning method 'nope'"):
        build_method("nope")


def test_variant_claim_is_one_writer_and_dies_with_its_holder(tmp_path):
    folder = tmp_path / "magnitude-channel-80-s0"
    with claimed(folder):
        with pytest.raises(VariantBusy, match=f"magnitude-channel-80-s0 is being built by pid {os.getpid()}"):
            with claimed(folder):
                pass
    with claimed(folder):  # released when the block ends
        pass
    # A worker killed mid-variant leaves no stale claim: the kernel drops its lock with the process.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time, pathlib\n"
                               "from fusion_prune_ros.prune.variant_claim import claimed\n"
                               f"with claimed(pathlib.Path({str(folder)!r})):\n"
                               "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(VariantBusy, match=f"pid {holder.pid}"):
            with claimed(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    with claimed(folder):
        pass


def test_tiny_sweep_end_to_end(shipped, tmp_path):
    cfg = SweepConfig(prune=PruneConfig(calibration_frames=4, calibration_batch=2, finetune_steps=3, finetune_batch=2,
                                        latency_iterations=2, conditions=("fused", "camera_lost"), round_to=0),
                      channel_methods=["magnitude", "taylor"], channel_levels=[0.5])
    dense = shipped / "models" / "model.pt"
    with claimed(tmp_path / "variants" / PruneSpec("taylor", 0.5, "channel").name):  # another worker builds it
        first = run_sweep(dense, cfg, tmp_path / "variants", quiet=True)
    assert [m.method for m in first] == ["magnitude"]
    # A variant whose row is carried from an earlier run is not built again.
    skipped = run_sweep(dense, cfg, tmp_path / "variants", quiet=True,
                        skip=frozenset({PruneSpec("taylor", 0.5, "channel").name}))
    assert [m.method for m in skipped] == ["magnitude"]
    assert not Manifest.exists(tmp_path / "variants" / PruneSpec("taylor", 0.5, "channel").name)
    manifests = run_sweep(dense, cfg, tmp_path / "variants", quiet=True)
    assert [m.method for m in manifests] == ["magnitude", "taylor"]
    # Resumable: the second run read magnitude's manifest back instead of redoing the work.
    assert manifests[0].scoring["seconds"] == first[0].scoring["seconds"]
    # One log line per variant built, written by the process that built it (magnitude's read-back adds none).
    log = read_log(tmp_path / "variants")
    assert [e["variant"] for e in log] == [m.name for m in manifests]
    assert all(e["started"] <= e["finished"] and e["pid"] == os.getpid() for e in log)
    for m in manifests:
        assert abs(m.sparsity_realised["overall"] - 0.5) <= 0.03
        assert m.complexity["params_m"] < 0.043 and set(m.metrics) == {"fused", "camera_lost"}
        assert (tmp_path / "variants" / m.name / "fused.onnx").is_file()
        assert not (tmp_path / "variants" / m.name / CLAIM).exists()
    # Re-timed side by side with the dense graphs: the table's speed-up is a ratio from one run.
    # A variant built outside the sweep (here a renamed copy) is re-timed in the same run, written in place.
    elsewhere = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tmp_path / "variants" / manifests[0].name, elsewhere)
    outside = Manifest.read(elsewhere)
    outside.name = "copy"
    outside.write(elsewhere)
    remeasure_latency(read_manifests(tmp_path / "variants"), shipped / "models", tmp_path / "variants", iterations=4,
                      extra_folders=(elsewhere,))
    assert Manifest.read(elsewhere).remeasured_with_dense
    dense_meta = json.loads((shipped / "models" / "metadata.json").read_text())
    dense_ms = dense_latency(dense_meta, tmp_path / "variants")
    assert set(dense_ms) == {"fused", "lidar", "camera"}
    floor = channel_floor(tmp_path / "variants")
    assert floor["params_m"] < min(m.complexity["params_m"] for m in read_manifests(tmp_path / "variants"))
    assert floor["dense_ms"] == dense_ms["fused"]  # the floor's ratio is against the dense graph timed beside it
    # The profile names the operators (after ONNX Runtime's fusions) and finds the first LiDAR conv, kept dense, by
    # the input it reads.
    for graph in floor["ops"].values():
        assert "GridSample" in graph["by_op_ms"] and any("Conv" in op for op in graph["by_op_ms"])
        assert graph["run_ms"] > 0 and all(ms >= 0 for ms in graph["by_op_ms"].values())
    assert {"lidar_bev", "images"} <= set(floor["ops"]["floor"]["reads_ms"])
    manifests = read_manifests(tmp_path / "variants")
    assert all(m.remeasured_with_dense and str(ORT_CPU_2T) in m.latency_in_sweep_ms
               for m in manifests)
    table = rows(manifests, dense_meta, dense_ms["fused"])
    fused_ms = manifests[0].median_ms("fused")
    assert table[1]["ort_speedup"] == round(dense_ms["fused"] / fused_ms, 2)
    # The GPU column comes from a variant-latency file (here timed with PyTorch on the CPU: the same plumbing).
    assert math.isnan(table[1]["gpu_ms"])
    timed = time_variants(shipped / "models", tmp_path / "variants", "torch", "cpu", iterations=2)
    assert set(timed["latency_ms"]) == {"dense", *(m.name for m in manifests)}
    ms = {name: t["fused"]["median_ms"] for name, t in timed["latency_ms"].items()}
    with_gpu = rows(manifests, dense_meta, dense_ms["fused"], current(timed, manifests))
    assert with_gpu[1]["gpu_speedup"] == round(ms["dense"] / ms[with_gpu[1]["name"]], 2)
    # A variant redone after the GPU timed it (another model.pt under the same name) loses its GPU column.
    redone = copy.deepcopy(manifests)
    redone[0].files["model.pt"] = "0" * 64
    kept = current(timed, redone)
    assert kept["stale"] == [redone[0].name] and "dense" in kept["latency_ms"]
    assert math.isnan(rows(redone, dense_meta, dense_ms["fused"], kept)[1]["gpu_ms"])
    # The report: one row per variant (and dense) with every column, numbers that parse, the floor's operators.
    res = sweep_results(tmp_path / "variants", shipped / "models")
    md = write_sweep_report(res, tmp_path / "variants", tmp_path / "report", [m.name for m in manifests])
    report = md.read_text()
    results = table_with(report, *COLUMNS)
    assert results["columns"] == list(COLUMNS)
    assert [r["name"] for r in results["rows"]] == ["dense", *sorted(m.name for m in manifests)]
    assert all(number(r[c]) > 0 for r in results["rows"] for c in ("params_m", "gflops", "ort_ms", "ort_speedup"))
    assert ("50%", "taylor") in _verdicts(report)  # the method is compared with magnitude at its level
    ops = table_with(report, "operator", "dense ms", "floor ms")["rows"]
    assert ops and all(number(r["dense ms"]) >= 0 and number(r["floor ms"]) >= 0 for r in ops)
    assert (tmp_path / "report" / "pareto_channel.png").stat().st_size > 0
    written = read_rows(tmp_path / "report" / "pruning_results.csv")
    assert set(written) == {r["name"] for r in results["rows"]}
    assert all(m.framework == FRAMEWORK_VERSION == written[m.name]["framework"] for m in manifests)
    assert all(written[m.name]["extra_optimiser_steps"] == 0.0 for m in manifests)  # magnitude, taylor
    assert per_layer_plot(manifests, tmp_path / "layers.png", 0.5) and (tmp_path / "layers.png").stat().st_size > 0
    assert not per_layer_plot(manifests, tmp_path / "none.png", 0.8) and not (tmp_path / "none.png").exists()
    profile = write_profile(read_manifests(tmp_path / "variants"), shipped / "models", tmp_path / "variants",
                            tmp_path / "profiles" / "default.yaml", ship_root=tmp_path / "ship")
    loaded = load_profile(tmp_path / "profiles" / "default.yaml")
    assert loaded.modalities() == {"fused", "lidar", "camera"} and len(profile.variants) >= 3
    # Pruned variants in the profile point at shipped copies whose hashes the profile records.
    for v in loaded.variants:
        onnx = (tmp_path / "profiles" / v.onnx).resolve()
        assert onnx.is_file() and graph_digest(onnx) == v.sha256
        if v.method != "dense":
            assert onnx.parent.parent == (tmp_path / "ship").resolve()
            assert (onnx.parent / "model.pt").is_file() and not (onnx.parent / "eval").exists()
            # the shipped manifest lists what was shipped: the checkpoint, the profile's graphs, their weights
            shipped_files = Manifest.read(onnx.parent).files
            assert shipped_files == {p.name: sha256(p) for p in onnx.parent.iterdir() if p.name != "manifest.json"}
            assert "weights.bin" in shipped_files and "eval" not in shipped_files


def test_a_scorer_that_set_its_own_parameter_target_is_pruned_to_it(model):
    """DM3D under a time budget removes whatever parameters the time costs (Allocation.sparsity): the channel and
    unstructured granularities prune to that, not to the requested value, which was a time fraction."""
    m, cfg = model
    keep = {u.name: 0.5 for u in prunable_units(m)}
    scores = Scores({k: w.abs() for k, w in weights_of(m).items()})
    spec = PruneSpec("dm3d", None, "channel", time_target=0.2)
    _, _, info = _apply(Plan(m, scores, Allocation(0.5, keep)), spec, PruneConfig(round_to=0), cfg)
    assert abs(info["realised_sparsity"] - 0.5) <= 0.03 and info["target_sparsity"] == 0.5


def test_single_modality_graphs_of_a_channel_pruned_model(model):
    """The LiDAR-only graph slices the fuser at the pruned LiDAR width, and still equals the fused network with the
    camera missing."""
    from fusion_prune_ros.model.detector import SingleModality

    m, cfg = model
    scores = Scores({k: w.abs() for k, w in weights_of(m).items()})
    pruned, _ = channel_prune(m, scores, 0.6, _inputs(cfg))
    lidar, images, grid, _ = _inputs(cfg)
    with torch.no_grad():
        fused = pruned(lidar, images, grid, torch.tensor([[1.0, 0.0]]))
        single = SingleModality(pruned, "lidar")(lidar)
    for a, b in zip(fused, single):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _row(name, method, sparsity, seed, mAP, NDS, ort_ms, granularity="channel"):
    return {"name": name, "method": method, "granularity": granularity, "sparsity": sparsity, "seed": seed,
            "camera": 0.5, "lidar": 0.1, "fusion": 0.4, "mAP": mAP, "NDS": NDS, "ort_ms": ort_ms,
            "ort_speedup": round(30.0 / ort_ms, 2), "gflops": ort_ms / 10}


def _verdicts(text: str) -> dict:
    """(level, method) -> the row of the methods-vs-magnitude table."""
    t = table_with(text, "level", "method", "NDS - magnitude", "margin", "verdict")
    return {(r["level"], r["method"]): r for r in t["rows"]}


def test_a_method_rebuilt_under_newer_rules_is_judged_on_its_new_rows_only():
    """DM3D's seed 0 rebuilt under framework 2 beside its framework-1 seed 1: the verdict takes the new row alone,
    not a mean of the two (which would be a mean of two different methods)."""
    table = [_row("dense", "dense", 0.0, 0, 0.80, 0.70, 30.0, "-"),
             _row("m80", "magnitude", 0.8, 0, 0.50, 0.50, 10.0), _row("m80b", "magnitude", 0.8, 1, 0.49, 0.49, 10.0),
             {**_row("d80", "dm3d", 0.8, 0, 0.51, 0.52, 12.0), "framework": 2},
             {**_row("d80b", "dm3d", 0.8, 1, 0.30, 0.30, 12.0), "framework": 1}]
    row = _verdicts("\n".join(findings(table, [])))[("80%", "dm3d")]
    assert row["seeds (method / magnitude)"] == "1 / 2" and number(row["NDS"]) == pytest.approx(0.52)


def test_findings_judge_the_targets_from_the_rows():
    table = [_row("dense", "dense", 0.0, 0, 0.80, 0.70, 30.0, "-"),
             _row("m80", "magnitude", 0.8, 0, 0.50, 0.50, 10.0), _row("m80b", "magnitude", 0.8, 1, 0.49, 0.49, 10.0),
             _row("a80", "altermoma", 0.8, 0, 0.56, 0.52, 10.0), _row("d80", "dm3d", 0.8, 0, 0.51, 0.495, 12.0),
             _row("r80", "random", 0.8, 0, 0.30, 0.40, 10.0), _row("m30", "magnitude", 0.3, 0, 0.80, 0.699, 25.0)]
    text = "\n".join(findings(table, []))
    # seed means: magnitude at 80 % is 0.495 / 0.495 over its two seeds; a single-seed method is judged with the
    # median seed spread measured (0.01)
    v = _verdicts(text)
    assert set(v) == {("80%", m) for m in ("altermoma", "dm3d", "random")}  # only levels >= 50 %, not magnitude
    for method, nds_diff, verdict in (("altermoma", 0.025, "beats"), ("dm3d", 0.0, "matches"),
                                      ("random", -0.095, "worse")):
        row = v[("80%", method)]
        assert (row["verdict"], row["seeds (method / magnitude)"]) == (verdict, "1 / 2")
        assert number(row["NDS - magnitude"]) == pytest.approx(nds_diff, abs=1e-4)
        assert number(row["margin"]) == pytest.approx(0.01)
    # with two seeds of dm3d too, its mean is compared and its margin is the larger of the two spreads
    row = _verdicts("\n".join(findings(table + [_row("d80b", "dm3d", 0.8, 1, 0.51, 0.475, 12.0)], [])))[("80%", "dm3d")]
    assert (row["seeds (method / magnitude)"], row["verdict"]) == ("2 / 2", "matches")
    assert (number(row["NDS"]), number(row["margin"])) == (pytest.approx(0.485), pytest.approx(0.02))
    # a single-seed method is judged with the median spread, not the largest: altermoma's 0.05 does not loosen it
    table3 = table + [_row("a80b", "altermoma", 0.8, 1, 0.50, 0.47, 10.0), _row("r80b", "random", 0.8, 1, 0.3, 0.398, 10.0)]
    assert number(_verdicts("\n".join(findings(table3, [])))[("80%", "dm3d")]["margin"]) == pytest.approx(0.01)
    # the fastest variant >= 3x: a80 at 3.00x, 18 NDS points lost
    fast = next(line for line in text.splitlines() if line.startswith("- a80:"))
    assert "3.00x" in fast and "18.00" in fast and "(not met;" in fast
    # its time is set against the dense graph timed beside it, not the dense row's, which may come from elsewhere
    elsewhere = "\n".join(findings([{**table[0], "ort_ms": 17.0}] + table[1:], []))
    assert all("(10.0 vs 30.0 ms dense beside it)" in next(line for line in t.splitlines() if line.startswith("- a80:"))
               for t in (text, elsewhere))
    seeds = table_with(text, "method", "level", "seeds", "NDS spread")["rows"]
    assert [(r["method"], r["level"], r["seeds"], number(r["NDS spread"])) for r in seeds] == \
        [("magnitude", "80%", "2", pytest.approx(0.01))]
    # equal cost: magnitude's curve is dense (30 ms, 0.70), m30 (25 ms, 0.699), m80 (10 ms, 0.50); d80 at 12 ms sits
    # between m80 and m30: 0.50 + 2/15 * 0.199 = 0.5265; random at 10 ms is on m80's point; seed 0 only
    cost_rows = {r[0].split(" ")[0]: [number(c) for c in r[1:]]
                 for r in table_with(text, "variant", "GFLOPs", "CPU ms")["cells"]}
    assert set(cost_rows) == {"a80", "d80", "r80"}
    assert cost_rows["d80"] == [pytest.approx(x, abs=1e-4) for x in (1.2, 0.5265, -0.0315, 12.0, 0.5265, -0.0315)]
    assert cost_rows["r80"] == [pytest.approx(x, abs=1e-4) for x in (1.0, 0.5, -0.1, 10.0, 0.5, -0.1)]
    assert "GPU" not in text  # no GPU file, no GPU section
    # unstructured rows: judged against unstructured magnitude only, beside the paper's share of dense mAP kept
    table4 = table + [_row("mu80", "magnitude", 0.8, 0, 0.72, 0.65, 30.0, "unstructured"),
                      _row("au80", "altermoma", 0.8, 0, 0.76, 0.66, 30.0, "unstructured")]
    text4 = "\n".join(findings(table4, []))
    kept = {r["method"]: r for r in table_with(text4, "level", "method", "mAP kept of dense")["rows"]}
    assert set(kept) == {"altermoma", "magnitude"}
    paper = "paper: mAP kept (AlterMOMA / IMP)"
    assert [number(kept["altermoma"][c]) for c in ("mAP kept of dense", paper, "mAP vs magnitude")] == \
        [pytest.approx(95.0), pytest.approx(99.3), pytest.approx(5.6)]
    assert [number(kept["magnitude"][c]) for c in ("mAP kept of dense", paper)] == [pytest.approx(90.0), pytest.approx(87.5)]
    assert len(tables(text4)) == len(tables(text)) + 1  # one table more, no 2:4 table
    summary = lambda ms: {mode: {"median_ms": ms} for mode in ("fused", "lidar", "camera")}  # noqa: E731
    gpu = {"backend": "torch (cuda, fp16)", "device_name": "NVIDIA H200", "measured": "2026-11-27",
           "latency_ms": {"dense": summary(1.5), "a80": summary(1.2)},
           "device_ms": {"dense": summary(0.6), "a80": summary(0.3)}}
    section = "\n".join(findings(table, [], gpu={**gpu, "stale": ["d80"]})).split("NVIDIA H200")[1].split("###")[0]
    for expected in ("d80", "1.50 ms", "1.00x", "1.25x", "0.60 ms", "0.30 ms", "2.00x"):  # stale names, ratios
        assert expected in section


def test_allocation_ablation_gives_the_dp_uniform_flops_and_less_predicted_distortion(shipped, tmp_path):
    from fusion_prune_ros.analysis.allocation_ablation import (AllocationAblationConfig, format_ablation,
                                                               run_allocation_ablation)

    cfg = AllocationAblationConfig(sparsities=(0.5,), calibration_frames=4, calibration_batch=2, steps=20)
    result = run_allocation_ablation(shipped / "models" / "model.pt", tmp_path, cfg, quiet=True)
    uniform, dp = result["rows"]
    assert (uniform["allocation"], dp["allocation"]) == ("uniform", "dp")
    assert uniform["param_sparsity"] == 0.5 and set(uniform["sparsity_by_modality"].values()) == {0.5}
    assert dp["flops_kept"] <= uniform["flops_kept"] + 1e-3  # the DP spends no more than uniform keeps
    # uniform is one feasible allocation under that budget; the DP minimises the summed curves over all of them
    assert dp["predicted_distortion"] <= uniform["predicted_distortion"] * (1 + 1e-6)
    assert set(dp["metrics"]) == {"fused"} and 0.0 <= dp["metrics"]["fused"]["NDS"] <= 1.0
    assert len(format_ablation(result)) == 4


def test_shipped_sweep_plan_runs_priorities_in_order_and_checks_extra_runs():
    cfg = load_sweep_config(Path(__file__).parents[1] / "config" / "prune" / "sweep.yaml")
    specs = plan(cfg)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    granularity = [s.granularity for s in specs]
    # channel (the deployment format, extra seeds included) strictly before unstructured, then 2:4
    assert granularity == sorted(granularity, key=["channel", "unstructured", "nm24"].index)
    seeds = [s for s in specs if s.granularity == "channel" and s.seed > 0]
    assert {s.method for s in seeds if s.sparsity == 0.8} == set(cfg.channel_methods)  # two seeds at 80 %
    assert [(s.method, s.sparsity) for s in seeds[len(cfg.channel_methods):]] == \
        [(m, lv) for m, lv, _ in cfg.extra_runs]
    cfg.extra_runs = [["nonexistent", 0.7, 1]]
    with pytest.raises(UserError, match="expected \\[method, sparsity, seed\\]"):
        plan(cfg)


def test_v2_sweep_plan_covers_every_method_level_and_seed():
    """config/prune/v2_sweep.yaml: every method at 50, 70, 80 and 90 % channel, the four multimodal methods and
    magnitude with two seeds at 80 and 90 % and at unstructured 80 / 90 % and 2:4, widths in v2's multiples of 16."""
    cfg = load_sweep_config(Path(__file__).parents[1] / "config" / "prune" / "v2_sweep.yaml")
    specs = plan(cfg)
    names = {s.name for s in specs}
    assert len(names) == len(specs) and cfg.prune.round_to == 16
    compared = {"altermoma", "crossprune", "mmprune4u", "dm3d", "magnitude"}
    every = compared | {"taylor", "snip", "random"}
    assert {(s.method, s.sparsity) for s in specs if s.granularity == "channel" and s.seed == 0} >= \
        {(m, lv) for m in every for lv in (0.5, 0.7, 0.8, 0.9)}
    assert {(s.method, s.sparsity) for s in specs if s.seed == 1} == {(m, lv) for m in compared for lv in (0.8, 0.9)}
    assert {(s.method, s.sparsity) for s in specs if s.granularity == "unstructured"} == \
        {(m, lv) for m in compared for lv in (0.8, 0.9)}
    assert {s.method for s in specs if s.granularity == "nm24"} == compared


def test_the_committed_results_read_back_with_every_column():
    """docs/pruning_results.csv has the table's columns, a framework version on every row, and the optimiser steps
    each method spent before pruning: AlterMOMA's two reactivations of 100 steps, CrossPrune's 6 x 30 ADMM steps,
    none for the others."""
    table = read_rows(Path(__file__).parents[1] / "docs" / "pruning_results.csv")
    assert {r["framework"] for r in table.values()} <= {1, FRAMEWORK_VERSION}
    spent = {"altermoma": 200.0, "altermoma-deci-weighted": 200.0, "crossprune": 180.0, "crossprune-distil": 180.0}
    for r in table.values():
        assert r["extra_optimiser_steps"] == spent.get(r["method"], 0.0), r["name"]


def test_cost_lines_split_the_measured_time_and_project_the_rest_of_the_plan():
    table = [{"name": f"magnitude-channel-{lv}-s0", "method": "magnitude", "scoring_s": 10.0, "finetune_s": 500.0}
             for lv in (50, 80)]
    log = [{"variant": "magnitude-channel-50-s0", "seconds": 600.0}, {"variant": "magnitude-channel-80-s0",
                                                                      "seconds": 600.0}]
    planned = [r["name"] for r in table] + ["dm3d-channel-80-s0", "dm3d-channel-50-s0"]
    text = "\n".join(cost(table, log, planned))
    assert _cost_rows(text) == {"magnitude": ["2", "10", "500", "90", "600"]}  # evaluation + export = the rest
    assert _plan_numbers(text) == [4.0, 2.0, 2.0, 10.0, 0.3]  # planned, done, left, min per variant, hours left


def _cost_rows(text: str) -> dict:
    t = table_with(text, "method", "variants", "scoring s (mean)", "fine-tuning s (mean)")
    return {cells[0]: cells[1:] for cells in t["cells"]}


def _plan_numbers(text: str) -> list:
    """The numbers of the plan's projection line, in order."""
    line = next(line for line in text.splitlines() if line.startswith("Plan:"))
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", line)]


def test_carried_rows_complete_a_plan_from_an_earlier_csv_without_overriding_a_present_variant(tmp_path):
    def row(name, nds):
        return {**{c: 0.5 for c in COLUMNS}, "name": name, "method": name.split("-")[0], "granularity": "channel",
                "seed": 0, "NDS": nds, "gpu_ms": float("nan"), "scoring_s": 12.0, "finetune_s": 600.0, "framework": 1}
    earlier = [row("dense", 0.7), row("magnitude-channel-80-s0", 0.61), row("dm3d-channel-80-s0", 0.52),
               row("taylor-channel-80-s0", 0.63)]
    write_table(earlier, tmp_path / "r.csv", tmp_path / "r.md", "earlier")
    planned = ["magnitude-channel-80-s0", "dm3d-channel-80-s0", "taylor-channel-80-s0", "snip-channel-80-s0"]
    carried = carried_rows(read_rows(tmp_path / "r.csv"), planned, present={"dm3d-channel-80-s0"})
    # Only planned variants without a folder here, with their numbers and types as written; dense is never carried,
    # a variant run here keeps its own row, and one the earlier report lacks (snip) stays missing.
    assert [r["name"] for r in carried] == ["magnitude-channel-80-s0", "taylor-channel-80-s0"]
    assert carried[0]["NDS"] == 0.61 and carried[0]["seed"] == 0 and math.isnan(carried[0]["gpu_ms"])
    assert carried[0]["granularity"] == "channel"
    gpu = "\n".join(findings([{**row("dense", 0.7), "gpu_ms": 1.5}, {**carried[0], "gpu_ms": 1.25}], []))
    assert "GPU" in gpu and "1.50 ms" in gpu and "1.20x" in gpu  # the carried GPU column is summarised
    text = "\n".join(cost(carried, [], planned))  # carried rows cost what they cost when they were built
    # one row per method; no log entry: no evaluation or whole-variant time
    assert _cost_rows(text) == {m: ["1", "12", "600", "-", "-"] for m in ("magnitude", "taylor")}
    assert _plan_numbers(text)[:3] == [4.0, 2.0, 2.0]
    (tmp_path / "other.csv").write_text("name,NDS\nx,0.5\n")
    with pytest.raises(UserError, match="not the sweep table's"):
        read_rows(tmp_path / "other.csv")
    with pytest.raises(UserError, match="no results CSV"):
        read_rows(tmp_path / "missing.csv")


def test_cost_projects_at_parallel_throughput_when_the_log_has_times():
    def entry(name, start, end):
        return {"variant": name, "seconds": (end - start) * 60.0, "started": f"2026-11-27T10:{start:02d}:00+00:00",
                "finished": f"2026-11-27T10:{end:02d}:00+00:00"}
    # two workers side by side: 3 variants of 20 min each finished in 30 min of wall time, then a gap (no work)
    log = [entry("a", 0, 20), entry("b", 10, 30), entry("c", 20, 30), entry("d", 50, 55)]
    assert busy_seconds(log) == 35 * 60.0 and max_overlap(log) == 2
    table = [{"name": n, "method": "magnitude", "scoring_s": 1.0, "finetune_s": 1.0} for n in "abcd"]
    text = "\n".join(cost(table, log, ["a", "b", "c", "d", "e", "f"]))
    # planned, done, left, min per variant (35 min / 4), variants timed, hours of wall time, workers, hours left
    assert _plan_numbers(text) == [6.0, 4.0, 2.0, 8.8, 4.0, 0.6, 2.0, 0.3]


def _fake_model_dir(folder: Path) -> None:
    """A model folder whose files are placeholders, its graphs tiny valid ONNX files (y = x + a 1 KB weight)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True)
    for f in ("model.pt", "detector.yaml"):
        (folder / f).write_bytes(f"{folder.name}/{f}".encode())
    for mode in ("fused", "lidar", "camera"):
        weight = numpy_helper.from_array(np.full(256, len(folder.name + mode), np.float32), "w")
        graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], mode,
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256])], [weight])
        (folder / f"{mode}.onnx").write_bytes(helper.make_model(graph).SerializeToString())


def test_thin_ladder_keeps_steps_a_margin_apart_and_both_ends():
    # the fused + LiDAR-only front of the 2026-11-28 re-timing (ms, most accurate first)
    front = [32.5, 32.35, 28.36, 28.12, 27.74, 23.42, 22.98, 19.11, 17.59, 17.42, 17.19, 16.48, 16.33, 13.64]
    assert thin_ladder(front, float, 0.10) == [32.5, 28.36, 23.42, 19.11, 17.19, 13.64]
    assert thin_ladder(front, float, 0.0) == front
    assert thin_ladder([30.0, 25.0, 20.0, 19.0], float, 0.10) == [30.0, 25.0, 19.0]  # the fastest wins over 20
    assert thin_ladder([30.0, 29.0], float, 0.10) == [30.0]  # a fastest step within the noise buys nothing
    assert thin_ladder([], float, 0.10) == []


def test_profile_ladder_mixes_fused_and_lidar_graphs_and_drops_inaccurate_ones(tmp_path):
    def metrics(fused, cam_lost, lidar_lost):
        return {"fused": {"mAP": fused, "NDS": fused}, "camera_lost": {"mAP": cam_lost, "NDS": cam_lost},
                "lidar_lost": {"mAP": lidar_lost, "NDS": lidar_lost}}

    def lat(fused, lidar, camera):
        return {m: {"median_ms": v} for m, v in (("fused", fused), ("lidar", lidar), ("camera", camera))}

    dense_dir = tmp_path / "models" / "base"
    _fake_model_dir(dense_dir)
    (dense_dir / "metadata.json").write_text(json.dumps({
        "metrics": metrics(0.70, 0.67, 0.36), "complexity": {"params_m": 1.2},
        "graphs": {m: {str(ORT_CPU_2T): v} for m, v in lat(28.0, 16.7, 23.0).items()}}))
    manifests = []
    for name, mets, lats in (("good", metrics(0.69, 0.66, 0.30), lat(20.0, 12.0, 15.0)),   # a step of both kinds
                             ("junk", metrics(0.25, 0.24, 0.01), lat(8.0, 6.0, 7.0)),      # fast, far too lossy
                             ("slow", metrics(0.68, 0.60, 0.20), lat(30.0, 20.0, 25.0))):  # dominated
        _fake_model_dir(tmp_path / "variants" / name)
        manifests.append(Manifest(name=name, method="m", sparsity=0.8, granularity="channel", seed=0, dense="dense",
                                  sparsity_realised={}, complexity={"params_m": 0.3}, metrics=mets,
                                  latency_ms={str(ORT_CPU_2T): lats}, scoring={}, finetune={}, prune_config={},
                                  files={}, framework=FRAMEWORK_VERSION))
        manifests[-1].write(tmp_path / "variants" / name)
    profile = write_profile(manifests, dense_dir, tmp_path / "variants", tmp_path / "profiles" / "p.yaml",
                            ship_root=tmp_path / "ship")
    assert [v.name for v in profile.variants] == ["dense-fused", "good-fused", "dense-lidar", "good-lidar",
                                                  "dense-camera"]
    assert sorted(p.name for p in (tmp_path / "ship").iterdir()) == ["good"]  # only chosen pruned variants ship
    assert sorted(p.name for p in (tmp_path / "ship" / "good").iterdir()) == ["fused.onnx", "lidar.onnx",
                                                                            "manifest.json", "model.pt",
                                                                            "weights.bin"]
    # A variant built outside the sweep (a longer fine-tune, a time target) is a candidate when named, and ships
    # from its own folder like the sweep's.
    fast = Manifest(name="fast", method="dm3d", sparsity=0.85, granularity="channel", seed=0, dense="dense",
                    sparsity_realised={}, complexity={"params_m": 0.2}, metrics=metrics(0.68, 0.5, 0.1),
                    latency_ms={str(ORT_CPU_2T): lat(9.0, 7.0, 8.0)}, scoring={}, finetune={}, prune_config={},
                    files={}, framework=FRAMEWORK_VERSION)
    _fake_model_dir(tmp_path / "elsewhere" / "fast")
    fast.write(tmp_path / "elsewhere" / "fast")
    profile = write_profile(manifests, dense_dir, tmp_path / "variants", tmp_path / "profiles" / "p.yaml",
                            ship_root=tmp_path / "ship", extra_folders=(tmp_path / "elsewhere" / "fast",))
    # (fast-fused now dominates good-lidar and dense-lidar, which stays as the camera-loss fallback)
    assert [v.name for v in profile.variants] == ["dense-fused", "good-fused", "fast-fused", "dense-lidar",
                                                  "dense-camera"]
    assert sorted(p.name for p in (tmp_path / "ship").iterdir()) == ["fast", "good"]
    # One named like a sweep variant would ship over it: refused.
    _fake_model_dir(tmp_path / "elsewhere" / "good")
    replace(fast, name="good").write(tmp_path / "elsewhere" / "good")
    with pytest.raises(UserError, match=r"share a name \(good\)"):
        write_profile(manifests, dense_dir, tmp_path / "variants", tmp_path / "profiles" / "p.yaml",
                      extra_folders=(tmp_path / "elsewhere" / "good",))
