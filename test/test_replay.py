"""Bag replay through the node's logic: equals offline evaluation without drops; scenarios switch variants."""

import pytest

from fusion_prune_ros.bag.replay import replay, score, write_results
from fusion_prune_ros.bag.scenario import Scenario, ScenarioEvent, load_scenario
from fusion_prune_ros.data.dataset import build_cache
from fusion_prune_ros.data.nusc import split_sample_tokens
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.evaluation.metrics import evaluate_predictions
from fusion_prune_ros.model.checkpoint import load_detector
from fusion_prune_ros.model.decode import DecodeConfig
from fusion_prune_ros.model.inference import predict, torch_runner
from fusion_prune_ros.runtime.core import CoreConfig
from fusion_prune_ros.runtime.policy import PolicyConfig

@pytest.fixture(scope="module")
def bag(shipped):
    return shipped / "val_bag"


def test_no_drop_replay_scores_what_offline_evaluation_scores(shipped, bag, tiny_root, tiny_nusc):
    core_cfg = CoreConfig(profile=str(shipped / "profiles" / "dense.yaml"), backend="onnxruntime", device="cpu",
                          score_threshold=DecodeConfig().score_threshold, policy=PolicyConfig(latency_budget_ms=1e4))
    core, record = replay(bag, core_cfg, shipped / "out_nodrop", no_drop=True, quiet=True)
    assert not core.drops and len(record.frames) == len(record.lidar_stamps)
    metrics = score(record, Scenario(), str(tiny_root), "v1.0-mini", "mini_val", shipped / "out_nodrop")
    model, cfg, _ = load_detector(shipped / "models" / "model.pt")
    cfg.data.dataroot = str(tiny_root)
    offline = predict(torch_runner(model), build_cache(cfg, "mini_val", quiet=True), cfg, quiet=True)
    tokens = split_sample_tokens(tiny_nusc, "mini_val")
    ref = evaluate_predictions(tiny_nusc, offline, "mini_val", shipped / "offline", sample_tokens=tokens)
    assert metrics["overall"]["samples"] == len(tokens)
    assert abs(metrics["overall"]["mAP"] - ref["mean_ap"]) <= 1e-3
    assert abs(metrics["overall"]["NDS"] - ref["nd_score"]) <= 1e-3


def test_scenario_blackout_switches_to_lidar_and_back(shipped, bag, tiny_root):
    scenario = Scenario("camera-blackout", [ScenarioEvent(at=0.6, until=1.4, drop=["cameras"])])
    core_cfg = CoreConfig(profile=str(shipped / "profiles" / "dense.yaml"), backend="onnxruntime", device="cpu",
                          score_threshold=0.05, policy=PolicyConfig(latency_budget_ms=1e4))
    core_cfg.health.recover_after_s = 0.2
    core, record = replay(bag, core_cfg, shipped / "out_blackout", scenario, no_drop=True, quiet=True)
    variants = [(f["t"], f["variant"]) for f in record.frames]
    stale = 0.6 + core_cfg.health.camera_max_age_s  # the last image before the blackout, plus the staleness limit
    during = {v for t, v in variants if stale + 2 * 0.05 < t < 1.4}
    assert during == {"dense-lidar"}
    assert variants[-1][1] == "dense-fused" and variants[0][1] == "dense-fused"
    reasons = [s.reason for s in core.switches]
    assert any("camera=lost" in r for r in reasons)
    # The switch happens within two LiDAR periods of the cameras going stale (last image + max age).
    first_lidar = next(t for t, v in variants if v == "dense-lidar")
    assert first_lidar - stale <= 2 * 0.05 + 1e-6
    results = write_results(core, record, score(record, scenario, str(tiny_root), "v1.0-mini", "mini_val",
                                                shipped / "out_blackout"), shipped / "out_blackout")
    assert set(results["metrics"]) >= {"overall", "full", "camera_lost"}
    assert (shipped / "out_blackout" / "output_bag").is_dir()


def test_live_pace_drops_busy_frames_with_a_reason(shipped, bag):
    core_cfg = CoreConfig(profile=str(shipped / "profiles" / "dense.yaml"), backend="onnxruntime", device="cpu",
                          policy=PolicyConfig(latency_budget_ms=1e4))
    core, record = replay(bag, core_cfg, shipped / "out_live", no_drop=False, quiet=True)
    accounted = len(record.frames) + sum(core.drops.values())
    assert accounted == len(record.lidar_stamps)  # every sweep is processed or dropped with a reason


def test_the_player_rate_sets_how_much_a_frame_keeps_the_node_busy(shipped, bag):
    """At 1/20 of the recorded pace a sweep comes every second of the node's time: none is dropped. At 20x, one
    every 2.5 ms: most are, each with the reason. Frame times stay in bag seconds either way."""
    core_cfg = CoreConfig(profile=str(shipped / "profiles" / "dense.yaml"), backend="onnxruntime", device="cpu",
                          policy=PolicyConfig(latency_budget_ms=1e4))
    slow_core, slow = replay(bag, core_cfg, shipped / "out_slow", quiet=True, rate=0.05)
    fast_core, fast = replay(bag, core_cfg, shipped / "out_fast", quiet=True, rate=20.0)
    assert slow_core.drops["busy"] == 0 and len(slow.frames) == len(slow.lidar_stamps)
    assert fast_core.drops["busy"] > len(fast.lidar_stamps) / 2
    assert len(fast.frames) + fast_core.drops["busy"] == len(fast.lidar_stamps)
    bag_seconds = (slow.lidar_stamps[-1] - slow.start_ns) * 1e-9
    assert max(f["t"] for f in slow.frames) <= bag_seconds + 0.1


def test_scenario_yaml_validation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nevents:\n  - {at: 1.0, drop: [CAM_NOSE]}\n")
    with pytest.raises(UserError, match="unknown sensor 'CAM_NOSE'"):
        load_scenario(path)
    path.write_text("name: x\nevents:\n  - {at: 1.0, colour: red}\n")
    with pytest.raises(UserError, match="unknown key"):
        load_scenario(path)
    path.write_text("name: flap\nevents:\n  - {at: 2.0, until: 4.0, flap: [CAM_FRONT], period_s: 1.0}\n")
    s = load_scenario(path)
    assert [s.blocked("CAM_FRONT", t) for t in (1.9, 2.1, 2.6, 3.1, 3.6, 4.1)] == [False, False, True, False, True,
                                                                                   False]
