"""What a variant is pruned to: a fraction of the prunable parameters, or a fraction of the prunable units' measured
time (docs/pruning.md, "The framework").

The two are different quantities with different names all the way from the command line to the allocator: a
time target read as a parameter target prunes a different network (docs/pruning.md, "A measured latency table
instead of FLOPs"), and the variant's name and manifest say which one it was.
"""
from __future__ import annotations

from dataclasses import dataclass

PARAMS = "params"  # the fraction of prunable parameters to remove
TIME = "time"  # the fraction of the prunable units' measured time to remove (latency_table.py)
KINDS = (PARAMS, TIME)


@dataclass(frozen=True)
class Target:
    kind: str
    fraction: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"target kind must be one of {', '.join(KINDS)}, not {self.kind!r}")

    @property
    def label(self) -> str:
        """The target in a variant's name: "30" removes 30 % of the parameters, "t30" 30 % of the time."""
        return f"{'t' if self.kind == TIME else ''}{round(self.fraction * 100)}"
