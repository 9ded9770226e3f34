"""Budget adherence: how often the node's frames stay within a latency budget that its ladder can meet.

For each budget the bag is replayed in-process through the node's feeder and core, looped, with the policy choosing
variants as on the vehicle (no override). After a warm-up (the policy needs a few frames of each variant to know
its latency), the share of frames whose end-to-end time is within the budget is the adherence. The budgets lie
between the fastest and the slowest step the policy may choose while both sensors work (the fused and LiDAR-only
variants), each a margin above a step's measured frame p95: a budget below the fastest step's own tail cannot be
met by any choice, and is a statement about the machine, not the policy.

The first frame after every switch is reported against the steady p95 of the variant switched to: the pool warms
every variant at start-up, and this is where a cold path would show.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bag.replay import replay
from ..runtime.core import CoreConfig
from ..runtime.feeder import FeederConfig
from ..runtime.policy import PolicyConfig

WARMUP_FRAMES = 10


@dataclass(frozen=True)
class AdherenceRow:
    budget_ms: float
    frames: int  # after the warm-up
    within_share: float  # frames whose end-to-end time is at most the budget
    frame_p50_ms: float
    frame_p95_ms: float
    switches: int
    first_after_switch_max_ms: float  # the slowest first frame after a switch (NaN without a switch)
    steady_p95_ms: float  # p95 of the frames that are not the first after a switch
    variants: str  # frames per variant, most used first


def ladder_budgets(step_p95_ms: list, count: int = 5, margin: float = 1.1) -> list:
    """`count` budgets spread evenly from the fastest to the slowest step's frame p95, each times `margin`."""
    low, high = min(step_p95_ms) * margin, max(step_p95_ms) * margin
    return [round(float(b), 1) for b in np.linspace(low, high, count)]


def adherence(frames: list, budget_ms: float, warmup: int = WARMUP_FRAMES) -> AdherenceRow:
    """The row for one replay's frames (`ReplayRecord.frames`: variant, latency_ms per frame, in order)."""
    after = frames[warmup:]
    latency = np.array([f["latency_ms"] for f in after])
    first = np.array([i > 0 and after[i]["variant"] != after[i - 1]["variant"] for i in range(len(after))])
    counts: dict = {}
    for f in after:
        counts[f["variant"]] = counts.get(f["variant"], 0) + 1
    used = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return AdherenceRow(budget_ms, len(after), round(float(np.mean(latency <= budget_ms)), 4),
                        round(float(np.median(latency)), 1), round(float(np.percentile(latency, 95)), 1),
                        int(first.sum()), round(float(latency[first].max()), 1) if first.any() else float("nan"),
                        round(float(np.percentile(latency[~first], 95)), 1), used)


def budget_adherence(profile_path: str | Path, bag: str | Path, budgets_ms: list, loops: int = 1) -> list:
    """One `AdherenceRow` per budget: the bag replayed `loops` times on one clock with the policy free to switch."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_budget_") as tmp:
        for i, budget in enumerate(budgets_ms):
            cfg = CoreConfig(profile=str(profile_path), backend="onnxruntime", device="cpu",
                             policy=PolicyConfig(latency_budget_ms=float(budget)))
            _, record = replay(bag, cfg, Path(tmp) / f"budget{i}", no_drop=True, quiet=True, loops=loops,
                               keep_detections=False, feeder_cfg=FeederConfig(sync_wait_s=0.0))
            rows.append(adherence(record.frames, float(budget)))
    return rows
