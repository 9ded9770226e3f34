"""Switching policy: pure logic, profiles with set latencies."""
import pytest

from fusion_prune_ros.runtime.policy import Candidate, Policy, PolicyConfig

PROFILE = [Candidate("dense-fused", "fused", 120.0), Candidate("p50-fused", "fused", 70.0),
           Candidate("p75-fused", "fused", 40.0), Candidate("dense-lidar", "lidar", 50.0),
           Candidate("p75-lidar", "lidar", 20.0), Candidate("dense-camera", "camera", 80.0)]


def _run(policy, latency_of, frames, lidar=True, camera=True):
    decisions = []
    for _ in range(frames):
        d = policy.select(lidar, camera)
        decisions.append(d)
        if d.variant:
            policy.record_latency(d.variant, latency_of(d.variant))
    return decisions


def test_a_camera_only_graph_is_not_a_latency_step_while_the_lidar_works():
    policy = Policy([Candidate("dense-fused", "fused", 120.0), Candidate("dense-lidar", "lidar", 90.0),
                     Candidate("dense-camera", "camera", 60.0)], PolicyConfig(latency_budget_ms=50))
    assert policy.select(True, True).variant == "dense-lidar"  # nothing fits: the fastest with the LiDAR
    assert policy.select(False, True).variant == "dense-camera"


def test_a_camera_only_graph_runs_with_the_lidar_only_when_it_alone_fits():
    policy = Policy([Candidate("dense-fused", "fused", 120.0), Candidate("dense-lidar", "lidar", 90.0),
                     Candidate("dense-camera", "camera", 60.0)], PolicyConfig(latency_budget_ms=70))
    assert policy.select(True, True).variant == "dense-camera"


def test_a_step_down_from_the_fused_ladder_goes_to_the_lidar_graph_before_the_camera_graph():
    """Profile order: fused (most accurate), then the camera graph listed before the LiDAR graph, which must not
    matter while the LiDAR works."""
    profile = [Candidate("fused", "fused", 40.0), Candidate("camera", "camera", 20.0), Candidate("lidar", "lidar", 30.0)]
    policy = Policy(profile, PolicyConfig(latency_budget_ms=50, step_down_after=3))
    decisions = _run(policy, {"fused": 60.0, "camera": 30.0, "lidar": 45.0}.get, 5)
    assert [d.variant for d in decisions] == ["fused"] * 3 + ["lidar"] * 2
    assert "over budget" in decisions[3].reason
    d = policy.select(False, True)
    assert d.variant == "camera" and "lidar=lost" in d.reason


def test_start_with_the_most_accurate_variant_that_fits():
    assert Policy(PROFILE, PolicyConfig(latency_budget_ms=200)).select(True, True).variant == "dense-fused"
    assert Policy(PROFILE, PolicyConfig(latency_budget_ms=100)).select(True, True).variant == "p50-fused"
    assert Policy(PROFILE, PolicyConfig(latency_budget_ms=5)).select(True, True).variant == "p75-lidar"


def test_steps_down_after_k_over_budget_frames_and_says_why():
    policy = Policy(PROFILE, PolicyConfig(latency_budget_ms=200, step_down_after=3))
    lat = {"dense-fused": 250.0, "p50-fused": 150.0}
    decisions = _run(policy, lambda n: lat.get(n, 100.0), 5)
    assert [d.variant for d in decisions] == ["dense-fused"] * 3 + ["p50-fused"] * 2
    assert decisions[3].switched and "over budget" in decisions[3].reason and "dense-fused" in decisions[3].reason


def test_over_budget_frames_do_not_count_once_the_budget_is_raised():
    """Frames over a tight budget must not trigger an 'over budget' switch (to a slower variant!) after the budget
    was raised: the raise is a step-up matter, with its hysteresis."""
    cfg = PolicyConfig(latency_budget_ms=80, step_down_after=3, step_up_after=30)
    policy = Policy([Candidate("dense-fused", "fused", 120.0), Candidate("dense-lidar", "lidar", 90.0)], cfg)
    assert policy.select(True, True).variant == "dense-lidar"  # nothing fits 80 ms: the fastest
    for _ in range(4):
        policy.record_latency("dense-lidar", 90.0)
    cfg.latency_budget_ms = 400
    d = policy.select(True, True)
    assert d.variant == "dense-lidar" and not d.switched


