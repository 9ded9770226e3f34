"""The layer-adaptive allocation of DM3D and MMPrune4U (from the same group's RD_PRUNE; docs/pruning.md, "The
framework"): per-unit pruned fractions from distortion curves under a budget.

With per-unit distortion curves delta_u(phi) on a grid of pruned fractions and the additivity assumption (the
distortion of pruning several units is the sum of their single-unit distortions), choosing phi_u is a
multiple-choice knapsack: minimise sum_u delta_u(phi_u) subject to sum_u cost_u(phi_u) <= budget. The cost is
parameters (MMPrune4U), FLOPs (DM3D, unit_flops.py) or measured milliseconds (latency_table.py).

The DP is exact over costs quantised to `budget / bins`. Costs are rounded to the nearest bin (not up), so the
quantisation error of a solution grows like sqrt(units) bins rather than units / 2 bins; the DP keeps the best
solution for every quantised total and returns the best one whose *true* cost fits the budget. It therefore
never returns an infeasible allocation, and it is at least as good as the exact optimum for the budget reduced by
`units * budget / bins` (the test checks both against brute force).

A target that is not the budget's own quantity is met around the solver: a parameter target by bisection over a
FLOPs budget (`allocate_for_sparsity`), a time target by spending that share of the units' measured time
(`allocate_for_time`).
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError

# ---- the knapsack ------------------------------------------------------------------------------------------------


def total(choice: dict, ratios: np.ndarray, values: dict) -> float:
    """sum over units of values[u] at the chosen pruned fraction (the distortion or the cost of an allocation)."""
    return float(sum(values[n][_index(ratios, phi)] for n, phi in choice.items()))


def _index(ratios: np.ndarray, phi: float) -> int:
    return int(np.argmin(np.abs(np.asarray(ratios) - phi)))


def dp_allocate(curves: dict, ratios: np.ndarray, costs: dict, budget: float, bins: int = 1000) -> dict:
    """unit name -> pruned fraction phi (one of `ratios`) minimising the summed distortion under the budget.

    curves[u][k], costs[u][k]: distortion and cost of unit u pruned by ratios[k]. Dynamic programme over the units
    with the state = total quantised cost so far (0..bins); every state keeps its best partial allocation."""
    names = list(curves)
    ratios = np.asarray(ratios, dtype=float)
    if budget <= 0:
        raise ValueError(f"budget must be positive, not {budget}")
    step = budget / bins
    # Options whose quantised cost exceeds the whole budget are dropped from the table (never chosen).
    quantised = {n: np.rint(np.asarray(costs[n], dtype=float) / step).astype(np.int64) for n in names}
    states = np.arange(bins + 1)
    best = np.full(bins + 1, np.inf)
    best[0] = 0.0
    choices = []  # per unit: for every state, the option index that reached it (-1: unreachable)
    for n in names:
        prev = states[None, :] - quantised[n][:, None]  # (K, bins + 1): the state before taking option k
        candidate = np.where(prev >= 0, best[np.clip(prev, 0, None)] + np.asarray(curves[n], float)[:, None], np.inf)
        best = candidate.min(axis=0)
        # Ties (equal distortion, e.g. a unit that does not matter) go to the cheaper option: a unit much smaller
        # than a bin quantises every option to the same cost, and must still prune rather than keep for free.
        tied_cost = np.where(candidate == best[None, :], np.asarray(costs[n], float)[:, None], np.inf)
        pick = np.argmin(tied_cost, axis=0)
        choices.append(np.where(np.isfinite(best), pick, -1))
    for end in np.argsort(best, kind="stable"):
        if not np.isfinite(best[end]):
            break
        choice = _backtrack(names, choices, quantised, int(end), ratios)
        if total(choice, ratios, costs) <= budget * (1 + 1e-12):
            return choice
    raise ValueError(f"no allocation fits the budget {budget:g} (the cheapest costs "
                     f"{sum(float(np.min(costs[n])) for n in names):g})")


def _backtrack(names: list, choices: list, quantised: dict, state: int, ratios: np.ndarray) -> dict:
    choice = {}
    for i in range(len(names) - 1, -1, -1):
        k = int(choices[i][state])
        choice[names[i]] = float(ratios[k])
        state -= int(quantised[names[i]][k])
    return choice


def lagrangian_allocate(curves: dict, ratios: np.ndarray, costs: dict, budget: float,
                        iterations: int = 100) -> dict:
    """unit name -> phi minimising delta_u(phi) + lam * cost_u(phi) per unit, with the smallest lam (found by
    bisection in log space) whose allocation fits the budget.

    Optimal on the lower convex hull of each unit's (cost, distortion) points, so equal to the DP on convex curves
    up to the budget the hull points leave unused; one argmin per unit per step instead of a table."""
    names = list(curves)
    ratios = np.asarray(ratios, dtype=float)
    dist = {n: np.asarray(curves[n], dtype=float) for n in names}
    cost = {n: np.asarray(costs[n], dtype=float) for n in names}

    def solve(lam: float) -> dict:
        return {n: float(ratios[int(np.argmin(dist[n] + lam * cost[n]))]) for n in names}

    def fits(choice: dict) -> bool:
        return total(choice, ratios, cost) <= budget * (1 + 1e-12)

    if fits(solve(0.0)):
        return solve(0.0)
    spread = max(float(np.ptp(d)) for d in dist.values()) or 1.0
    lo, hi = 0.0, spread / budget
    for _ in range(200):
        if fits(solve(hi)):
            break
        lo, hi = hi, hi * 4
    else:
        raise ValueError(f"no allocation fits the budget {budget:g}")
    for _ in range(iterations):
        mid = np.sqrt(lo * hi) if lo > 0 else hi / 2
        lo, hi = (lo, mid) if fits(solve(mid)) else (mid, hi)
    return solve(hi)


ALLOCATORS = {"dp": dp_allocate, "lagrangian": lagrangian_allocate}


def check_allocator(name: str) -> None:
    """Raise a UserError listing the known allocators when `name` (a method option in a prune YAML) is not one."""
    if name not in ALLOCATORS:
        raise UserError(f"unknown allocator {name!r}: expected one of {', '.join(sorted(ALLOCATORS))}")


# ---- meeting a target ----------------------------------------------------------------------------------------------


def sparsity_of(choice: dict, numels: dict) -> float:
    """Fraction of the units' parameters removed by the pruned fractions in `choice`."""
    return sum(choice[n] * numels[n] for n in choice) / sum(numels[n] for n in choice)


