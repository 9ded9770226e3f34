"""All variants of the active profile, loaded and warmed up before the node reports ready.

Switching variants is then a dictionary lookup between frames, never a load on the hot path. Loading reports
what it cost (seconds, resident memory before and after), so the price of keeping every variant in memory is
known.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass

from ..config import DetectorConfig
from ..model.graph_io import zero_inputs
from .backends import Backend, Session
from .profile import Profile


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


@dataclass
class PoolReport:
    seconds: float
    rss_before_mb: float
    rss_after_mb: float
    variants: list


class VariantPool:
    def __init__(self, profile: Profile, backend: Backend, cfg: DetectorConfig, warmup: int = 2):
        self.profile = profile
        self.backend = backend
        self.sessions: dict[str, Session] = {}
        before, start = rss_mb(), time.time()
        inputs = zero_inputs(cfg)
        for v in profile.variants:
            checkpoint = profile.path(v.checkpoint) if v.checkpoint else None
            session = backend.load(profile.path(v.onnx), v.modality, checkpoint)
            session.warmup(inputs, warmup)
            self.sessions[v.name] = session
        self.report = PoolReport(round(time.time() - start, 2), round(before, 1), round(rss_mb(), 1),
                                 profile.names())

    def __getitem__(self, name: str) -> Session:
        return self.sessions[name]
