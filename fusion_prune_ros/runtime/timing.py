"""Latency measurement shared by the profile writer and the benchmarks: warm up, then time N runs."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def time_calls(fn: Callable[[], object], iterations: int = 20, warmup: int = 3) -> dict:
    """{'median_ms', 'p95_ms', 'mean_ms', 'n'} of fn() after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    a = np.array(samples)
    return {"median_ms": round(float(np.median(a)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": iterations}
