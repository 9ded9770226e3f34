"""The C library's allocator, set for a process that handles megabyte arrays frame after frame.

By default glibc serves every block above its mmap threshold (128 KiB, raised adaptively) with fresh pages and
returns them to the kernel when freed. A frame allocates several such arrays (clouds, pillar accumulators, images,
network outputs), so each frame then pays thousands of page faults, each a few microseconds under a hypervisor:
measured on a 2-core AMD EPYC VM, the pillar statistics took 7.6 ms per frame with them and 2.0 ms without. Fixed
thresholds above a frame's sizes keep freed blocks in the heap for the next frame instead.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 << 20  # larger blocks still get pages of their own
TRIM_THRESHOLD_BYTES = 256 << 20  # free heap kept at most, for the next frame's arrays


def keep_freed_memory() -> bool:
    """Make this process's allocator reuse freed large blocks; False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                  TRIM_THRESHOLD_BYTES))
