"""`fusion-prune soak`: a long drive through the node's pipeline, watching for leaks and lost frames.

The bag is looped on one continuous clock (`replay(loops=...)`) at the live pace (a sweep that arrives while the
previous frame runs is dropped as `busy`, as on the vehicle), with the latency budget changing every pass so that
the policy keeps switching variants. After every pass it samples the process's resident memory, open file
descriptors and threads, and the latency of the frames of that pass. It reports memory growth after warm-up,
descriptor and thread growth, whether every LiDAR sweep was processed or dropped with a reason, and latency
percentiles per quarter of the run; soak.json and soak.png hold the series.
"""
from __future__ import annotations

import json
import math
import os
import threading
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bag.paths import open_reader
from ..bag.replay import LIDAR_PERIOD_NS, replay
from ..bag.scenario import Scenario, ScenarioEvent
from ..errors import UserError
from ..ros.topics import LIDAR_TOPIC
from ..runtime.core import CoreConfig


@dataclass
class SoakConfig:
    frames: int = 10_000  # LiDAR sweeps to play (the bag is looped as often as needed)
    budgets_ms: list = field(default_factory=lambda: [400.0, 60.0, 150.0])  # one per pass, cycled
    warmup_fraction: float = 0.1  # memory growth is measured from the end of this share of the passes
    max_rss_growth: float = 0.05
    max_fd_growth: int = 0
    max_thread_growth: int = 0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise UserError("soak needs /proc (Linux) to read the resident memory")


def _sample(k: int, core, start_frame: int) -> dict:
    lat = [f for f in core.latency][-max(1, core.frames - start_frame):] if core.frames > start_frame else []
    return {"pass": k, "rss_mb": round(_rss_mb(), 1), "fds": len(os.listdir("/proc/self/fd")),
            "threads": len(os.listdir("/proc/self/task")), "python_threads": threading.active_count(),
            "frames": core.frames, "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 2) if lat else None}


def soak(bag: str | Path, core_cfg: CoreConfig, out_dir: str | Path, cfg: SoakConfig = SoakConfig(),
         quiet: bool = False) -> dict:
    bag, out_dir = Path(bag), Path(out_dir)
    with closing(open_reader(bag)) as reader:
        per_pass = sum(c.msgcount for c in reader.connections if c.topic == LIDAR_TOPIC)
        pass_s = (reader.end_time - reader.start_time + LIDAR_PERIOD_NS) * 1e-9
    if per_pass == 0:
        raise UserError(f"{bag} has no {LIDAR_TOPIC} messages")
    loops = math.ceil(cfg.frames / per_pass)
    scenario = Scenario("soak-budget-cycle", [ScenarioEvent(at=k * pass_s, budget_ms=cfg.budgets_ms[k % len(
        cfg.budgets_ms)]) for k in range(loops)])
    samples: list = []

    def on_loop(k: int, core) -> None:
        samples.append(_sample(k, core, samples[-1]["frames"] if samples else 0))

    core, record = replay(bag, core_cfg, out_dir, scenario, loops=loops, keep_detections=False, on_loop=on_loop,
                          quiet=quiet)
    warm = samples[min(len(samples) - 1, max(1, int(len(samples) * cfg.warmup_fraction)))]
    last = samples[-1]
    quarters = np.array_split(np.array([f["latency_ms"] for f in record.frames]), 4)
    result = {
        "lidar_sweeps": len(record.lidar_stamps), "passes": loops, "frames_out": len(record.frames),
        "dropped": dict(core.drops), "switches": len(core.switches),
        "accounted": len(record.frames) + sum(core.drops.values()) == len(record.lidar_stamps),
        "rss_mb": {"after_warmup": warm["rss_mb"], "end": last["rss_mb"],
                   "growth": round((last["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"], 4)},
        "fds": {"after_warmup": warm["fds"], "end": last["fds"]},
        "threads": {"after_warmup": warm["threads"], "end": last["threads"]},
        "latency_quarters_ms": [{"p50": round(float(np.percentile(q, 50)), 2),
                                 "p95": round(float(np.percentile(q, 95)), 2)} for q in quarters if len(q)],
        "backend": core.backend.describe(), "samples": samples,
    }
    result["passed"] = bool(result["accounted"] and result["rss_mb"]["growth"] < cfg.max_rss_growth
                            and last["fds"] - warm["fds"] <= cfg.max_fd_growth
                            and last["threads"] - warm["threads"] <= cfg.max_thread_growth)
    (out_dir / "soak.json").write_text(json.dumps(result, indent=1))
    _plot(samples, out_dir / "soak.png", f"soak: {len(record.lidar_stamps)} sweeps of {bag.name}")
    return result


def _plot(samples: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = [s["pass"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True, dpi=100)
    axes[0].plot(k, [s["rss_mb"] for s in samples])
    axes[0].set_ylabel("resident MB")
    axes[1].plot(k, [s["fds"] for s in samples], label="file descriptors")
    axes[1].plot(k, [s["threads"] for s in samples], label="threads")
    axes[1].legend(fontsize=7)
    axes[2].plot(k, [s["p50_ms"] for s in samples], label="p50")
    axes[2].plot(k, [s["p95_ms"] for s in samples], label="p95")
    axes[2].set_ylabel("latency per pass [ms]")
    axes[2].set_xlabel("pass over the bag")
    axes[2].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary(result: dict) -> str:
    lines = [f"soak: {result['lidar_sweeps']} LiDAR sweeps in {result['passes']} passes, {result['frames_out']} "
             f"frames, {result['switches']} variant switches, backend {result['backend']}",
             "dropped: " + (", ".join(f"{k} {v}" for k, v in sorted(result["dropped"].items())) or "none"),
             f"every sweep accounted for: {result['accounted']}",
             f"resident memory {result['rss_mb']['after_warmup']:.1f} MB after warm-up -> {result['rss_mb']['end']:.1f}"
             f" MB ({result['rss_mb']['growth']:+.2%})",
             f"file descriptors {result['fds']['after_warmup']} -> {result['fds']['end']}, threads "
             f"{result['threads']['after_warmup']} -> {result['threads']['end']}",
             "latency per quarter (p50 / p95 ms): " + ", ".join(f"{q['p50']:.1f} / {q['p95']:.1f}"
                                                                 for q in result["latency_quarters_ms"]),
             f"PASSED: {result['passed']}"]
    return "\n".join(lines)
