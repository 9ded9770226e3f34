"""`fusion-prune replay`: a bag through the node's own feeder and DetectorCore, in-process, on the bag's clock.

Real compute time counts: after a frame that took W seconds of wall time, the worker is busy until W seconds of
bag time later; messages arriving meanwhile queue, and a LiDAR sweep replaced by a newer one is dropped with the
reason `busy`, as the live node drops it (`no_drop` processes every sweep, for accuracy-only runs). A scenario withholds sensors and changes the budget.
Writes an output bag (detections, markers, active variant, diagnostics), `replay.json` (frames, drops and reasons,
switches with reasons, per-variant latency, official nuScenes metrics overall and per segment) and a timeline plot.
"""
from __future__ import annotations

import json
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from ..data.classes import LIDAR
from ..detections import Detections
from ..errors import UserError
from ..ros.detection_msgs import detections_to_markers, detections_to_msg, label_info_msg
from ..ros.msg_types import rosbags_types
from ..ros.stamps import ns_to_stamp, stamp_to_ns
from ..ros.inputs import InputRouter, InputTopics
from ..ros.topics import (ACTIVE_VARIANT_TOPIC, DETECTION_MARKERS_TOPIC, DETECTIONS_TOPIC, DIAGNOSTICS_TOPIC,
                          LABEL_INFO_TOPIC, LIDAR_TOPIC, TF_STATIC_TOPIC)
from ..runtime.core import CoreConfig, DetectorCore, FrameOutput
from ..runtime.feeder import Feeder, FeederConfig
from . import typestore as ts
from .paths import open_reader
from .scenario import SEGMENTS, Scenario

LIDAR_PERIOD_NS = 50_000_000
TICK_S = 0.05
CAMERA_FRAME_MATCH_S = 0.1  # the camera-only fallback's frame clock (the LiDAR rate of nuScenes)
DIAGNOSTICS_PERIOD_S = 1.0


@dataclass
class ReplayRecord:
    """Everything that happened, for the results file and the timeline plot."""

    # per output: t, stamp_ns, variant, latency_ms (end to end) and its network, preprocess and decode parts,
    # budget_ms, segment, cameras
    frames: list = field(default_factory=list)
    lidar_stamps: list = field(default_factory=list)  # every sweep in the bag, withheld or dropped ones included
    start_ns: int = 0  # the bag's first message: scenario times count from here
    loop_shift_ns: int = 0  # how far each pass of a looped replay is moved forward
    withheld: Counter = field(default_factory=Counter)
    detections: dict = field(default_factory=dict)  # stamp_ns -> Detections
    health: list = field(default_factory=list)  # (t, lidar ok, cameras ok)


