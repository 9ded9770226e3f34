"""Sensor health from header stamps and arrival times: the same verdicts whatever the clock, the playback rate or
the order in which a backlogged node takes its messages."""
import pytest

from fusion_prune_ros.runtime.health import HealthConfig, SensorHealth

LIDAR, CAM = "LIDAR_TOP", "CAM_FRONT"
LIDAR_PERIOD, CAM_PERIOD = 0.05, 1 / 12


def _stream(t0: float, t1: float, lidar: bool = True, camera: bool = True) -> list:
    """(sensor, stamp) of a 20 Hz LiDAR and a 12 Hz camera between t0 and t1, in stamp order."""
    out = []
    for name, period, on in ((LIDAR, LIDAR_PERIOD, lidar), (CAM, CAM_PERIOD, camera)):
        k = int(t0 / period - 1e-9) + 1
        while on and k * period < t1:
            out.append((k * period, name))
            k += 1
    return [(name, stamp) for stamp, name in sorted(out)]


def _play(h: SensorHealth, stream: list, rate: float = 1.0, offset: float = 0.0, judge_every: float = 0.05) -> list:
    """Feed a stream arriving at offset + stamp / rate; returns (stamp, LiDAR usable, camera usable) after each
    message, judged at its arrival time."""
    states = []
    for name, stamp in stream:
        at = offset + stamp / rate
        h.tick(at)
        assert h.seen(name, stamp, at) is None
        states.append((round(stamp, 4), h.usable(LIDAR, at), h.usable(CAM, at)))
    return states


def _health(**kw) -> SensorHealth:
    return SensorHealth(LIDAR, (CAM,), HealthConfig(**kw))


def test_first_sight_is_usable_and_a_silent_camera_is_lost_while_the_lidar_goes_on():
    h = _health(recover_after_s=1.0)
    assert h.status(0.0) == {LIDAR: "never_seen", CAM: "never_seen"}
    _play(h, _stream(0.0, 1.0))
    assert h.usable(LIDAR, 1.0) and h.usable(CAM, 1.0)
    states = _play(h, _stream(1.0, 2.0, camera=False))
    lost = next(s for s, _, cam in states if not cam)
    assert lost <= 1.0 - CAM_PERIOD + 0.25 + LIDAR_PERIOD + 1e-9  # the last image + max age (+ one LiDAR period)
    assert h.status(2.0)[CAM] == "stale" and h.status(2.0)[LIDAR] == "ok"
    states = _play(h, _stream(2.0, 3.5))
    back = next(s for s, _, cam in states if cam)
    assert back == pytest.approx(2.0 + 1.0, abs=0.1)  # usable again after recover_after_s of its own stamps


@pytest.mark.parametrize("rate, offset", [(1.0, 0.0), (0.25, 5000.0), (0.5, -1e9), (2.0, 123.0)])
def test_verdicts_do_not_depend_on_the_clock_or_the_rate(rate, offset):
    """Arrival times in any clock (the wall clock of a bag played with its original stamps, at any rate): the
    LiDAR withheld for a second is lost and recovers at the same stamps."""
    stream = _stream(0.0, 2.0) + _stream(2.0, 3.0, lidar=False) + _stream(3.0, 6.0)
    reference = _play(_health(), stream)
    assert _play(_health(), stream, rate, offset) == reference
    lidar = [usable for _, usable, _ in reference]
    assert not all(lidar) and lidar[-1]


def test_a_backlogged_lidar_that_still_arrives_is_never_lost():
    """The node falls behind and takes camera messages before the queued sweeps: the LiDAR's stamps lag the
    cameras' by 400 ms, but its sweeps keep arriving, so it is not stale."""
    h = _health()
    verdicts = []
    for k in range(200):
        at = k * LIDAR_PERIOD
        h.tick(at)
        h.seen(LIDAR, at - (0.4 if k > 20 else 0.0), at)
        if k % 2 == 0:
            h.seen(CAM, at, at)
        verdicts.append(h.usable(LIDAR, at))
    assert all(verdicts)


def test_total_silence_is_judged_on_regular_ticks_only():
    h = _health()
    _play(h, _stream(0.0, 1.0))
    h.tick(1.5)  # a tick 0.5 s after the last: the node itself was held up, nothing is judged lost
    assert h.fresh(LIDAR, 1.5) and h.fresh(CAM, 1.5)
    h.tick(1.55)
    assert not h.fresh(LIDAR, 1.55) and not h.fresh(CAM, 1.55)


def test_total_silence_scales_with_the_playback_rate():
    h = _health()
    _play(h, _stream(0.0, 3.0), rate=0.25)  # arrivals 4x slower than the stamps
    assert h.rate == pytest.approx(0.25, rel=0.05)
    last = 3.0 / 0.25
    h.tick(last + 0.3)
    h.tick(last + 0.35)
    assert h.fresh(LIDAR, last + 0.35)  # 0.35 s of silence is less than one LiDAR period at 0.25x... plus margin
    h.tick(last + 0.6)
    h.tick(last + 0.65)
    assert not h.fresh(LIDAR, last + 0.65)  # 0.15 s of data time at 0.25x is 0.6 s


def test_a_stamp_far_ahead_of_the_others_is_refused_and_a_lidar_time_jump_starts_a_new_timeline():
    h = _health()
    _play(h, _stream(0.0, 3.0))
    assert h.seen(CAM, 50.0, 3.0) == "stamp_in_future"
    assert h.data_clock < 3.0
    assert h.seen(LIDAR, 0.2, 3.0) == "stamp_jumped_back"  # one wild stamp: refused
    assert h.seen(CAM, 2.99, 3.0) is None
    assert h.seen(LIDAR, 0.2, 3.0) == "stamp_jumped_back"
    assert h.seen(LIDAR, 0.25, 3.05) is None  # the bag loops: the second sweep on the new timeline starts it
    assert h.data_clock == 0.25 and h.usable(LIDAR, 3.05) and h.usable(CAM, 3.05)
    assert h.status(3.05) == {LIDAR: "ok", CAM: "ok"}


def test_flapping_camera_is_never_usable_and_is_flagged():
    h = _health(recover_after_s=1.0, flap_window_s=5.0, flap_transitions=3)
    _play(h, _stream(0.0, 1.0))
    states = []
    for k in range(6):  # on for 0.5 s, off for 0.5 s
        start = 1.0 + k
        states += _play(h, _stream(start, start + 0.5))
        states += _play(h, _stream(start + 0.5, start + 1.0, camera=False))
    states += _play(h, _stream(7.0, 7.4))
    assert not any(cam for s, _, cam in states if s > 2.0)
    assert h.status(7.4)[CAM] == "flapping"
