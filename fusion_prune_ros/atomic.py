"""Output folders and files that appear complete or not at all.

Data sets, bags and caches take minutes to hours to write; a run stopped half way must not leave a folder that a
later run (or the devkit) takes for a finished one.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def built_in_place(out: Path, nested: bool = False) -> Iterator[Path]:
    """Yield a scratch folder, `<out>.partial`, renamed to `out` when the block ends without an error and removed
    when it raises (an interrupt included). nested=True yields `<out>.partial/<out name>` instead, not created, for
    writers that create their folder themselves and name their files after it (a rosbag2 writer)."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    target = partial / out.name if nested else partial
    try:
        yield target
        target.rename(out)
        if nested:
            partial.rmdir()
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """`path` holds `data` or what it held before, never part of `data` (written beside it, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