def test_steps_up_only_after_m_frames_with_headroom():
    cfg = PolicyConfig(latency_budget_ms=100, step_up_after=10, headroom=0.8)
    policy = Policy(PROFILE, cfg)
    assert policy.select(True, True).variant == "p50-fused"
    cfg.latency_budget_ms = 300  # the budget is relaxed: dense (120 ms expected) now fits under 80 %
    decisions = _run(policy, lambda n: {"p50-fused": 70.0, "dense-fused": 120.0}[n], 12)
    assert [d.variant for d in decisions].index("dense-fused") == 10  # after 10 frames with headroom
    assert "headroom" in decisions[10].reason


def test_no_oscillation_around_the_budget():
    policy = Policy(PROFILE, PolicyConfig(latency_budget_ms=100, step_down_after=3, step_up_after=30))
    lat = iter([95.0, 105.0] * 200)
    decisions = _run(policy, lambda n: next(lat), 400)
    assert sum(d.switched for d in decisions) == 1  # the start only


def test_sensor_loss_and_recovery():
    policy = Policy(PROFILE, PolicyConfig(latency_budget_ms=200))
    assert policy.select(True, True).variant == "dense-fused"
    d = policy.select(True, False)
    assert d.variant == "dense-lidar" and d.switched and "camera=lost" in d.reason
    d = policy.select(False, True)
    assert d.variant == "dense-camera" and "lidar=lost" in d.reason
    d = policy.select(False, False)
    assert d.variant is None and "no LiDAR and cameras" in d.reason
    assert policy.select(True, True).variant == "dense-fused"


def test_no_camera_variant_means_no_detections_with_a_reason():
    policy = Policy(PROFILE[:5], PolicyConfig())
    d = policy.select(False, True)
    assert d.variant is None and "remaining modality" in d.reason


def test_manual_override():
    cfg = PolicyConfig(latency_budget_ms=200, override="p75-fused")
    policy = Policy(PROFILE, cfg)
    assert policy.select(True, True).variant == "p75-fused"
    d = policy.select(True, False)  # the override needs cameras: the policy falls back and says so
    assert d.variant == "dense-lidar" and "needs a modality" in d.reason
    cfg.override = "nonexistent"
    assert "not in the profile" in policy.select(True, True).reason


def test_unseen_variant_latency_scales_with_the_machine():
    policy = Policy(PROFILE, PolicyConfig(latency_budget_ms=1000))
    policy.select(True, True)
    for _ in range(5):
        policy.record_latency("dense-fused", 240.0)  # this machine is 2x slower than the profile says
    assert policy.expected_ms("p50-fused") == pytest.approx(140.0)


def test_one_slow_frame_does_not_send_the_node_back_to_a_slower_variant():
    """The budget drops below every graph: the node runs the fastest graph that uses the LiDAR. A single slow frame
    of it (over a 20-frame window the p95 is that frame) must not make the fused graph, slower on median, look
    faster."""
    cfg = PolicyConfig(latency_budget_ms=400, step_down_after=3, window=20)
    policy = Policy([Candidate("fused", "fused", 40.0), Candidate("lidar", "lidar", 30.0)], cfg)
    lidar = iter([60.0] * 10 + [110.0] + [60.0] * 40)
    latency = {"fused": lambda: 80.0, "lidar": lambda: next(lidar)}
    decisions = _run(policy, lambda n: latency[n](), 5)
    cfg.latency_budget_ms = 10
    decisions += _run(policy, lambda n: latency[n](), 40)
    assert [d.variant for d in decisions] == ["fused"] * 8 + ["lidar"] * 37


def test_a_step_down_never_returns_to_a_variant_left_over_the_same_budget():
    """The first frames after a switch can be slow (caches, allocations): judged on them, the new variant would look
    slower than the one just left, and the node would go back and forth. It does not go back while the budget is
    as tight; a budget raised above it makes that variant eligible again."""
    cfg = PolicyConfig(latency_budget_ms=400, step_down_after=3)
    policy = Policy([Candidate("fused", "fused", 40.0), Candidate("lidar", "lidar", 30.0)], cfg)
    slow_start = iter([150.0] * 3 + [60.0] * 30)
    latency = {"fused": lambda: 80.0, "lidar": lambda: next(slow_start)}
    decisions = _run(policy, lambda n: latency[n](), 3)
    cfg.latency_budget_ms = 10
    decisions += _run(policy, lambda n: latency[n](), 20)
    assert [d.variant for d in decisions] == ["fused"] * 6 + ["lidar"] * 17