def replay(bag: str | Path, core_cfg: CoreConfig, out_dir: str | Path, scenario: Scenario = Scenario(),
           no_drop: bool = False, quiet: bool = False, loops: int = 1, keep_detections: bool = True,
           on_loop: Callable[[int, DetectorCore], None] | None = None,
           feeder_cfg: FeederConfig | None = None, rate: float = 1.0) -> tuple:
    """Run the bag through the node's feeder and DetectorCore; returns (core, record). Writes out_dir/output_bag.

    Messages arrive as a player at `rate` delivers them: at their bag receive times divided by the rate (the
    arrival clock, in the node's seconds); ticks come every TICK_S of it, as the node's timer does, and a frame keeps
    the worker busy for its wall time. So a replay at rate 0.5 predicts the node fed by a player at 0.5x. loops > 1 plays the bag again and again on one continuous clock (every stamp of pass k moved
    forward by k bag lengths plus a LiDAR period), as a long drive: the scenario's times count across passes, and
    scoring maps each pass back to the bag's samples. keep_detections=False keeps no per-frame detections in memory
    (soak runs); on_loop(k, core) is called after each pass (soak measurements)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_bag = out_dir / "output_bag"
    if out_bag.exists():
        raise UserError(f"output bag already exists: {out_bag}")
    reader = open_reader(bag)
    core = DetectorCore(core_cfg)
    clock = _ArrivalClock()
    feeder = Feeder(core, feeder_cfg or FeederConfig(), clock)
    router = InputRouter(feeder, InputTopics.for_cameras(core_cfg.cameras), core_cfg.lidar, core_cfg.max_points)
    record = ReplayRecord()
    writer = Writer(out_bag, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        output = _OutputBag(writer)
        record.start_ns = reader.start_time
        if rate <= 0:
            raise UserError("rate must be positive")
        output.write_label_info(record.start_ns)
        record.loop_shift_ns = reader.end_time - record.start_ns + LIDAR_PERIOD_NS
        options = _RunOptions(rate, no_drop, keep_detections)
        run = _Run(core, feeder, clock, router, output, record, scenario, options)
        total = sum(c.msgcount for c in reader.connections) * loops
        bar = tqdm(total=total, desc="replay", disable=quiet, mininterval=2.0, unit="msg")
        loop_done = 0
        for k, conn, t_ns, raw in _passes(reader, loops, record.loop_shift_ns):
            bar.update(1)
            if k != loop_done:
                if on_loop is not None:
                    on_loop(loop_done, core)
                loop_done = k
            run.arrive(k, conn, t_ns, raw)
        run.work_until(np.inf)
        if on_loop is not None:
            on_loop(loops - 1, core)
        bar.close()
    finally:
        writer.close()
        reader.close()
    return core, record


class _ArrivalClock:
    """The replay's arrival clock: bag receive time, moved on by the replay loop."""

    t = 0.0

    def __call__(self) -> float:
        return self.t


