"""Inference backends behind one interface: ONNX Runtime (CPU / CUDA), PyTorch (CPU / CUDA), TensorRT."""
from __future__ import annotations

import ctypes

from ...errors import UserError
from .base import Backend, Session

KINDS = ("auto", "tensorrt", "onnxruntime", "torch")


def cuda_driver_present() -> bool:
    """Whether the CUDA driver library loads. Without it no backend can use a GPU, and asking each would import
    torch (seconds, hundreds of MB) into a process that then runs ONNX Runtime on the CPU."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def available_kinds(device: str = "cuda") -> list:
    """Which backends can run here, fastest first (what `auto` chooses from)."""
    if not cuda_driver_present():
        return [("onnxruntime", "cpu")]
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
    """`auto` picks TensorRT > ONNX Runtime CUDA > PyTorch CUDA > ONNX Runtime CPU. Only the chosen backend's
    module is imported (the torch backend's imports torch)."""
    if kind not in KINDS:
        raise UserError(f"unknown backend {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "auto":
        kind, auto_device = available_kinds()[0]
        device = auto_device if device == "auto" else device
    if device == "auto":
        device = "cuda" if kind == "tensorrt" else "cpu"
    if kind == "tensorrt":
        from .tensorrt_backend import TensorRTBackend as cls
    elif kind == "torch":
        from .torch_backend import TorchBackend as cls
    else:
        from .onnxruntime_backend import OnnxRuntimeBackend as cls
    return cls(device=device, **options)


__all__ = ["Backend", "Session", "KINDS", "available_kinds", "create_backend"]
