"""The machine a latency was measured on, in words ("AMD EPYC, 2 cores, AVX-512").

CPU timings differ several-fold between vector extensions and core counts, so every table of latencies names the
CPU it came from.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

_VECTOR_EXTENSIONS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("asimd", "NEON"))


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Model name, usable core count and widest vector extension of this CPU."""
    name, flags = "", set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "Hardware") and not name:
                name = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    vector = next((label for flag, label in _VECTOR_EXTENSIONS if flag in flags), None)
    return ", ".join([name, f"{cores} cores", *([vector] if vector else [])])
