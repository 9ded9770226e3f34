"""The benchmark's graph list: its ratio column always has the dense fused graph to divide by."""
from dataclasses import replace
from pathlib import Path

from fusion_prune_ros.tools.bench import graphs
from fusion_prune_ros.runtime.profile import load_profile

ROOT = Path(__file__).parents[1]


def test_the_dense_fused_graph_is_timed_even_when_the_profile_ladder_displaced_it():
    profile = load_profile(ROOT / "config" / "profiles" / "default.yaml")
    assert not any(v.name.startswith("dense") and v.modality == "fused" for v in profile.variants)
    listed = graphs(profile)
    name, modality, onnx, checkpoint, gflops = listed[0]
    assert (name, modality) == ("dense-fused (reference)", "fused")
    assert onnx.resolve() == (ROOT / "models" / "base" / "fused.onnx").resolve() and onnx.is_file()
    assert checkpoint.is_file() and gflops > max(v.gflops for v in profile.variants if v.modality == "fused")
    assert [g[0] for g in listed[1:]] == [v.name for v in profile.variants]
    # A profile that holds the dense fused graph is timed as it is, without a second copy.
    with_dense = replace(profile, variants=[replace(profile.variants[0], name="dense-fused"), *profile.variants[1:]])
    assert [g[0] for g in graphs(with_dense)] == [v.name for v in with_dense.variants]
