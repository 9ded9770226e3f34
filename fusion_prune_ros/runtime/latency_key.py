"""Where a latency was measured, as one type: manifests, profiles, benchmarks and the policy all key their
milliseconds by it, so a number timed on one backend is never read as another's."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UserError

_SPELLING = re.compile(r"^([a-z][a-z0-9]*)-([a-z][a-z0-9]*)-([1-9][0-9]*)t$")


@dataclass(frozen=True)
class LatencyKey:
    """A backend on a device with a thread count, spelled "ort-cpu-2t" in YAML and JSON."""

    backend: str  # "ort": ONNX Runtime, "trt": TensorRT, "torch"
    device: str  # "cpu", "cuda"
    threads: int  # intra-op threads (CPU); 1 for a GPU

    def __str__(self) -> str:
        return f"{self.backend}-{self.device}-{self.threads}t"

    @classmethod
    def parse(cls, text: str) -> "LatencyKey":
        match = _SPELLING.match(str(text))
        if match is None:
            raise UserError(f"latency key {text!r} is not <backend>-<device>-<threads>t (for example "
                            f"{ORT_CPU_2T})")
        return cls(match[1], match[2], int(match[3]))


# Every variant is timed with this at build time: ONNX Runtime on 2 CPU threads, what the node's default backend
# runs and what the smallest onboard computers offer.
ORT_CPU_2T = LatencyKey("ort", "cpu", 2)
