"""Which variant runs the next frame: the most accurate one the sensors allow whose latency fits the budget.

Pure logic (no ROS, no clocks): the caller reports each frame's end-to-end latency and which modalities are
usable, and asks for the next variant. Rules:
- Sensors first: every variant whose inputs are usable is eligible, in this order: the fused graphs, then the
  LiDAR-only ones, then the camera-only ones (each group in profile order, most accurate first). A camera-only graph
  is far less accurate than a LiDAR-only one of similar cost, so while the LiDAR works it runs only when it alone
  fits the budget; when nothing fits, the fastest graph that uses the LiDAR runs. With neither sensor: no variant
  (an ERROR).
- Latency: the first eligible variant expected to fit the budget. After `step_down_after` consecutive over-budget
  frames, switch to the first other eligible variant expected to fit (never back to one already left for being
  over a budget this tight); step back up only after `step_up_after` consecutive frames under `headroom` x budget, and only
  to a variant expected to fit under that headroom (hysteresis: no oscillation at the boundary).
- Expected latency of a variant: the p95 of its own recent frames when it has run, else its profile latency
  scaled by how the running variant compares with its own profile latency (the machine may be slower). Which
  variant is fastest, when none fits, is judged on medians: one slow frame must not send the node back to a
  slower variant.
- A manual override wins while its modalities are available.
Every switch carries its reason.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

MODALITIES = ("fused", "lidar", "camera")  # also the order of preference among usable variants


@dataclass
class PolicyConfig:
    latency_budget_ms: float = 200.0
    window: int = 20
    step_down_after: int = 3
    step_up_after: int = 30
    headroom: float = 0.8
    override: str = ""


@dataclass(frozen=True)
class Candidate:
    """A variant as the policy sees it; `modality` is the graph's input set (fused needs both sensors)."""

    name: str
    modality: str
    profile_latency_ms: float


@dataclass(frozen=True)
class Decision:
    variant: str | None
    switched: bool
    reason: str


