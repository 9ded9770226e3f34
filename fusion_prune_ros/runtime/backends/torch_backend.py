"""PyTorch: CPU, or CUDA with fp16 and a CUDA graph (the network's shapes are static, so one capture replays
every frame without Python or kernel-launch overhead)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import UserError
from .base import Backend, Session, as_float32


def cuda_available() -> bool:
    return torch.cuda.is_available()


class _TorchSession(Session):
    def __init__(self, module: torch.nn.Module, modality: str, device: str, fp16: bool, cuda_graph: bool):
        self.module = module.to(device).eval()
        self.modality = modality
        self.device = device
        self.dtype = torch.float16 if fp16 else torch.float32
        if fp16:
            self.module.half()
        self.cuda_graph = cuda_graph
        self._graph = None
        self._static_in: list = []
        self._static_out: tuple = ()

    def _tensors(self, inputs: dict) -> list:
        return [torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device, self.dtype)
                for n in self.input_names]

    def run(self, inputs: dict) -> tuple:
        with torch.no_grad():
            if not self.cuda_graph:
                return as_float32(o.float().cpu().numpy() for o in self.module(*self._tensors(inputs)))
            if self._graph is None:
                self._capture(self._tensors(inputs))
            for static, new in zip(self._static_in, self._tensors(inputs)):
                static.copy_(new)
            self._graph.replay()
            return as_float32(o.float().cpu().numpy() for o in self._static_out)

    def device_ms(self, inputs: dict, iterations: int = 100) -> list:
        """Milliseconds of the captured graph alone, inputs already on the GPU (CUDA events): the network's own
        time, without the host-device copies that `run` includes. For benchmarks: it tells what pruning can
        change on a GPU from what it cannot."""
        if not self.cuda_graph:
            raise UserError("device time is measured on a CUDA graph (torch backend on a GPU)")
        self.run(inputs)  # captures the graph and leaves this frame's inputs in place
        samples = []
        for _ in range(iterations):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self._graph.replay()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        return samples

    def _capture(self, example: list) -> None:
        self._static_in = [t.clone() for t in example]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm up cuDNN autotuning before capture
                self.module(*self._static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = self.module(*self._static_in)


class TorchBackend(Backend):
    kind = "torch"

    def __init__(self, device: str = "cpu", threads: int = 2, fp16: bool | None = None,
                 cuda_graph: bool | None = None, **options):
        super().__init__(device, threads, **options)
        on_gpu = device.startswith("cuda")
        if on_gpu and not cuda_available():
            raise UserError("PyTorch has no CUDA device here")
        self.fp16 = on_gpu if fp16 is None else fp16
        self.cuda_graph = on_gpu if cuda_graph is None else cuda_graph
        if not on_gpu:
            torch.set_num_threads(threads)

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "fp32"

    def load(self, onnx_path: Path, modality: str, checkpoint: Path | None = None) -> Session:
        from ...model.checkpoint import load_detector
        from ...model.flops import graph

        if checkpoint is None:
            raise UserError(f"the torch backend needs the variant's checkpoint (for {onnx_path})")
        model, _, _ = load_detector(checkpoint)
        return _TorchSession(graph(model, modality), modality, self.device, self.fp16, self.cuda_graph)
