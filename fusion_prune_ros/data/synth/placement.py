"""Greedy, collision-free placement of a scene's objects over the whole scene duration, and of one annotated
object of a nuScenes category at a time: its size after the category's statistics, its shape, its velocity and
its attribute."""
from __future__ import annotations

import numpy as np

from . import shapes
from .raycast import Shape
from .shapes import Materials
from .world import Actor

SIZES = {  # mean (w, l, h) and spread, after the nuScenes category statistics
    "vehicle.car": ((1.95, 4.6, 1.73), (0.12, 0.35, 0.15)),
    "vehicle.truck": ((2.5, 6.9, 2.9), (0.15, 1.0, 0.3)),
    "vehicle.construction": ((2.75, 6.6, 3.1), (0.15, 0.6, 0.25)),
    "vehicle.bus.rigid": ((2.95, 11.2, 3.5), (0.08, 0.8, 0.15)),
    "vehicle.bus.bendy": ((2.95, 17.0, 3.4), (0.08, 0.8, 0.15)),
    "vehicle.trailer": ((2.85, 11.5, 3.8), (0.12, 1.5, 0.25)),
    "movable_object.barrier": ((2.5, 0.5, 1.0), (0.15, 0.04, 0.06)),
    "vehicle.motorcycle": ((0.8, 2.1, 1.45), (0.07, 0.12, 0.08)),
    "vehicle.bicycle": ((0.6, 1.72, 1.25), (0.05, 0.08, 0.08)),
    "human.pedestrian.adult": ((0.68, 0.73, 1.76), (0.06, 0.08, 0.09)),
    "human.pedestrian.child": ((0.52, 0.52, 1.3), (0.04, 0.05, 0.1)),
    "human.pedestrian.construction_worker": ((0.7, 0.75, 1.78), (0.05, 0.06, 0.08)),
    "human.pedestrian.police_officer": ((0.7, 0.75, 1.8), (0.05, 0.06, 0.07)),
    "movable_object.trafficcone": ((0.42, 0.42, 0.95), (0.04, 0.04, 0.1)),
}