def by_modality(units: list, choice: dict) -> dict:
    """modality -> fraction of that modality's prunable parameters removed."""
    out = {}
    for modality in sorted({u.modality for u in units}):
        members = [u for u in units if u.modality == modality]
        out[modality] = round(sum(choice[u.name] * u.numel for u in members) / sum(u.numel for u in members), 4)
    return out


def allocate_for_sparsity(curves: dict, ratios: np.ndarray, costs: dict, numels: dict, sparsity: float,
                          allocator: str = "dp", tolerance: float = 0.005, iterations: int = 40) -> tuple:
    """(pruned fractions, budget): the allocation under a cost budget that removes `sparsity` of the parameters
    (within `tolerance`), the budget found by bisection (less budget -> more pruning). costs[u][k]: unit u's cost
    (FLOPs, or measured ms from a latency table) at ratios[k]."""
    allocate = ALLOCATORS[allocator]
    lo = sum(float(c.min()) for c in costs.values())
    hi = sum(float(c.max()) for c in costs.values())
    best = None
    for _ in range(iterations):
        budget = (lo + hi) / 2
        choice = allocate(curves, ratios, costs, budget)
        realised = sparsity_of(choice, numels)
        if best is None or abs(realised - sparsity) < abs(best[2] - sparsity):
            best = (choice, budget, realised)
        if abs(realised - sparsity) <= tolerance:
            break
        lo, hi = (lo, budget) if realised < sparsity else (budget, hi)
    return best[0], best[1]


def allocate_for_time(curves: dict, ratios: np.ndarray, ms: dict, fraction: float, allocator: str = "dp") -> tuple:
    """(pruned fractions, budget in ms): the least-distortion allocation whose summed unit time is at most
    (1 - fraction) of the dense units' time. With a latency table the target is time, not parameters: where a
    conv's time does not fall with its width, no parameter count would buy anything, and the knapsack should not
    be made to cut it (the bisection over a parameter target would)."""
    dense = sum(float(c[0]) for c in ms.values())
    floor = sum(float(c.min()) for c in ms.values())
    budget = (1.0 - fraction) * dense
    if budget < floor:
        raise UserError(f"a {fraction:.0%} cut of the units' measured time ({dense:.2f} ms) is below what channel "
                        f"pruning can reach here: every unit at its fastest width still takes {floor:.2f} ms "
                        f"({1 - floor / dense:.0%} cut at most)")
    return ALLOCATORS[allocator](curves, ratios, ms, budget), budget