class _OutputBag:
    """The node's output topics in the replay's bag, messages built with the rosbags classes."""

    def __init__(self, writer: Writer):
        self.writer = writer
        self.store = ts.typestore()
        self.types = rosbags_types()
        topics = [("det", DETECTIONS_TOPIC, ts.DETECTION3D_ARRAY),
                  ("markers", DETECTION_MARKERS_TOPIC, ts.MARKER_ARRAY),
                  ("variant", ACTIVE_VARIANT_TOPIC, "std_msgs/msg/String"),
                  ("diag", DIAGNOSTICS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray"),
                  ("labels", LABEL_INFO_TOPIC, ts.LABEL_INFO)]
        self.conns = {name: writer.add_connection(topic, typename, typestore=self.store)
                      for name, topic, typename in topics}

    def header(self, stamp_ns: int, frame_id: str):
        return self.store.types[ts.HEADER](stamp=ns_to_stamp(stamp_ns, self.store.types[ts.TIME]), frame_id=frame_id)

    def write_label_info(self, start_ns: int) -> None:
        msg = label_info_msg(self.header(start_ns, LIDAR), self.types)
        self.writer.write(self.conns["labels"], start_ns, self.store.serialize_cdr(msg, ts.LABEL_INFO))

    def write_frame(self, out: FrameOutput, stamp: int) -> None:
        """One frame's detections, markers and active variant, written at bag time `stamp`."""
        store, types, hdr = self.store, self.types, self.header(out.stamp_ns, out.frame_id)
        self.writer.write(self.conns["det"], stamp, store.serialize_cdr(
            detections_to_msg(out.detections, hdr, types), ts.DETECTION3D_ARRAY))
        self.writer.write(self.conns["markers"], stamp, store.serialize_cdr(
            detections_to_markers(out.detections, hdr, types, int(0.15e9), "fusion_prune"), ts.MARKER_ARRAY))
        self.writer.write(self.conns["variant"], stamp, store.serialize_cdr(
            store.types["std_msgs/msg/String"](data=out.variant), "std_msgs/msg/String"))

    def write_diagnostics(self, core: DetectorCore, now: float, t_ns: int) -> None:
        T = self.store.types
        statuses = []
        for name, level, message, values in core.diagnostics(now):
            statuses.append(T["diagnostic_msgs/msg/DiagnosticStatus"](
                level=level, name=name, message=message, hardware_id="fusion_prune",
                values=[T["diagnostic_msgs/msg/KeyValue"](key=str(k), value=str(v)) for k, v in values.items()]))
        msg = T["diagnostic_msgs/msg/DiagnosticArray"](header=self.header(t_ns, ""), status=statuses)
        self.writer.write(self.conns["diag"], t_ns,
                          self.store.serialize_cdr(msg, "diagnostic_msgs/msg/DiagnosticArray"))


@dataclass(frozen=True)
class _RunOptions:
    rate: float  # the player's rate: arrival time = bag time / rate
    no_drop: bool  # frames take no time on the arrival clock, so no sweep is dropped as `busy`
    keep_detections: bool


class _Run:
    """One replay on the arrival clock (seconds from the bag start, at the player's rate): the node's timer ticks,
    its worker, the scenario's settings and the routing of each message."""

    def __init__(self, core: DetectorCore, feeder: Feeder, clock: _ArrivalClock, router: InputRouter,
                 output: _OutputBag, record: ReplayRecord, scenario: Scenario, options: _RunOptions):
        self.core, self.feeder, self.clock, self.router = core, feeder, clock, router
        self.output, self.record, self.scenario, self.options = output, record, scenario, options
        self.start_s = record.start_ns * 1e-9
        self.worker_free = -np.inf
        self.next_tick = self.next_diag = 0.0

    def arrive(self, k: int, conn, t_ns: int, raw) -> None:
        """Message `raw` of pass k arrives at bag time t_ns: the clock moves on to it, then it is routed unless the
        scenario withholds its sensor."""
        t_rel = t_ns * 1e-9 - self.start_s
        now = t_rel / self.options.rate
        self._tick_until(now)
        self.work_until(now)
        self.clock.t = now
        self._apply_scenario(t_rel)
        if now >= self.next_diag:
            self.output.write_diagnostics(self.core, now, t_ns)
            self.next_diag += DIAGNOSTICS_PERIOD_S
        topic = conn.topic
        sensor = LIDAR if topic == LIDAR_TOPIC else self.router.topics.images.get(topic) or \
            self.router.topics.camera_infos.get(topic)
        if topic == LIDAR_TOPIC:
            self.record.lidar_stamps.append(t_ns)
        if sensor is not None and self.scenario.blocked(sensor, t_rel):
            self.record.withheld[sensor] += 1
            return
        store = self.output.store
        msg = store.deserialize_cdr(raw, conn.msgtype)
        if k:
            _shift_stamps(msg, k * self.record.loop_shift_ns, store)
        self.router.route(topic, msg)

    def work_until(self, t: float) -> None:
        """The worker, up to arrival time t: whatever is ready runs as soon as the worker is free; a frame keeps
        it busy for the wall time it took (none with no_drop)."""
        while (ready := self.feeder.next_ready()) is not None and max(ready, self.worker_free) <= t:
            self.clock.t = max(ready, self.worker_free)
            w0 = time.perf_counter()
            outputs = self.feeder.work()
            self.worker_free = self.clock.t + (0.0 if self.options.no_drop else time.perf_counter() - w0)
            for out in outputs:
                self._emit(out, self.clock.t)

    def _tick_until(self, now: float) -> None:
        """The node's timer ticks due by arrival time `now`, each after the work that was ready before it."""
        core = self.core
        while self.next_tick <= now:
            self.work_until(self.next_tick)
            self.clock.t = self.next_tick
            self.feeder.tick()
            self.record.health.append((round(self.next_tick * self.options.rate, 3),
                                       core.health.usable(LIDAR, self.next_tick),
                                       int(sum(core.health.camera_mask(self.next_tick)))))
            self.next_tick += TICK_S

    def _apply_scenario(self, t_rel: float) -> None:
        budget = self.scenario.setting("budget_ms", t_rel)
        if budget is not None:
            self.core.set_latency_budget(budget)
        override = self.scenario.setting("override", t_rel)
        if override is not None:
            self.core.set_override(override)

    def _emit(self, out: FrameOutput, arrival: float) -> None:
        t = arrival * self.options.rate  # bag seconds from the start
        self.output.write_frame(out, self.record.start_ns + int(t * 1e9))
        if self.options.keep_detections:
            self.record.detections[out.stamp_ns] = out.detections
        self.record.frames.append({"t": round(t, 4), "stamp_ns": out.stamp_ns, "variant": out.variant,
                                   "latency_ms": round(out.timings_ms["end_to_end"], 2),
                                   "network_ms": round(out.timings_ms["network"], 2),
                                   "preprocess_ms": round(out.timings_ms["preprocess"], 2),
                                   "decode_ms": round(out.timings_ms["decode"], 2),
                                   "budget_ms": self.core.policy.cfg.latency_budget_ms,
                                   "segment": self.scenario.segment(t), "cameras": out.cameras})


def _passes(reader, loops: int, shift_ns: int):
    """(pass, connection, bag time, raw) of every message, pass after pass; /tf_static only in the first pass (it
    is latched: a real node receives it once)."""
    for k in range(loops):
        for conn, t_ns, raw in reader.messages():
            if k and conn.topic == TF_STATIC_TOPIC:
                continue
            yield k, conn, t_ns + k * shift_ns, raw


def _shift_stamps(msg, shift_ns: int, store) -> None:
    """Move a message's header stamps (and those of each transform of a TFMessage) forward by shift_ns."""
    time_class = store.types[ts.TIME]
    for obj in [msg, *getattr(msg, "transforms", [])]:
        header = getattr(obj, "header", None)
        if header is not None:
            header.stamp = ns_to_stamp(stamp_to_ns(header.stamp) + shift_ns, time_class)


def score(record: ReplayRecord, scenario: Scenario, dataroot: str, version: str, split: str, out_dir: Path) -> dict:
    """Official nuScenes metrics of the replayed key frames: overall and per segment (samples whose key frame
    fell in the segment). A key frame without an output of its own (dropped, or its LiDAR withheld) is scored with
    the newest output of the CAMERA_FRAME_MATCH_S before it (a camera-only frame, the previous sweep's), else as no
    detections."""
    from ..data.nusc import open_nuscenes, split_sample_tokens
    from ..evaluation.metrics import evaluate_predictions

    nusc = open_nuscenes(dataroot, version)
    by_stamp = {nusc.get("sample", t)["timestamp"] * 1000: t for t in split_sample_tokens(nusc, split)}
    shift = record.loop_shift_ns
    original = (lambda s: s - (s - record.start_ns) // shift * shift) if shift else (lambda s: s)  # noqa: E731
    covered = [s for s in record.lidar_stamps if original(s) in by_stamp]
    if not covered:
        raise UserError("no key frame of the bag belongs to the scored split")
    # Without LiDAR, frames come from camera images at their own stamps: a key frame is scored with the newest
    # output published at most CAMERA_FRAME_MATCH_S before it (what a consumer had at that moment).
    outputs = sorted(record.detections)

    def published_at(s: int) -> Detections:
        if s in record.detections:
            return record.detections[s]
        i = bisect_right(outputs, s) - 1
        return record.detections[outputs[i]] if i >= 0 and s - outputs[i] <= CAMERA_FRAME_MATCH_S * 1e9 \
            else Detections()

    # A looped replay meets each sample once per pass: every segment scores the first pass that met it there.
    segments = {"overall": {}, **{seg: {} for seg in SEGMENTS}}
    for s in covered:
        token = by_stamp[original(s)]
        for seg in ("overall", scenario.segment((s - record.start_ns) * 1e-9)):
            if token not in segments[seg]:
                segments[seg][token] = published_at(s)
    out = {}
    for name, preds in segments.items():
        if not preds:
            continue
        tokens = list(preds)
        summary = evaluate_predictions(nusc, preds, split, out_dir / f"eval_{name}", sample_tokens=tokens)
        out[name] = {"samples": len(tokens), "mAP": round(summary["mean_ap"], 4), "NDS": round(summary["nd_score"], 4)}
    return out


def summarise(core: DetectorCore, record: ReplayRecord) -> dict:
    lat = defaultdict(list)
    for f in record.frames:
        lat[f["variant"]].append(f["latency_ms"])
    return {
        "lidar_messages": len(record.lidar_stamps), "frames_out": len(record.frames), "start_ns": record.start_ns,
        "end_ns": max(record.lidar_stamps, default=record.start_ns),
        "dropped": dict(core.drops), "notes": dict(core.notes), "withheld_messages": dict(record.withheld),
        "switches": [{"t_ns": s.stamp_ns, "variant": s.variant, "reason": s.reason} for s in core.switches],
        "latency_ms": {v: {"frames": len(x), "p50": round(float(np.percentile(x, 50)), 2),
                           "p95": round(float(np.percentile(x, 95)), 2)} for v, x in lat.items()},
        "backend": core.backend.describe(), "pool": vars(core.pool.report),
    }


def timeline_plot(record: ReplayRecord, core: DetectorCore, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = core.profile.names()
    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True, dpi=100)
    t = [f["t"] for f in record.frames]
    axes[0].plot(t, [names.index(f["variant"]) for f in record.frames], ".", ms=3)
    axes[0].set_yticks(range(len(names)), names, fontsize=7)
    axes[0].set_ylabel("active variant")
    axes[1].plot(t, [f["latency_ms"] for f in record.frames], ".", ms=3, label="end-to-end latency")
    axes[1].step(t, [f["budget_ms"] for f in record.frames], where="post", color="r", label="budget")
    axes[1].set_ylabel("ms")
    axes[1].legend(fontsize=7, loc="upper right")
    if record.health:
        ht = [h[0] for h in record.health]
        axes[2].step(ht, [6 * h[1] for h in record.health], where="post", label="LiDAR usable (x6)")
        axes[2].step(ht, [h[2] for h in record.health], where="post", label="cameras usable")
    axes[2].set_ylabel("sensors")
    axes[2].legend(fontsize=7, loc="lower right")
    axes[2].set_xlabel("bag time [s]")
    start = min((f["stamp_ns"] - f["t"] * 1e9 for f in record.frames), default=0)
    for s in core.switches:
        for ax in axes:
            ax.axvline((s.stamp_ns - start) * 1e-9, color="grey", lw=0.6, ls="--")
    fig.suptitle(title or "replay timeline (dashed: variant switches)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_results(core: DetectorCore, record: ReplayRecord, metrics: dict | None, out_dir: Path) -> dict:
    results = {**summarise(core, record), "metrics": metrics or {}, "frames": record.frames}
    (out_dir / "replay.json").write_text(json.dumps(results, indent=1))
    return results


def summary_table(results: dict, title: str) -> str:
    """The run summary the replay and the demo print: frames, drops and reasons, switches and reasons, latency per
    variant, official metrics per segment."""
    lines = [title, f"LiDAR sweeps {results['lidar_messages']}, frames with detections {results['frames_out']}, "
                    f"backend {results.get('backend', '')}",
             "dropped: " + (", ".join(f"{k} {v}" for k, v in sorted(results["dropped"].items())) or "none"),
             "switches (seconds from the bag start):"] + [
        f"  {(s['t_ns'] - results['start_ns']) * 1e-9:7.2f} s -> {s['variant']}: {s['reason']}"
        + (" [after the last sweep: the bag ended]" if s["t_ns"] > results["end_ns"] else "")
        for s in results["switches"]]
    lines.append(f"{'variant':<28}{'frames':>8}{'p50 ms':>9}{'p95 ms':>9}")
    for v, lat in results["latency_ms"].items():
        lines.append(f"{v:<28}{lat['frames']:>8}{lat['p50']:>9.1f}{lat['p95']:>9.1f}")
    lines.append(f"{'segment':<14}{'samples':>8}{'mAP':>8}{'NDS':>8}")
    for seg, m in results.get("metrics", {}).items():
        lines.append(f"{seg:<14}{m['samples']:>8}{m['mAP']:>8.4f}{m['NDS']:>8.4f}")
    return "\n".join(lines)
