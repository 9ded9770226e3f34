"""Importance scorers, one file per method, behind one interface (`base.Scorer`).

`SCORERS` maps a method name to its scorer; `get_scorer(name)` resolves it, and an unknown name is a UserError
listing the known ones (`check_method`).
"""
from __future__ import annotations

from ...errors import UserError
from .base import Scorer, Scores
from .baselines import MagnitudeScorer, RandomScorer, SnipScorer, TaylorScorer

SCORERS: dict = {
    "magnitude": MagnitudeScorer,
    "taylor": TaylorScorer,
    "snip": SnipScorer,
    "random": RandomScorer,
}


def register(name: str, cls) -> None:
    SCORERS[name] = cls


def known_methods() -> list:
    """Every registered method name, sorted."""
    _load_methods()
    return sorted(SCORERS)


def check_method(name: str) -> None:
    """Raise a UserError listing the known methods when `name` is not one of them."""
    if name not in known_methods():
        raise UserError(f"unknown pruning method {name!r}: expected one of {', '.join(known_methods())}")


def get_scorer(name: str, **options) -> Scorer:
    check_method(name)
    return SCORERS[name](**options)


def _load_methods() -> None:
    """The multimodal methods live in their own modules; importing them registers them."""
    import importlib

    for module in ("altermoma", "crossprune", "mmprune4u", "dm3d"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{module}":
                raise


__all__ = ["SCORERS", "Scorer", "Scores", "check_method", "get_scorer", "known_methods", "register"]
