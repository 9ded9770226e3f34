"""Latency measurement shared by the profile writer, the sweep report and the benchmarks: warm up, then time N runs."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def sample_calls(fn: Callable[[], object], iterations: int = 20, warmup: int = 3) -> list:
    """Milliseconds of each of `iterations` calls of fn(), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def summarise(samples: list) -> dict:
    """{'median_ms', 'p95_ms', 'mean_ms', 'n'} of latency samples in milliseconds."""
    a = np.array(samples)
    return {"median_ms": round(float(np.median(a)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(samples)}


def time_calls(fn: Callable[[], object], iterations: int = 20, warmup: int = 3) -> dict:
    return summarise(sample_calls(fn, iterations, warmup))


def sample_side_by_side(fns: dict, iterations: int = 40, rounds: int = 4, warmup: int = 3) -> dict:
    """name -> milliseconds of each call, for several callables timed in interleaved rounds in one process: a load
    change on the machine (another job starting, thermal drift) then hits every candidate alike, so their ratios
    hold even when the absolute numbers move."""
    samples = {name: [] for name in fns}
    for name, fn in fns.items():
        sample_calls(fn, 0, warmup)
    per_round = max(1, iterations // rounds)
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name] += sample_calls(fn, per_round, warmup=1)
    return samples


def time_side_by_side(fns: dict, iterations: int = 40, rounds: int = 4, warmup: int = 3) -> dict:
    """name -> summary (`summarise`) of `sample_side_by_side`."""
    return {name: summarise(s) for name, s in sample_side_by_side(fns, iterations, rounds, warmup).items()}
