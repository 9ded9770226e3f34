"""Replay scenarios: scripted budget changes, sensor blackouts and flapping, on the bag's clock.

A scenario YAML lists events with times in seconds from the bag's first message:

    name: budget-then-camera-blackout
    events:
      - {at: 0.0, budget_ms: 400}
      - {at: 4.0, budget_ms: 150}
      - {at: 6.0, until: 9.0, drop: [cameras]}        # sensor names, or the groups cameras / lidar / all
      - {at: 10.0, until: 16.0, flap: [CAM_FRONT], period_s: 1.0}
      - {at: 12.0, override: dense-lidar}            # '' returns to automatic selection

A dropped sensor's messages are withheld, as if its driver died; a flapping one is withheld every other half period.
Each frame is labelled with the segment it falls in (full, camera_lost: one camera or more, lidar_lost, all_lost)
for per-segment scoring.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import from_dict
from ..data.classes import CAMERAS, LIDAR
from ..errors import UserError

GROUPS = {"cameras": CAMERAS, "lidar": (LIDAR,), "all": (LIDAR, *CAMERAS)}
SEGMENTS = ("full", "camera_lost", "lidar_lost", "all_lost")


@dataclass
class ScenarioEvent:
    at: float
    until: float = math.inf
    budget_ms: float | None = None
    override: str | None = None
    drop: list = field(default_factory=list)
    flap: list = field(default_factory=list)
    period_s: float = 1.0

    def sensors(self, names: list) -> set:
        out = set()
        for n in names:
            if n in GROUPS:
                out.update(GROUPS[n])
            elif n in GROUPS["all"]:
                out.add(n)
            else:
                raise UserError(f"scenario: unknown sensor {n!r} (sensors: {', '.join(GROUPS['all'])}, or groups "
                                f"{', '.join(GROUPS)})")
        return out


@dataclass
class Scenario:
    name: str = "none"
    events: list = field(default_factory=list)

    def blocked(self, sensor: str, t: float) -> bool:
        """Is `sensor` withheld at t seconds from the bag start?"""
        for e in self.events:
            if not e.at <= t < e.until:
                continue
            if sensor in e.sensors(e.drop):
                return True
            if sensor in e.sensors(e.flap) and math.fmod(t - e.at, e.period_s) >= e.period_s / 2:
                return True
        return False

    def setting(self, key: str, t: float):
        """The latest budget_ms / override set at or before t (None if never)."""
        value = None
        for e in sorted(self.events, key=lambda e: e.at):
            if e.at <= t and getattr(e, key) is not None:
                value = getattr(e, key)
        return value

    def segment(self, t: float) -> str:
        if self.blocked(LIDAR, t):
            return "all_lost" if all(self.blocked(c, t) for c in CAMERAS) else "lidar_lost"
        if any(self.blocked(c, t) for c in CAMERAS):
            return "camera_lost"
        return "full"


def load_scenario(path: str | Path | None) -> Scenario:
    if path is None:
        return Scenario()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"scenario not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"scenario {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    events = [from_dict(ScenarioEvent, e, f"{path.name}: events[{i}]") for i, e in enumerate(data.get("events", []))]
    scenario = from_dict(Scenario, {**data, "events": events}, path.name)
    for e in events:
        e.sensors(e.drop + e.flap)  # validate names now, not in the middle of a replay
    return scenario
