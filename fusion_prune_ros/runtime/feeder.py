"""The feeder: arriving sensor messages -> frames, the same code for the live node, a bag replay and a soak.

The ROS edge hands every message over the moment it arrives, as an `Arrival`: its kind, its sensor, its header
stamp, and a function that decodes it (the edge's conversion to numpy, run later by the worker, so that the
executor thread never decodes a JPEG). The feeder
- records the arrival with the sensor health at once (stamp and arrival time: see `health.py`), so a message that
  waits in a queue still shows that its sensor is alive;
- queues everything but LiDAR sweeps in arrival order (at most `queue_limit`; beyond it the oldest is dropped and
  counted as `queue_full_<kind>`);
- keeps only the newest unprocessed sweep: one still waiting when the next arrives is dropped as `busy` (counted;
  it still joins the multi-sweep history);
- holds each sweep `sync_wait_s` before running it, so that images taken before it but delivered after it (DDS
  orders nothing across topics) are fused;
- turns ticks (the node's timer, about the LiDAR rate) into camera-only frames while the LiDAR is lost.

Time is an injected arrival clock: `time.monotonic` in the node; the bag's receive times in a replay, where a
frame keeps the worker busy for the wall time it took, so the replay drops what the live node would drop.
`work()` processes everything ready at the clock's time; `next_ready()` says when that is.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InputError
from .core import DetectorCore

CLOUD, IMAGE, CAMERA_INFO, TF, TF_STATIC, TICK = "cloud", "image", "camera_info", "tf", "tf_static", "tick"


@dataclass
class FeederConfig:
    sync_wait_s: float = 0.03
    queue_limit: int = 200


@dataclass(frozen=True)
class Arrival:
    kind: str
    sensor: str  # the LiDAR or camera name; '' for transforms and ticks
    stamp_ns: int
    decode: Callable[[], Any]
    at: float  # arrival time (s)
    frame_id: str = ""
    rejected: str = ""  # why the health refused its stamp (counted when processed)


class Feeder:
    def __init__(self, core: DetectorCore, cfg: FeederConfig, clock: Callable[[], float] = time.monotonic):
        self.core = core
        self.cfg = cfg
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._overflow: list = []
        self._pending: Arrival | None = None
        self._busy: list = []
        self._tick_waiting = False

    def set_sync_wait(self, seconds: float) -> None:
        with self._cond:
            self.cfg.sync_wait_s = seconds

    # -- arrivals (any thread) ------------------------------------------------------------------------------

    def arrive(self, kind: str, sensor: str, stamp_ns: int, decode: Callable[[], Any], frame_id: str = "") -> None:
        at = self.clock()
        rejected = ""
        if kind in (CLOUD, IMAGE):
            rejected = self.core.health.seen(sensor, stamp_ns * 1e-9, at) or ""
        item = Arrival(kind, sensor, stamp_ns, decode, at, frame_id, rejected)
        with self._cond:
            if kind == CLOUD and not rejected:
                if self._pending is not None:
                    self._busy.append(self._pending)
                self._pending = item
            else:
                if len(self._queue) >= self.cfg.queue_limit:
                    self._overflow.append(self._queue.popleft().kind)
                self._queue.append(item)
            self._cond.notify()

    def tick(self) -> None:
        """The node's timer: at most one tick waits in the queue (a backlog of them would only delay data)."""
        at = self.clock()
        self.core.health.tick(at)
        with self._cond:
            if not self._tick_waiting:
                self._tick_waiting = True
                self._queue.append(Arrival(TICK, "", 0, lambda: None, at))
                self._cond.notify()

    # -- the worker -----------------------------------------------------------------------------------------

    def next_ready(self) -> float | None:
        """Arrival time from which `work()` has something to do: the oldest queued message, or the end of the
        pending sweep's sync wait; None when there is nothing."""
        with self._cond:
            return self._next_ready()

    def _next_ready(self) -> float | None:
        times = [self._queue[0].at] if self._queue else []
        if self._pending is not None:
            times.append(self._pending.at + self.cfg.sync_wait_s)
        return min(times) if times else None

    def wait(self, timeout: float) -> None:
        """Block until `work()` has something to do, or `timeout` seconds (live node)."""
        with self._cond:
            ready = self._next_ready()
            delay = timeout if ready is None else min(timeout, ready - self.clock())
            if delay > 0:
                self._cond.wait(delay)

    def work(self) -> list:
        """Process what is ready now: every queued message in arrival order, then the pending sweep once its sync
        wait is over. Returns the frames made (FrameOutput)."""
        now = self.clock()
        with self._cond:
            items = list(self._queue)
            self._queue.clear()
            overflow, self._overflow = self._overflow, []
            sweep, busy = None, []
            if self._pending is not None and now >= self._pending.at + self.cfg.sync_wait_s:
                sweep, busy = self._pending, self._busy
                self._pending, self._busy = None, []
            if any(i.kind == TICK for i in items):
                self._tick_waiting = False
        core = self.core
        for kind in overflow:
            core.drops[f"queue_full_{kind}"] += 1
        outputs = [core.on_tick(item.at) if item.kind == TICK else self._process(item) for item in items]
        for item in busy:
            self._decoded(item, lambda cloud: core.drop_busy_cloud(item.stamp_ns, cloud.points), busy=True)
        if sweep is not None:
            # The frame's latency counts from the sweep's arrival: its wait (on this feeder's clock, the bag's in a
            # replay) and the message's conversion (wall time, which a replay's clock does not see) included.
            waited, decode_start = self.clock() - sweep.at, time.perf_counter()
            outputs.append(self._decoded(sweep, lambda cloud: core.on_cloud(
                sweep.stamp_ns, sweep.frame_id, cloud.points, cloud.dropped_nonfinite, sweep.at,
                queued_s=waited + time.perf_counter() - decode_start)))
        return [o for o in outputs if o is not None]

    def _process(self, item: Arrival) -> None:
        core = self.core
        if item.rejected:
            core.reject(item.kind, item.sensor, item.rejected)
        elif item.kind == IMAGE:
            self._decoded(item, lambda rgb: core.on_image(item.sensor, item.stamp_ns, rgb))
        elif item.kind == CAMERA_INFO:
            self._decoded(item, lambda info: core.on_camera_info(item.sensor, *info))
        elif item.kind == TF:
            self._decoded(item, core.on_tf)
        elif item.kind == TF_STATIC:
            self._decoded(item, core.on_static_tf)

    def _decoded(self, item: Arrival, use: Callable[[Any], Any], busy: bool = False):
        """use(decoded message), or count why it cannot be used (a busy sweep's reason is a note: the sweep is
        already counted once, as busy)."""
        try:
            data = item.decode()
        except InputError as e:
            if busy:
                self.core.drop_busy_cloud(item.stamp_ns, None, note=e.reason)
            else:
                self.core.reject(item.kind, item.sensor, e.reason)
            return None
        return use(data)
