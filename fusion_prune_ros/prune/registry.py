"""Every pruning method by name, each a composition of the framework's steps (method.Method; docs/pruning.md, "The
framework"). A method's options (config/prune/*.yaml `method_options`) are its builder's keyword arguments.

An unknown method, an unknown option or a target a method cannot meet is a UserError naming what is allowed.
"""
from __future__ import annotations

import inspect
from typing import Callable

from ..errors import UserError
from .method import Method
from .methods.altermoma import altermoma, altermoma_deci_weighted
from .methods.baselines import MagnitudeImportance, RandomImportance, SnipImportance, TaylorImportance
from .methods.crossprune import crossprune, crossprune_distil
from .methods.dm3d import dm3d
from .methods.mmprune4u import mmprune4u
from .target import Target

METHODS: dict[str, Callable[..., Method]] = {
    # single-modal baselines: one importance under one global threshold
    "magnitude": lambda: Method(MagnitudeImportance()),
    "taylor": lambda: Method(TaylorImportance()),
    "snip": lambda: Method(SnipImportance()),
    "random": lambda: Method(RandomImportance()),
    # AlterEva importance (reactivation with each modality masked) under one global threshold
    "altermoma": altermoma,
    # the same with beta = alpha / 2: not the paper's setting, its own name so both rows can be reported
    "altermoma-deci-weighted": altermoma_deci_weighted,
    # ADMM weight update, |W| of its result under one global threshold (channels: the last projection's)
    "crossprune": crossprune,
    # the same fine-tuned with its feature distortion term, as the paper does: its own name, so that the default
    # fine-tuning is the same for every method and both rows can be reported
    "crossprune-distil": crossprune_distil,
    # |w|, knapsack over forward-measured distortion + modality information curves, optional information term
    "mmprune4u": mmprune4u,
    # |w g| of the output energy, knapsack over Hessian curves under FLOPs (parameter target) or time (time target)
    "dm3d": dm3d,
}


def known_methods() -> list:
    """Every method name, sorted."""
    return sorted(METHODS)


def check_method(name: str) -> None:
    """Raise a UserError listing the known methods when `name` is not one of them."""
    if name not in METHODS:
        raise UserError(f"unknown pruning method {name!r}: expected one of {', '.join(known_methods())}")


def build_method(name: str, **options) -> Method:
    """The method `name` with `options`; an option its builder does not take is a UserError naming those it does."""
    check_method(name)
    builder = METHODS[name]
    accepted = list(inspect.signature(builder).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"{name} has no option {', '.join(map(repr, unknown))}: "
                        f"{'expected one of ' + ', '.join(accepted) if accepted else 'it takes none'}")
    return builder(**options)


def check_target(name: str, target: Target) -> None:
    """Raise a UserError when method `name` cannot prune to a target of this kind, naming the methods that can."""
    check_method(name)
    if target.kind not in METHODS[name]().targets:
        able = [m for m in known_methods() if target.kind in METHODS[m]().targets]
        raise UserError(f"{name} cannot prune to a {target.kind} target: {', '.join(able)} can")
