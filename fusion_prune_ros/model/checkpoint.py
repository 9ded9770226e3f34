"""Saving and loading a trained detector together with the config that built it and what was measured about it.

A dense detector is stored as a state dict (its config rebuilds the architecture). A channel-pruned detector has
per-layer widths no config describes, so it is stored whole (`structured=True`: the pickled module, loaded with
this package importable); its config still describes its inputs (grid, images).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import DetectorConfig, from_dict, to_dict
from ..errors import UserError
from .detector import FusionDetector


def save_detector(model: FusionDetector, cfg: DetectorConfig, path: str | Path, meta: dict | None = None,
                  structured: bool = False) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    weights = {"module": model} if structured else {"model": model.state_dict()}
    torch.save({"config": to_dict(cfg), **weights, "meta": meta or {}}, tmp)
    tmp.replace(path)


def load_detector(path: str | Path) -> tuple[FusionDetector, DetectorConfig, dict]:
    """(model in eval mode, its config, its metadata); a missing or corrupt file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        cfg = from_dict(DetectorConfig, state["config"], "checkpoint config")
        if "module" in state:
            model = state["module"]
        else:
            model = FusionDetector(cfg)
            model.load_state_dict(state["model"])
    except UserError:
        raise
    except Exception as e:  # torch raises many types for truncated / foreign files
        raise UserError(f"cannot load checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    model.eval()
    return model, cfg, state.get("meta", {})
