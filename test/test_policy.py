"""Switching policy and sensor health: pure logic with injected time."""
import pytest

from fusion_prune_ros.runtime.health import HealthConfig, SensorHealth
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


def test_health_fresh_stale_recovery_and_flapping():
    h = SensorHealth("LIDAR_TOP", ("CAM_FRONT",), HealthConfig(camera_max_age_s=0.1, recover_after_s=1.0,
                                                                flap_window_s=5.0, flap_transitions=3))
    assert h.status(0.0) == {"LIDAR_TOP": "never_seen", "CAM_FRONT": "never_seen"}
    h.seen("CAM_FRONT", 0.0)
    assert h.usable("CAM_FRONT", 0.05)  # first sight: usable at once
    assert not h.fresh("CAM_FRONT", 0.2) and h.status(0.2)["CAM_FRONT"] == "stale"
    h.seen("CAM_FRONT", 0.5)
    assert h.fresh("CAM_FRONT", 0.5) and not h.usable("CAM_FRONT", 0.5)  # recovering
    t = 0.5
    while t < 1.6:
        h.seen("CAM_FRONT", t)
        t += 0.08
    assert h.usable("CAM_FRONT", t - 0.08)
    # Flapping at 1 Hz: on for 0.5 s, off for 0.5 s. Never usable while it flaps, and flagged.
    usable = []
    for k in range(6):
        start = 2.0 + k
        for j in range(6):
            h.seen("CAM_FRONT", start + j * 0.08)
            usable.append(h.usable("CAM_FRONT", start + j * 0.08))
    assert not any(usable) and h.flapping("CAM_FRONT", 7.5)
