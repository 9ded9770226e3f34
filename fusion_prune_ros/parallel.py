"""Splitting one frame's work between the calling thread and a small thread pool.

The node's frame path runs between network calls, when the cores the network uses would otherwise wait; its
compiled kernels release the GIL, so a part given to a pool thread runs beside the part kept here."""
from __future__ import annotations

from concurrent.futures import Executor
from typing import Callable, Sequence, TypeVar

Part = TypeVar("Part")


def run_split(work: Callable[[Part], None], parts: Sequence[Part], pool: Executor | None) -> None:
    """work(part) for every part: the first on this thread, the others on `pool` meanwhile (all here without one)."""
    jobs = [pool.submit(work, part) for part in parts[1:]] if pool is not None else []
    for part in (parts if pool is None else parts[:1]):
        work(part)
    for job in jobs:
        job.result()
