"""One writer per variant folder, so several `fusion-prune sweep` / `prune` processes can share one plan.

A sweep variant costs 7-12 minutes alone on two cores, and one process leaves a core idle through its single-threaded
stretches (data loading, evaluation, export); running two or three workers over the same plan keeps the cores busy.
Two processes writing the same folder would corrupt its checkpoint, so each variant is claimed with an advisory
`flock` on `<variant>/.claim`: the kernel releases it when its holder exits or dies, so a crashed worker never leaves
a stale claim behind, and the next worker resumes the variant from its own checkpoints.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

CLAIM = ".claim"


class VariantBusy(UserError):
    """Another live process holds the variant's claim."""


@contextmanager
def claimed(folder: Path):
    """Hold the variant folder's claim for the block; raises VariantBusy at once if another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise VariantBusy(f"{folder.name} is being built by {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)
