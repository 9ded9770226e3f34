"""Where the package's installed files are: the repository in a development checkout, else the share folder that
setup.py's data_files install (share/fusion_prune_ros/{config,launch,models})."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def share_file(relative: str) -> Path:
    """config/..., models/... or launch/...: the checkout's copy if present, else the installed one."""
    for root in (REPO, Path(sys.prefix) / "share" / "fusion_prune_ros"):
        if (root / relative).exists():
            return root / relative
    return REPO / relative
