"""TensorRT 10: build an engine from the variant's ONNX on the target, cache it, run it with named tensors.

Engines are specific to the TensorRT version, the GPU and the build flags, so the cache key is
sha256(ONNX) + TensorRT version + compute capability + flags: a relaunch with the same key loads the engine
instead of rebuilding (minutes on a Jetson); a key mismatch, or an engine file that fails to deserialise (built by
another TensorRT, truncated), is rebuilt rather than crashing. The timing cache is shared across builds, so
building every variant of a profile reuses tactic timings. Device buffers are torch CUDA tensors (torch is
already a dependency; no pycuda), bound with `set_tensor_address` and run with `execute_async_v3`.

TensorRT's Python package cannot be installed on the machines this package is developed on (PyPI carries only a
stub that downloads from NVIDIA's index), so this module is written to the documented TensorRT 10 API and its
tests skip when `tensorrt` does not import.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import UserError
from ..graph_files import graph_digest
from .base import Backend, Session

log = logging.getLogger(__name__)


def available() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@dataclass(frozen=True)
class BuildOptions:
    fp16: bool = True
    sparse_weights: bool = False  # 2:4 variants: lets TensorRT pick sparse tensor-core tactics
    workspace_mb: int = 1024
    cache_dir: str = "~/.cache/fusion_prune_ros/engines"


def engine_key(onnx_path: Path, options: BuildOptions) -> str:
    """The cache key of an engine: what the ONNX is, which TensorRT and GPU build it, with which flags."""
    import tensorrt as trt
    import torch

    h = graph_digest(onnx_path)  # the graph and its weights file
    major, minor = torch.cuda.get_device_capability()
    blob = json.dumps({"onnx": h, "trt": trt.__version__, "sm": f"{major}{minor}", "fp16": options.fp16,
                       "sparse": options.sparse_weights, "workspace_mb": options.workspace_mb}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def build_engine(onnx_path: Path, options: BuildOptions) -> Path:
    """The cached engine for this ONNX and these options, building it if missing or unreadable."""
    import tensorrt as trt

    cache = Path(options.cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    engine_path = cache / f"{Path(onnx_path).stem}-{engine_key(onnx_path, options)}.engine"
    logger = trt.Logger(trt.Logger.WARNING)
    if engine_path.is_file():
        with trt.Runtime(logger) as runtime:
            if runtime.deserialize_cuda_engine(engine_path.read_bytes()) is not None:
                return engine_path
        log.warning("engine %s does not deserialise with TensorRT %s: rebuilding", engine_path, trt.__version__)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file: its weights file is read beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if options.sparse_weights:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    timing_path = cache / f"timing-{trt.__version__}.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build an engine from {onnx_path}")
    tmp = engine_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_path


class _TrtSession(Session):
    def __init__(self, engine_path: Path, modality: str, device: str):
        import tensorrt as trt
        import torch

        self.modality = modality
        self.torch = torch
        self.device = torch.device(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise UserError(f"cannot deserialise TensorRT engine {engine_path}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=self.device)
        self.buffers, self.outputs = {}, []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            self.buffers[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                self.outputs.append(name)

    def run(self, inputs: dict) -> tuple:
        with self.torch.cuda.stream(self.stream):
            for name in self.input_names:
                self.buffers[name].copy_(self.torch.from_numpy(np.ascontiguousarray(inputs[name])), non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            result = tuple(self.buffers[n].float().cpu().numpy() for n in ("heatmap_logits", "regression"))
        self.stream.synchronize()
        return result


class TensorRTBackend(Backend):
    kind = "tensorrt"

    def __init__(self, device: str = "cuda", threads: int = 2, build: BuildOptions = BuildOptions(), **options):
        super().__init__(device, threads, **options)
        if not available():
            raise UserError("TensorRT is not available here (the tensorrt package or a CUDA device is missing)")
        self.build = build

    @property
    def precision(self) -> str:
        return "fp16" if self.build.fp16 else "fp32"

    def load(self, onnx_path: Path, modality: str, checkpoint: Path | None = None,
             sparse_weights: bool = False) -> Session:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise UserError(f"ONNX file not found: {onnx_path}")
        options = BuildOptions(self.build.fp16, sparse_weights, self.build.workspace_mb, self.build.cache_dir)
        return _TrtSession(build_engine(onnx_path, options), modality, self.device)
