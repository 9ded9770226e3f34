"""ONNX Runtime: the CPU default everywhere, and CUDA where onnxruntime-gpu is installed."""
from __future__ import annotations

from pathlib import Path

from ...errors import UserError
from .base import Backend, Session, as_float32


def cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class _OrtSession(Session):
    def __init__(self, session, modality: str):
        self.session = session
        self.modality = modality

    def run(self, inputs: dict) -> tuple:
        return as_float32(self.session.run(None, {n: inputs[n] for n in self.input_names}))


class OnnxRuntimeBackend(Backend):
    kind = "onnxruntime"

    def __init__(self, device: str = "cpu", threads: int = 2, spinning: bool = True, **kw):
        """`spinning=False`: intra-op threads sleep as soon as a run ends. Each session owns its thread pool, and
        spinning threads of the session that just ran take the cores from the next one: for timing many sessions
        side by side (the sweep's re-timing), not for the node, where one session runs frame after frame."""
        super().__init__(device, threads, **kw)
        self.spinning = spinning

    def session_options(self):
        """The options every session here runs with (also op_profile's, so its breakdown is of the same setup)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Threads spin while a run lasts (quick hand-offs between its operators) and stop when it returns: on two
        # cores, an idle pool still spinning takes a core from the decoding and preprocessing around the run, and
        # from the next variant's pool after a switch.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def load(self, onnx_path: Path, modality: str, checkpoint: Path | None = None) -> Session:
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise UserError(f"ONNX file not found: {onnx_path}")
        options = self.session_options()
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            if not cuda_available():
                raise UserError("onnxruntime has no CUDA execution provider here (install onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for invalid files
            raise UserError(f"cannot load ONNX model {onnx_path}: {str(e).splitlines()[0][:200]}") from None
        return _OrtSession(session, modality)