class Policy:
    def __init__(self, candidates: list, cfg: PolicyConfig = PolicyConfig()):
        """candidates: in preference order (most accurate first), as in the profile."""
        for c in candidates:
            if c.modality not in MODALITIES:
                raise ValueError(f"variant {c.name}: unknown modality {c.modality!r}")
        self.candidates = list(candidates)
        self.cfg = cfg
        self.active: str | None = None
        self._lat = {c.name: deque(maxlen=cfg.window) for c in candidates}
        self._over = 0
        self._under = 0
        self._allowed: tuple | None = None  # the modalities usable at the last decision
        self._decided = 0
        self._left_over_budget: dict = {}  # variant -> the budget it was over when the node stepped down from it

    def record_latency(self, name: str, ms: float) -> None:
        self._lat[name].append(ms)
        if name != self.active:
            return
        if ms > self.cfg.latency_budget_ms:
            self._over, self._under = self._over + 1, 0
        elif ms <= self.cfg.headroom * self.cfg.latency_budget_ms:
            self._over, self._under = 0, self._under + 1
        else:
            self._over, self._under = 0, 0

    def p95(self, name: str) -> float | None:
        return self._percentile(name, 95)

    def _percentile(self, name: str, q: float) -> float | None:
        lat = self._lat[name]
        return float(np.percentile(lat, q)) if lat else None

    def expected_ms(self, name: str, q: float = 95) -> float:
        """The q-th percentile of the variant's own recent frames, else its profile latency scaled by how the
        running variant compares with its own profile latency. q = 95 says whether a variant fits the budget;
        q = 50 ranks variants by speed, where one slow frame in a short window must not reorder them."""
        own = self._percentile(name, q)
        if own is not None:
            return own
        cand = self._by_name(name)
        scale = 1.0
        active_own = self._percentile(self.active, q) if self.active is not None else None
        if active_own is not None:
            active = self._by_name(self.active)
            if active.profile_latency_ms > 0:
                scale = active_own / active.profile_latency_ms
        return cand.profile_latency_ms * scale

    def _by_name(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)

    @staticmethod
    def _eligible_modalities(lidar: bool, camera: bool) -> tuple:
        needs = {"fused": lidar and camera, "lidar": lidar, "camera": camera}
        return tuple(m for m in MODALITIES if needs[m])

    def select(self, lidar: bool, camera: bool) -> Decision:
        """The variant for the next frame given which modalities are usable now."""
        allowed = self._eligible_modalities(lidar, camera)
        eligible = sorted((c for c in self.candidates if c.modality in allowed),
                          key=lambda c: allowed.index(c.modality))
        if not eligible:
            missing = "LiDAR and cameras" if not (lidar or camera) else "a variant for the remaining modality"
            return self._switch(None, f"no variant can run: no {missing}")
        override = self.cfg.override
        if override:
            if override in [c.name for c in eligible]:
                return self._switch(override, f"manual override {override}")
            if override not in [c.name for c in self.candidates]:
                note = f"override {override} is not in the profile"
            else:
                note = f"override {override} needs a modality that is not available"
        else:
            note = ""
        budget = self.cfg.latency_budget_ms
        names = [c.name for c in eligible]
        sensors = f"lidar={'ok' if lidar else 'lost'}, camera={'ok' if camera else 'lost'}"
        if self.active not in names or allowed != self._allowed:
            previous, self._allowed = self._allowed, allowed
            pick = self._best(eligible, budget)
            if self.active is None:
                cause = "start" if self._decided == 0 else f"a variant can run again ({sensors})"
            elif self.active not in names:
                cause = f"{self._by_name(self.active).modality} variant {self.active} lost its inputs ({sensors})"
            else:
                cause = f"sensors changed ({sensors})"
            if pick != self.active or previous is None:
                return self._switch(pick, "; ".join(filter(None, [cause, note])))
        if self._over >= self.cfg.step_down_after and (self.p95(self.active) or 0.0) <= budget:
            self._over = 0  # counted under a tighter budget that has since been raised: nothing to step down from
        if self._over >= self.cfg.step_down_after:
            # A variant the node left for being over a budget this tight or tighter is not stepped down to again:
            # its first frames after a switch may be slow, but it is known not to fit.
            left = self._left_over_budget
            others = [c for c in eligible if c.name != self.active and budget > left.get(c.name, -1.0)]
            pick = self._best(others, budget, self.active)
            if pick is not None:
                left[self.active] = budget
                return self._switch(pick, f"{self.active} over budget {budget:.0f} ms for {self._over} frames "
                                          f"(p95 {self.p95(self.active):.1f} ms)")
        if self._under >= self.cfg.step_up_after:
            better = names[:names.index(self.active)]
            for name in better:
                if self.expected_ms(name) <= self.cfg.headroom * budget:
                    return self._switch(name, f"headroom: {self.active} p95 {self.p95(self.active):.1f} ms, "
                                              f"{name} expected {self.expected_ms(name):.1f} ms <= "
                                              f"{self.cfg.headroom:.0%} of {budget:.0f} ms")
        return Decision(self.active, False, note)

    def _best(self, eligible: list, budget: float, current: str | None = None) -> str | None:
        """The first eligible variant expected within budget; else the fastest, of those that use the LiDAR if
        any does (never the current one when stepping down, unless nothing else is faster)."""
        if not eligible:
            return None
        fits = [c.name for c in eligible if self.expected_ms(c.name) <= budget]
        if fits:
            return fits[0]
        with_lidar = [c for c in eligible if c.modality != "camera"]
        fastest = min(with_lidar or eligible, key=lambda c: self.expected_ms(c.name, 50)).name
        if current is not None and self.expected_ms(fastest, 50) >= self.expected_ms(current, 50):
            return None
        return fastest

    def _switch(self, name: str | None, reason: str) -> Decision:
        self._decided += 1
        switched = name != self.active
        self.active = name
        if switched:
            self._over = self._under = 0
        return Decision(name, switched, reason)
