"""The benchmark's graph list and tables: its ratio column always has the dense fused graph to divide by."""
from dataclasses import replace
from pathlib import Path

from fusion_prune_ros.runtime.machine import cpu_description
from fusion_prune_ros.runtime.profile import load_profile
from fusion_prune_ros.tools.bench import graphs, network_table

ROOT = Path(__file__).parents[1]


def _without_dense(profile):
    return replace(profile, variants=[v for v in profile.variants if v.method != "dense"])


def test_the_dense_fused_graph_is_timed_even_when_the_profile_ladder_displaced_it():
    profile = _without_dense(load_profile(ROOT / "config" / "profiles" / "default.yaml"))
    listed = graphs(profile)
    name, modality, onnx, checkpoint, gflops = listed[0]
    assert (name, modality) == ("dense-fused (reference)", "fused")
    assert onnx.resolve() == (ROOT / "models" / "base" / "fused.onnx").resolve() and onnx.is_file()
    assert checkpoint.is_file() and gflops > max(v.gflops for v in profile.variants if v.modality == "fused")
    assert [g[0] for g in listed[1:]] == [v.name for v in profile.variants]
    # A profile that holds the dense fused graph is timed as it is, without a second copy.
    with_dense = replace(profile, variants=[replace(profile.variants[0], name="dense-fused"), *profile.variants[1:]])
    assert [g[0] for g in graphs(with_dense)] == [v.name for v in with_dense.variants]


def test_network_table_gives_every_graph_a_ratio_against_dense_timed_in_the_same_run():
    profile = _without_dense(load_profile(ROOT / "config" / "profiles" / "default.yaml"))
    rows = network_table(profile, iterations=2, backends=[("onnxruntime", "cpu")])
    assert [r["variant"] for r in rows] == [g[0] for g in graphs(profile)]
    dense = rows[0]
    assert dense["speedup_vs_dense"] == 1.0
    for r in rows:
        assert 0 < r["median_ms"] <= r["p95_ms"]
        assert r["speedup_vs_dense"] == round(dense["median_ms"] / r["median_ms"], 2)


def test_cpu_description_names_model_cores_and_vector_extension(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512f\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512f\n")
    text = cpu_description(info)
    assert text.startswith("AMD EPYC 9R14, ") and text.endswith(" cores, AVX-512")
    info.write_text("model name\t: Intel Xeon\nflags\t: sse2 avx2\n")
    assert cpu_description(info).endswith("AVX2")


def test_adherence_counts_frames_within_the_budget_after_the_warm_up_and_finds_first_frames_after_switches():
    from fusion_prune_ros.tools.budget_adherence import adherence

    frames = [{"variant": "a", "latency_ms": 99.0}] * 3 + [
        {"variant": "a", "latency_ms": 10.0}, {"variant": "a", "latency_ms": 12.0},
        {"variant": "b", "latency_ms": 30.0}, {"variant": "b", "latency_ms": 8.0}, {"variant": "b", "latency_ms": 9.0}]
    row = adherence(frames, budget_ms=20.0, warmup=3)
    assert row.frames == 5 and row.within_share == 0.8  # the warm-up's 99 ms frames are not counted
    assert row.switches == 1 and row.first_after_switch_max_ms == 30.0
    assert row.steady_p95_ms < 12.0 and row.variants == "b 3, a 2"
    quiet = adherence(frames[3:5], budget_ms=11.0, warmup=0)
    assert quiet.switches == 0 and quiet.within_share == 0.5 and quiet.first_after_switch_max_ms != 30.0


def test_ladder_budgets_span_the_steps_with_a_margin():
    from fusion_prune_ros.tools.budget_adherence import ladder_budgets

    assert ladder_budgets([20.0, 10.0, 15.0], count=3, margin=1.1) == [11.0, 16.5, 22.0]


def test_budget_adherence_replays_the_bag_with_the_policy_free_to_switch(shipped):
    from fusion_prune_ros.tools.budget_adherence import budget_adherence

    generous, impossible = budget_adherence(shipped / "profiles" / "dense.yaml", shipped / "val_bag", [1e6, 1e-3])
    assert generous.frames > 0 and generous.within_share == 1.0
    assert impossible.frames == generous.frames and impossible.within_share == 0.0
    assert generous.variants.startswith("dense")


def test_frame_table_times_every_graph_and_splits_its_overhead(shipped):
    from fusion_prune_ros.tools.bench import frame_table

    profile = load_profile(shipped / "profiles" / "dense.yaml")
    rows = frame_table(profile, str(shipped / "val_bag"), frames=10, rounds=1)
    assert [r["variant"] for r in rows] == [g[0] for g in graphs(profile)]
    for r in rows:
        assert r["frames"] > 0 and 0 < r["network_p50_ms"] < r["frame_p50_ms"] <= r["frame_p95_ms"]
        assert min(r["preprocess_p50_ms"], r["decode_p50_ms"], r["rest_p50_ms"]) >= 0
        # the ratio comes from unrounded medians, the two columns are rounded to 0.1 ms: it lies in the range
        # their rounding allows
        o, n = r["overhead_p50_ms"], r["network_p50_ms"]
        assert (o - 0.05) / (n + 0.05) - 0.005 <= r["overhead_vs_network"] <= (o + 0.05) / (n - 0.05) + 0.005
    dense = next(r for r in rows if r["modality"] == "fused")
    assert dense["frame_vs_dense"] == 1.0
