"""Sensor dropout scenarios (config/scenarios/dropout/*.yaml) through the node's pipeline on the bag's clock.

The 2 s test bag is looped four times (one continuous 8 s drive). For each scenario: detections keep flowing
whenever a modality is present, the variant switches within two LiDAR periods of the sensor going stale, comes
back after recovery (hysteresis: `recover_after_s`), never oscillates while a camera flaps, and the official
nuScenes metrics are reported per segment.
"""
from pathlib import Path

import pytest

from fusion_prune_ros.bag.replay import replay, score
from fusion_prune_ros.bag.scenario import load_scenario
from fusion_prune_ros.runtime.core import CoreConfig
from fusion_prune_ros.runtime.policy import PolicyConfig

SCENARIOS = Path(__file__).parents[1] / "config" / "scenarios" / "dropout"
PERIOD = 0.05  # LiDAR
LOST_AT, BACK_AT = 2.0, 4.5  # the blackout scenarios' window


@pytest.fixture(scope="module")
def run(shipped, tiny_root):
    cache = {}

    def _run(name: str):
        if name not in cache:
            scenario = load_scenario(SCENARIOS / f"{name}.yaml")
            cfg = CoreConfig(profile=str(shipped / "profiles" / "dense.yaml"), backend="onnxruntime", device="cpu",
                             score_threshold=0.05, policy=PolicyConfig(latency_budget_ms=1e4))
            out = shipped / f"dropout_{name}"
            core, record = replay(shipped / "val_bag", cfg, out, scenario, no_drop=True, quiet=True, loops=4)
            metrics = score(record, scenario, str(tiny_root), "v1.0-mini", "mini_val", out)
            print(f"\n{name}: switches " + "; ".join(f"{(s.stamp_ns - record.start_ns) * 1e-9:.2f} s -> {s.variant}"
                                                   for s in core.switches) + f"\n  metrics {metrics}")
            cache[name] = (core, record, metrics, cfg)
        return cache[name]

    return _run


def _frames(record, start=0.0, end=1e9):
    return [f for f in record.frames if start <= f["t"] < end]


def _first(record, after: float, variant: str) -> float:
    return next(f["t"] for f in record.frames if f["t"] >= after and f["variant"] == variant)


def _no_gap(record, start: float, end: float, allowed: float = 2 * PERIOD) -> None:
    t = [f["t"] for f in _frames(record, start, end)]
    assert t and max(b - a for a, b in zip(t, t[1:])) <= allowed + 1e-6


@pytest.mark.parametrize("name, cameras_left", [("one_camera", 5), ("front_cameras", 3)])
def test_some_cameras_lost_keeps_the_fused_variant_with_those_masked(run, name, cameras_left):
    core, record, metrics, cfg = run(name)
    stale = LOST_AT + cfg.camera_max_age_s + PERIOD
    during = _frames(record, stale, BACK_AT)
    assert during and {f["variant"] for f in during} == {"dense-fused"}
    assert {f["cameras"] for f in during} == {cameras_left}
    assert [s.variant for s in core.switches] == ["dense-fused"]  # the start only: no switch for a partial loss
    assert {f["cameras"] for f in _frames(record, BACK_AT + cfg.health.recover_after_s + 2 * PERIOD)} == {6}
    _no_gap(record, 0.0, 8.0)
    assert set(metrics) >= {"overall", "full", "camera_lost"}


@pytest.mark.parametrize("name, fallback, stale_after, segment", [
    ("all_cameras", "dense-lidar", "camera_max_age_s", "camera_lost"),
    ("lidar", "dense-camera", "lidar_max_age_s", "lidar_lost"),
])
def test_one_modality_lost_switches_to_the_other_and_back(run, name, fallback, stale_after, segment):
    core, record, metrics, cfg = run(name)
    stale = getattr(cfg.health, stale_after)
    assert _first(record, LOST_AT, fallback) - (LOST_AT + stale) <= 2 * PERIOD + 1e-6
    assert {f["variant"] for f in _frames(record, LOST_AT + stale + PERIOD, BACK_AT)} == {fallback}
    back = _first(record, BACK_AT, "dense-fused")
    assert back - (BACK_AT + cfg.health.recover_after_s) <= 2 * PERIOD + 1e-6
    assert [s.variant for s in core.switches] == ["dense-fused", fallback, "dense-fused"]
    # Camera frames only start once the LiDAR is stale: its silence is the one allowed gap.
    _no_gap(record, 0.0, 8.0, allowed=(stale if name == "lidar" else 0.0) + 2 * PERIOD)
    assert set(metrics) >= {"overall", "full", segment}


def test_everything_lost_stops_detections_says_so_and_recovers(run):
    core, record, metrics, cfg = run("lidar_and_cameras")
    assert not _frames(record, LOST_AT + cfg.health.lidar_max_age_s + PERIOD, BACK_AT)
    # The LiDAR drives at once when it is back (nothing else to use), the cameras join after recovering.
    assert [s.variant for s in core.switches] == ["dense-fused", None, "dense-lidar", "dense-fused"]
    assert "no LiDAR and cameras" in core.switches[1].reason
    assert _first(record, BACK_AT, "dense-lidar") - BACK_AT <= 2 * PERIOD + 1e-6
    back = _first(record, BACK_AT, "dense-fused")
    assert back - (BACK_AT + cfg.health.recover_after_s) <= 2 * PERIOD + 1e-6
    _no_gap(record, BACK_AT + 2 * PERIOD, 8.0)
    assert metrics["all_lost"]["mAP"] == 0.0  # nothing published while blind: those samples score nothing


def test_one_flapping_camera_never_switches(run):
    core, record, metrics, cfg = run("camera_flapping")
    assert [s.variant for s in core.switches] == ["dense-fused"]
    flapping = _frames(record, 2.0, 6.0)
    assert {f["variant"] for f in flapping} == {"dense-fused"} and min(f["cameras"] for f in flapping) == 5
    _no_gap(record, 0.0, 8.0)


def test_all_cameras_flapping_holds_the_lidar_variant_until_they_are_steady(run):
    """On 0.5 s, off 0.5 s never stays fresh for recover_after_s: one switch down, one back after, no oscillation."""
    core, record, metrics, cfg = run("cameras_flapping")
    assert [s.variant for s in core.switches] == ["dense-fused", "dense-lidar", "dense-fused"]
    assert {f["variant"] for f in _frames(record, 2.0 + 0.5 + cfg.health.camera_max_age_s + PERIOD, 6.0)} == \
        {"dense-lidar"}
    _no_gap(record, 0.0, 8.0)