def _separated(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, T) True where an edge normal of rectangle a separates rectangles a and b (corners (N, T, 4, 2))."""
    edges = a[:, :, [1, 3], :] - a[:, :, [0, 0], :]
    axes = np.stack([-edges[..., 1], edges[..., 0]], -1)  # (N, T, 2, 2)
    pa = np.einsum("ntkd,ntad->ntak", a, axes)
    pb = np.einsum("ntkd,ntad->ntak", b, axes)
    return ((pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))).any(-1)


class Placer:
    """Greedy, collision-free placement of objects over the whole scene duration."""

    def __init__(self, rng: np.random.Generator, times: np.ndarray):
        self.rng = rng
        self.mats = Materials()
        self.times = times
        self.actors: list[Actor] = []
        self._foot: list[np.ndarray] = []  # (T, 4, 2) corners over time, per actor or reserved vehicle

    def _footprint(self, a: Actor, half_w: float, half_l: float) -> np.ndarray:
        x = a.x0 + a.vx * self.times
        y = a.y0 + a.vy * self.times
        c, s = np.cos(a.yaw), np.sin(a.yaw)
        lx = np.array([1, 1, -1, -1]) * half_l
        ly = np.array([1, -1, -1, 1]) * half_w
        cx = x[:, None] + c * lx - s * ly
        cy = y[:, None] + s * lx + c * ly
        return np.stack([cx, cy], -1)

    def reserve(self, x0: float, y0: float, vx: float, half_w: float, half_l: float) -> None:
        """A vehicle driving along +x that takes part in collision checks only and is no actor of the scene (the
        ego vehicle)."""
        self._foot.append(self._footprint(Actor(Shape(), np.zeros((2, 3)), x0, y0, vx, 0.0, 0.0), half_w, half_l))

    def free(self, foot: np.ndarray) -> bool:
        """True if footprint trajectory (T, 4, 2) overlaps no accepted one at any sampled time (separating axes)."""
        if not self._foot:
            return True
        others = np.stack(self._foot)  # (N, T, 4, 2)
        lo, hi = foot.min(1), foot.max(1)
        near = ((others.min(2) <= hi) & (others.max(2) >= lo)).all(-1).any(-1)
        if not near.any():
            return True
        others = others[near]
        mine = np.broadcast_to(foot, others.shape)
        overlap = ~(_separated(mine, others) | _separated(others, mine))
        return not overlap.any()

    def add(self, shape: Shape, x0, y0, yaw, vx=0.0, vy=0.0, category=None, size=None, attribute=None,
            margin: float = 0.3) -> bool:
        bounds = shape.bounds()
        if size is not None:
            half_w, half_l = size[0] / 2 + margin, size[1] / 2 + margin
        else:
            half_w = max(abs(bounds[0, 1]), abs(bounds[1, 1])) + margin
            half_l = max(abs(bounds[0, 0]), abs(bounds[1, 0])) + margin
        actor = Actor(shape, bounds, float(x0), float(y0), float(vx), float(vy), float(yaw), category,
                      tuple(float(v) for v in size) if size is not None else (0.0, 0.0, 0.0), attribute)
        foot = self._footprint(actor, half_w, half_l)
        if not self.free(foot):
            return False
        self.actors.append(actor)
        self._foot.append(foot)
        return True

    def size(self, category: str) -> tuple:
        mean, spread = SIZES[category]
        return tuple(float(max(m * 0.6, self.rng.normal(m, s))) for m, s in zip(mean, spread))


def _vehicle_shape(b: Placer, category: str, size):
    w, l, h = size
    maker = {
        "vehicle.car": shapes.car, "vehicle.truck": shapes.truck, "vehicle.construction": shapes.construction_vehicle,
        "vehicle.bus.rigid": shapes.bus, "vehicle.bus.bendy": shapes.bus, "vehicle.trailer": shapes.trailer,
    }[category]
    return maker(b.rng, b.mats, w, l, h)


def add_vehicle(b: Placer, category, x, y, yaw, speed, parked: bool) -> bool:
    size = b.size(category)
    if speed > 0.3:
        attribute = "vehicle.moving"
    else:
        attribute = "vehicle.parked" if parked else "vehicle.stopped"
    shape = _vehicle_shape(b, category, size)
    return b.add(shape, x, y, yaw, speed * np.cos(yaw), speed * np.sin(yaw), category, size, attribute)


def add_cycle(b: Placer, category, x, y, yaw, speed, with_rider: bool) -> bool:
    w, l, h = b.size(category)
    if with_rider:
        h = float(b.rng.uniform(1.6, 1.8))
    maker = shapes.bicycle if category == "vehicle.bicycle" else shapes.motorcycle
    shape = maker(b.rng, b.mats, w, l, h, with_rider)
    attribute = "cycle.with_rider" if with_rider else "cycle.without_rider"
    return b.add(shape, x, y, yaw, speed * np.cos(yaw), speed * np.sin(yaw), category, (w, l, h), attribute)


def add_pedestrian(b: Placer, x, y, yaw, speed, category="human.pedestrian.adult") -> bool:
    size = b.size(category)
    shape = shapes.pedestrian(b.rng, b.mats, *size, hivis=category == "human.pedestrian.construction_worker")
    attribute = "pedestrian.moving" if speed > 0.2 else "pedestrian.standing"
    return b.add(shape, x, y, yaw, speed * np.cos(yaw), speed * np.sin(yaw), category, size, attribute, margin=0.1)


def add_static(b: Placer, category, x, y, yaw) -> bool:
    size = b.size(category)
    maker = shapes.traffic_cone if category == "movable_object.trafficcone" else shapes.barrier
    return b.add(maker(b.rng, b.mats, *size), x, y, yaw, category=category, size=size, margin=0.1)
