"""Per-sensor health judged from header stamps and arrival times together, so that no clock source can fool it.

The node's ROS clock is never used: with `/clock` it follows the player (and runs ahead of the data whenever the
node falls behind), without it it is the wall clock while the stamps are the bag's. Two clocks are used instead:

- **data time**, the header stamps. The newest accepted stamp of any sensor is the data clock. A sensor is
  *behind* when the data clock has moved more than its `max_age` past the sensor's own newest stamp: the other
  sensors go on, it does not.
- **arrival time**, a steady clock read when a message arrives, before any queue. A sensor is *silent* when nothing
  of it has arrived for its `max_age` converted to arrival time by the playback rate (data seconds per arrival
  second, measured from the data clock's progress: 1 live, 0.5 for a bag played at half speed).

A sensor is stale when it is silent and either behind, or everything is silent (total silence: no sensor delivers,
so the data clock stands still). Silence alone never condemns a sensor while the others are silent too for a reason
of the node's own: a tick that comes late shows that the node itself was held up, and total silence is judged
again on the next tick. Behind alone never condemns one either: when the node falls behind, messages of one topic
may be taken before those of another, and the stamps of the sensor that is still queued lag, while its arrivals
(one per executor turn) go on. A sensor that stops is therefore stale `max_age` after its last stamp (two periods
after the first missing message, at the defaults) plus however long the node is behind.

Stamps are checked against the data clock extrapolated at the playback rate: one more than `max_future_s` ahead,
or more than `reset_after_s` behind, is refused (a sensor with a wrong clock must not drag every other one into
staleness), unless it is the second LiDAR message in a row on that other timeline (a bag loop, a simulation
reset): that starts a new timeline, on which every known sensor counts as just seen. A sensor that was lost must stay fresh for `recover_after_s` of its own stamps before it is usable
again (hysteresis against a flapping connector); one seen for the first time is usable at once. All methods are
thread-safe: the node records arrivals on its executor thread and judges on its worker thread.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

RATE_WINDOW_S = 2.0  # arrival seconds over which the playback rate is measured
RATE_MIN_SPAN_S = 0.5  # the rate stays at its last value until this much arrival time is covered
RATE_LIMITS = (0.05, 20.0)


@dataclass
class HealthConfig:
    lidar_max_age_s: float = 0.15  # three periods at 20 Hz: stale two periods after the first missing sweep
    camera_max_age_s: float = 0.25  # three periods at 12 Hz
    recover_after_s: float = 1.0
    flap_window_s: float = 5.0
    flap_transitions: int = 4  # losses within the window that mark a sensor as flapping
    max_future_s: float = 1.0
    reset_after_s: float = 1.0
    late_tick_s: float = 0.25  # a tick this much after the previous one shows the node itself was held up


@dataclass
class _Sensor:
    max_age: float
    stamp: float | None = None  # newest accepted header stamp (data time, s)
    arrival: float | None = None  # when it arrived (arrival time, s)
    fresh_since: float | None = None  # data time it (re)appeared; None while lost or never seen
    lost_at: float | None = None  # data time of the last loss (None: never lost)
    losses: deque = field(default_factory=deque)


class SensorHealth:
    """Tracks named sensors (e.g. LIDAR_TOP and the six cameras)."""

    def __init__(self, lidar: str, cameras: tuple, cfg: HealthConfig = HealthConfig()):
        self.cfg = cfg
        self.lidar = lidar
        self.cameras = tuple(cameras)
        self._s = {lidar: _Sensor(cfg.lidar_max_age_s), **{c: _Sensor(cfg.camera_max_age_s) for c in cameras}}
        self._data: float | None = None  # the data clock
        self._first: float | None = None  # the first accepted stamp of any sensor
        self._data_arrival = 0.0  # arrival time of the message that set it
        self._last_arrival: float | None = None
        self._rate_samples: deque = deque()  # (arrival, data clock)
        self._rate: float | None = None  # until measured, nothing is judged stale
        self._tick_at: float | None = None
        self._tick_late = True  # until two ticks have been seen, total silence is not judged
        self._jump: float | None = None  # the stamp of a refused message that may start a new timeline
        self._lock = threading.RLock()

    # -- configuration --------------------------------------------------------------------------------------

    def set_max_age(self, name: str, seconds: float) -> None:
        with self._lock:
            self._s[name].max_age = seconds

    def set_recover_after(self, seconds: float) -> None:
        with self._lock:
            self.cfg.recover_after_s = seconds

    # -- arrivals -------------------------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Data seconds per arrival second (the playback rate; 1 live), 1 until measured."""
        return self._rate or 1.0

    @property
    def data_clock(self) -> float | None:
        """The newest accepted stamp of any sensor (s), None before the first."""
        return self._data

    def seen(self, name: str, stamp: float, arrival: float) -> str | None:
        """A message of `name` stamped `stamp` (data time) arrived at `arrival` (arrival time). Returns None when
        accepted, else the reason it is not (the caller drops the message with it)."""
        with self._lock:
            s = self._s[name]
            if self._data is not None:
                refused = self._check_stamp(name, stamp, arrival)
                if refused:
                    return refused
            self._judge(s, arrival)
            if s.fresh_since is None:
                s.fresh_since = stamp
            s.stamp = stamp if s.stamp is None else max(s.stamp, stamp)
            s.arrival = arrival
            self._last_arrival = arrival
            if self._first is None:
                self._first = stamp
            if self._data is None or stamp > self._data:
                self._data, self._data_arrival = stamp, arrival
                self._measure_rate(arrival)
            return None

    def data_time(self, at: float) -> float | None:
        """The data clock carried forward to arrival time `at` at the playback rate (None before any message)."""
        with self._lock:
            if self._data is None:
                return None
            return self._data + max(0.0, at - self._data_arrival) * self.rate

    def _check_stamp(self, name: str, stamp: float, arrival: float) -> str | None:
        """None for a stamp on the current timeline, else why it is refused. Only the LiDAR (or, while it is not
        fresh, any sensor) moves the timeline, and only when two messages in a row agree on the new one: a single
        wild stamp is refused, a bag loop or a simulation reset is followed after one message."""
        if stamp > self.data_time(arrival) + self.cfg.max_future_s:
            reason = "stamp_in_future"
        elif stamp < self._data - self.cfg.reset_after_s:
            reason = "stamp_jumped_back"
        else:
            self._jump = None
            return None
        if name != self.lidar and self._fresh(self._s[self.lidar], arrival):
            return reason
        if self._jump is not None and abs(stamp - self._jump) <= self.cfg.reset_after_s:
            self._jump = None
            self._new_timeline(stamp)
            return None
        self._jump = stamp
        return reason

    def tick(self, arrival: float) -> None:
        """A periodic tick of the node's own timer: a late one shows the node was held up (no total silence)."""
        with self._lock:
            self._tick_late = self._tick_at is None or arrival - self._tick_at > self.cfg.late_tick_s
            self._tick_at = arrival

    def _new_timeline(self, stamp: float) -> None:
        self._data = stamp
        self._rate_samples.clear()  # the rate measured so far stays in use until the new timeline measures it
        for s in self._s.values():
            if s.stamp is not None:
                s.stamp = stamp
                s.fresh_since = stamp if s.fresh_since is not None else None
                s.losses.clear()

    def _measure_rate(self, arrival: float) -> None:
        samples = self._rate_samples
        samples.append((arrival, self._data))
        while len(samples) > 2 and samples[1][0] <= arrival - RATE_WINDOW_S:
            samples.popleft()
        span = arrival - samples[0][0]
        if span >= RATE_MIN_SPAN_S:
            self._rate = min(max((self._data - samples[0][1]) / span, RATE_LIMITS[0]), RATE_LIMITS[1])

    # -- judgement ------------------------------------------------------------------------------------------

    def _fresh(self, s: _Sensor, at: float) -> bool:
        if s.stamp is None:
            return False
        if self._rate is None:
            return True  # the first RATE_MIN_SPAN_S of arrivals: the rate that converts max ages is not known yet
        silent = at - s.arrival > s.max_age / self.rate
        if not silent:
            return True
        behind = self._data - s.stamp > s.max_age
        everything_silent = not self._tick_late and at - self._last_arrival > s.max_age / self.rate
        return not (behind or everything_silent)

    def _judge(self, s: _Sensor, at: float) -> bool:
        """Is `s` fresh at arrival time `at`? Records a loss when it has just gone stale."""
        fresh = self._fresh(s, at)
        if not fresh and s.fresh_since is not None:
            s.fresh_since = None
            s.lost_at = s.stamp + s.max_age
            s.losses.append(s.lost_at)
        while s.losses and s.losses[0] < (self._data or 0.0) - self.cfg.flap_window_s:
            s.losses.popleft()
        return fresh and s.fresh_since is not None  # a lost sensor stays lost until it sends again

    def fresh(self, name: str, at: float) -> bool:
        with self._lock:
            return self._judge(self._s[name], at)

    def usable(self, name: str, at: float) -> bool:
        """Fresh, and (if it was ever lost) fresh for at least recover_after_s of its own stamps since it came
        back."""
        with self._lock:
            s = self._s[name]
            if not self._judge(s, at):
                return False
            return s.lost_at is None or s.stamp - s.fresh_since >= self.cfg.recover_after_s

    def awaited(self, name: str, at: float) -> bool:
        """Never seen, but the other sensors have not been delivering for its max age yet: at start-up, a sensor
        whose first message is still on its way is not treated as lost."""
        with self._lock:
            s = self._s[name]
            return s.stamp is None and (self._first is None or self.data_time(at) - self._first <= s.max_age)

    def flapping(self, name: str, at: float) -> bool:
        with self._lock:
            s = self._s[name]
            self._judge(s, at)
            return len(s.losses) >= self.cfg.flap_transitions

    def camera_mask(self, at: float) -> list:
        return [self.usable(c, at) for c in self.cameras]

    def status(self, at: float) -> dict:
        """name -> 'ok' | 'stale' | 'recovering' | 'flapping' | 'never_seen', for diagnostics."""
        out = {}
        with self._lock:
            for name, s in self._s.items():
                if s.stamp is None:
                    out[name] = "never_seen"
                elif not self.fresh(name, at):
                    out[name] = "stale"
                elif self.flapping(name, at):
                    out[name] = "flapping"
                elif not self.usable(name, at):
                    out[name] = "recovering"
                else:
                    out[name] = "ok"
        return out
