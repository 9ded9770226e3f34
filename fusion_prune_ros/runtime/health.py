"""Per-sensor health from message arrival times: fresh, stale, recovering, and flapping.

Pure logic: every call takes the current time (seconds, any clock: ROS time, sim time or a test's counter), so
the same code runs in the node, the bag replay and unit tests. Time never runs backwards inside: a call with an
earlier time than one already seen (messages processed slightly out of arrival order) counts as that latest time. A sensor that was lost must stay fresh for
`recover_after_s` before it counts as usable again, so a connector that flaps does not make the detector switch
variants every half second; a sensor seen for the first time is usable at once (detections flow from the first
LiDAR message, cameras join as they come).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class HealthConfig:
    lidar_max_age_s: float = 0.15
    camera_max_age_s: float = 0.25  # three periods of a 12 Hz camera: one late image is not a lost camera
    recover_after_s: float = 1.0
    flap_window_s: float = 5.0
    flap_transitions: int = 4  # losses within the window that mark a sensor as flapping


@dataclass
class _Sensor:
    max_age: float
    last_stamp: float | None = None
    lost_at: float | None = None  # when it last went stale (None: never lost, or recovered)
    fresh_since: float | None = None
    losses: deque = field(default_factory=deque)
    was_usable: bool = False


class SensorHealth:
    """Tracks named sensors (e.g. LIDAR_TOP and the six cameras)."""

    def __init__(self, lidar: str, cameras: tuple, cfg: HealthConfig = HealthConfig()):
        self.cfg = cfg
        self.lidar = lidar
        self.cameras = tuple(cameras)
        self._s = {lidar: _Sensor(cfg.lidar_max_age_s), **{c: _Sensor(cfg.camera_max_age_s) for c in cameras}}
        self._now = float("-inf")

    def _clock(self, now: float) -> float:
        self._now = max(self._now, now)
        return self._now

    def set_max_age(self, name: str, seconds: float) -> None:
        self._s[name].max_age = seconds

    def seen(self, name: str, now: float) -> None:
        """A message from `name` arrived at time `now` (arrival time, not header stamp: staleness is about now)."""
        s = self._s[name]
        now = self._clock(now)
        self._update(name, now)
        if s.fresh_since is None:
            s.fresh_since = now
        s.last_stamp = now

    def _update(self, name: str, now: float) -> None:
        s = self._s[name]
        stale = s.last_stamp is None or now - s.last_stamp > s.max_age
        if stale and s.last_stamp is not None and s.fresh_since is not None:
            lost = s.last_stamp + s.max_age
            s.fresh_since = None
            s.lost_at = lost
            s.losses.append(lost)
        while s.losses and s.losses[0] < now - self.cfg.flap_window_s:
            s.losses.popleft()

    def fresh(self, name: str, now: float) -> bool:
        s = self._s[name]
        now = self._clock(now)
        self._update(name, now)
        return s.fresh_since is not None and now - s.last_stamp <= s.max_age

    def usable(self, name: str, now: float) -> bool:
        """Fresh, and (if it was ever lost) fresh for at least recover_after_s since it came back."""
        if not self.fresh(name, now):
            return False
        s = self._s[name]
        return s.lost_at is None or self._now - s.fresh_since >= self.cfg.recover_after_s

    def flapping(self, name: str, now: float) -> bool:
        self._update(name, self._clock(now))
        return len(self._s[name].losses) >= self.cfg.flap_transitions

    def camera_mask(self, now: float) -> list:
        return [self.usable(c, now) for c in self.cameras]

    def status(self, now: float) -> dict:
        """name -> 'ok' | 'stale' | 'recovering' | 'flapping' | 'never_seen', for diagnostics."""
        out = {}
        for name, s in self._s.items():
            if s.last_stamp is None:
                out[name] = "never_seen"
            elif not self.fresh(name, now):
                out[name] = "stale"
            elif self.flapping(name, now):
                out[name] = "flapping"
            elif not self.usable(name, now):
                out[name] = "recovering"
            else:
                out[name] = "ok"
        return out
