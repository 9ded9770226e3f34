"""Inference backends behind one interface: ONNX Runtime (CPU / CUDA), PyTorch (CPU / CUDA), TensorRT."""
from __future__ import annotations

from ...errors import UserError
from .base import Backend, Session

KINDS = ("auto", "tensorrt", "onnxruntime", "torch")


def available_kinds(device: str = "cuda") -> list:
    """Which backends can run here, fastest first (what `auto` chooses from)."""
    from . import onnxruntime_backend, tensorrt_backend, torch_backend

    kinds = []
    if tensorrt_backend.available():
        kinds.append(("tensorrt", "cuda"))
    if onnxruntime_backend.cuda_available():
        kinds.append(("onnxruntime", "cuda"))
    if torch_backend.cuda_available():
        kinds.append(("torch", "cuda"))
    kinds.append(("onnxruntime", "cpu"))
    return kinds


def create_backend(kind: str = "auto", device: str = "auto", **options) -> Backend:
    """`auto` picks TensorRT > ONNX Runtime CUDA > PyTorch CUDA > ONNX Runtime CPU."""
    from .onnxruntime_backend import OnnxRuntimeBackend
    from .tensorrt_backend import TensorRTBackend
    from .torch_backend import TorchBackend

    if kind not in KINDS:
        raise UserError(f"unknown backend {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "auto":
        kind, auto_device = available_kinds()[0]
        device = auto_device if device == "auto" else device
    if device == "auto":
        device = "cuda" if kind == "tensorrt" else "cpu"
    cls = {"tensorrt": TensorRTBackend, "onnxruntime": OnnxRuntimeBackend, "torch": TorchBackend}[kind]
    return cls(device=device, **options)


__all__ = ["Backend", "Session", "KINDS", "available_kinds", "create_backend"]
