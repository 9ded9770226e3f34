"""The backend interface: load a variant into a `Session`, run it on named numpy inputs."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ...model.graph_io import INPUT_NAMES


class Session(ABC):
    """A loaded graph. `run` takes every network input by name (it uses those of its graph) and returns
    (heatmap logits, regression) as float32 numpy arrays."""

    modality: str

    @property
    def input_names(self) -> list:
        return INPUT_NAMES[self.modality]

    @abstractmethod
    def run(self, inputs: dict) -> tuple:
        ...

    def warmup(self, inputs: dict, n: int = 3) -> None:
        for _ in range(n):
            self.run(inputs)


class Backend(ABC):
    kind: str = ""

    def __init__(self, device: str = "cpu", threads: int = 2, **_):
        self.device = device
        self.threads = threads

    @property
    def precision(self) -> str:
        return "fp32"

    def describe(self) -> str:
        return f"{self.kind} ({self.device}, {self.precision})"

    @abstractmethod
    def load(self, onnx_path: Path, modality: str, checkpoint: Path | None = None) -> Session:
        """Load one graph; a missing or corrupt file raises UserError."""


def as_float32(outputs) -> tuple:
    return tuple(np.asarray(o, dtype=np.float32) for o in outputs)
