"""One generated scene: the road layout, the weather, the ego vehicle's motion and every object with its motion.

The scene's local frame has the main road along +x (right-hand traffic, so the ego lane is at y = -1.75) and the
ground at z = 0. `SceneWorld.global_transform` places it on the map with a random heading, so ego poses and
annotations have arbitrary global orientations, as in nuScenes. Every object moves at a constant velocity (zero for
parked / static ones), which keeps nuScenes' finite-difference velocities exact and lets a greedy insertion
check whole trajectories against each other: no two objects ever overlap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..classes import CATEGORY_TO_CLASS
from . import shapes
from .raycast import Shape
from .shapes import Materials, MaterialTable

LANES = ((-5.25, 1), (-1.75, 1), (1.75, -1), (5.25, -1))  # (centre y, direction along x)
EGO_LANE_Y = -1.75
ROAD_HALF = 7.0
PARKING = (7.0, 9.5)
SIDEWALK = (9.5, 13.0)
BUILDING_SETBACK = 14.5
EGO_SIZE_WL = (1.9, 4.8)


@dataclass(frozen=True)
class Condition:
    """Weather / light of a scene, and how it degrades each sensor."""

    name: str
    ambient: float
    diffuse: float
    light_gain: float  # how much vehicle and street lights show
    headlights: float  # ego headlight illumination for the front cameras
    fog_distance: float  # metres at which 63 % of the colour is fog
    fog_colour: tuple
    sky_top: tuple
    sky_horizon: tuple
    image_noise: float
    blur: bool
    lidar_dropout: float  # extra random dropout of LiDAR returns
    lidar_range_noise: float  # metres (1 sigma)
    lidar_sensitivity: float  # larger -> weak returns survive
    lidar_attenuation: float  # metres; returns thin out beyond (rain / fog), 0 = none
    lidar_clutter: int  # spurious near-range returns per sweep (rain drops)


CONDITIONS = {
    "day": Condition("day", 0.42, 0.75, 0.05, 0.0, 600.0, (0.75, 0.8, 0.88), (0.3, 0.5, 0.85), (0.75, 0.82, 0.92),
                     0.012, False, 0.03, 0.015, 1.0, 0.0, 0),
    "night": Condition("night", 0.012, 0.0, 1.0, 1.2, 250.0, (0.02, 0.02, 0.03), (0.0, 0.0, 0.02),
                       (0.03, 0.03, 0.05), 0.035, False, 0.03, 0.015, 1.0, 0.0, 0),
    "rain": Condition("rain", 0.33, 0.2, 0.35, 0.0, 45.0, (0.55, 0.57, 0.6), (0.45, 0.47, 0.5), (0.6, 0.62, 0.65),
                      0.02, True, 0.22, 0.06, 0.45, 40.0, 600),
}
CONDITION_CYCLE = ("day", "night", "rain", "day")


@dataclass
class Actor:
    """An object of the scene: annotated (an instance of a nuScenes category) or unannotated clutter."""

    shape: Shape
    bounds: np.ndarray  # (2, 3) of the shape, in its own frame
    x0: float
    y0: float
    vx: float
    vy: float
    yaw: float
    category: str | None = None  # nuScenes category for annotated actors, None for clutter
    size: tuple = (0.0, 0.0, 0.0)  # (w, l, h) of the annotation box
    attribute: str | None = None

    def position(self, t):
        return self.x0 + self.vx * t, self.y0 + self.vy * t


@dataclass
class SceneWorld:
    """Everything needed to render any sensor of the scene at any time t (seconds from the first key frame)."""

    condition: Condition
    materials: MaterialTable
    actors: list
    ego_x0: float
    ego_speed: float
    cross_x: float | None
    sun: np.ndarray
    heading: float  # global yaw of the local +x axis
    offset: np.ndarray  # global position of the local origin
    map_size: tuple  # (width, height) of the map in metres
    x_range: tuple = field(default=(0.0, 0.0))

    def ego_pose(self, t: float):
        """(x, y, yaw) of the ego vehicle in the scene frame."""
        return self.ego_x0 + self.ego_speed * t, EGO_LANE_Y, 0.0

    def to_global(self, xy: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.heading), np.sin(self.heading)
        xy = np.asarray(xy, np.float64)
        return np.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], -1) + self.offset

    def annotated(self):
        return [i for i, a in enumerate(self.actors) if a.category is not None]


# ---- ground --------------------------------------------------------------------------------------------------


def ground_material(world: SceneWorld, x: np.ndarray, y: np.ndarray):
    """Albedo (N, 3) and LiDAR reflectivity (N,) of the ground at scene-frame points: asphalt with lane markings,
    parking strips, sidewalks, grass; and the cross street when the scene has one."""
    ay = np.abs(y)
    on_cross = np.zeros_like(x, bool) if world.cross_x is None else np.abs(x - world.cross_x) < ROAD_HALF
    road = (ay < PARKING[1]) | on_cross
    sidewalk = ~road & (ay < SIDEWALK[1]) | (world.cross_x is not None) & ~road & (
        np.abs(x - (world.cross_x or 0.0)) < ROAD_HALF + 3.5)
    albedo = np.empty(x.shape + (3,), np.float32)
    refl = np.empty(x.shape, np.float32)
    albedo[:] = (0.22, 0.3, 0.14)  # grass / verge
    refl[:] = 0.3
    albedo[sidewalk] = (0.55, 0.54, 0.5)
    refl[sidewalk] = 0.28
    albedo[road] = (0.17, 0.17, 0.18)
    refl[road] = 0.12
    dash = (np.mod(x, 9.0) < 3.0)
    along = ~on_cross
    centre = along & (ay < 0.25) & (ay > 0.05)
    divider = along & (np.abs(ay - 3.5) < 0.08) & dash
    edge = along & (np.abs(ay - ROAD_HALF + 0.2) < 0.08)
    yellow = centre
    white = divider | edge
    if world.cross_x is not None:
        zebra = (np.abs(np.abs(x - world.cross_x) - (ROAD_HALF + 1.5)) < 1.5) & (ay < ROAD_HALF) & (
            np.mod(y, 1.2) < 0.6)
        white |= zebra
    albedo[white] = (0.85, 0.85, 0.82)
    refl[white] = 0.65
    albedo[yellow] = (0.8, 0.65, 0.1)
    refl[yellow] = 0.6
    return albedo, refl


# ---- scene sampling -------------------------------------------------------------------------------------------

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


class _Builder:
    """Greedy, collision-free placement of objects over the whole scene duration."""

    def __init__(self, rng: np.random.Generator, times: np.ndarray):
        self.rng = rng
        self.mats = Materials()
        self.times = times
        self.actors: list[Actor] = []
        self._foot: list[np.ndarray] = []  # per actor (T, 4, 2) footprint corners over time

    def _footprint(self, a: Actor, half_w: float, half_l: float) -> np.ndarray:
        x = a.x0 + a.vx * self.times
        y = a.y0 + a.vy * self.times
        c, s = np.cos(a.yaw), np.sin(a.yaw)
        lx = np.array([1, 1, -1, -1]) * half_l
        ly = np.array([1, -1, -1, 1]) * half_w
        cx = x[:, None] + c * lx - s * ly
        cy = y[:, None] + s * lx + c * ly
        return np.stack([cx, cy], -1)

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


def _vehicle_shape(b: _Builder, category: str, size):
    w, l, h = size
    maker = {
        "vehicle.car": shapes.car, "vehicle.truck": shapes.truck, "vehicle.construction": shapes.construction_vehicle,
        "vehicle.bus.rigid": shapes.bus, "vehicle.bus.bendy": shapes.bus, "vehicle.trailer": shapes.trailer,
    }[category]
    return maker(b.rng, b.mats, w, l, h)


def _add_vehicle(b: _Builder, category, x, y, yaw, speed, parked: bool) -> bool:
    size = b.size(category)
    if speed > 0.3:
        attribute = "vehicle.moving"
    else:
        attribute = "vehicle.parked" if parked else "vehicle.stopped"
    shape = _vehicle_shape(b, category, size)
    return b.add(shape, x, y, yaw, speed * np.cos(yaw), speed * np.sin(yaw), category, size, attribute)


def _add_cycle(b: _Builder, category, x, y, yaw, speed, with_rider: bool) -> bool:
    w, l, h = b.size(category)
    if with_rider:
        h = float(b.rng.uniform(1.6, 1.8))
    maker = shapes.bicycle if category == "vehicle.bicycle" else shapes.motorcycle
    shape = maker(b.rng, b.mats, w, l, h, with_rider)
    attribute = "cycle.with_rider" if with_rider else "cycle.without_rider"
    return b.add(shape, x, y, yaw, speed * np.cos(yaw), speed * np.sin(yaw), category, (w, l, h), attribute)


def _add_pedestrian(b: _Builder, x, y, yaw, speed, category="human.pedestrian.adult") -> bool:
    size = b.size(category)
    shape = shapes.pedestrian(b.rng, b.mats, *size, hivis=category == "human.pedestrian.construction_worker")
    attribute = "pedestrian.moving" if speed > 0.2 else "pedestrian.standing"
    return b.add(shape, x, y, yaw, speed * np.cos(yaw), speed * np.sin(yaw), category, size, attribute, margin=0.1)


def _add_static(b: _Builder, category, x, y, yaw) -> bool:
    size = b.size(category)
    maker = shapes.traffic_cone if category == "movable_object.trafficcone" else shapes.barrier
    return b.add(maker(b.rng, b.mats, *size), x, y, yaw, category=category, size=size, margin=0.1)


def _try(n: int, fn) -> int:
    """Call fn() up to n times; count successes (placement may be refused by the collision check)."""
    return sum(bool(fn()) for _ in range(n))


def sample_world(rng: np.random.Generator, condition: str, duration: float, pre_roll: float) -> SceneWorld:
    """Sample a scene lasting `duration` seconds of key frames (plus `pre_roll` seconds of sweeps before)."""
    times = np.arange(-pre_roll - 0.1, duration + 0.11, 0.25)
    b = _Builder(rng, times)
    ego_speed = 0.0 if rng.random() < 0.1 else float(rng.uniform(3.0, 10.0))
    travel = ego_speed * duration
    x_lo, x_hi = -110.0, travel + 130.0
    cross_x = float(rng.uniform(25.0, max(40.0, travel + 25.0))) if rng.random() < 0.5 else None

    # The ego vehicle takes part in collision checks only; its margin keeps a following distance in its lane, so
    # the front and back cameras are not blinded by a vehicle at arm's length.
    ego_foot = b._footprint(Actor(Shape(), np.zeros((2, 3)), 0.0, EGO_LANE_Y, ego_speed, 0.0, 0.0),
                            EGO_SIZE_WL[0] / 2 + 0.5, EGO_SIZE_WL[1] / 2 + 7.0)
    b._foot.append(ego_foot)
    b.actors.append(None)

    def near_cross(x, pad=0.0):
        return cross_x is not None and abs(x - cross_x) < SIDEWALK[1] + pad

    # Construction zone on an outer lane next to the ego path: cones, barriers, a construction vehicle, workers.
    if rng.random() < 0.85:
        _add_construction_zone(b, travel, cross_x)
    # Every detection class near the ego path, placed before the traffic fills the kerbs, so that every class is
    # evaluated in every scene; then barrier rows and kerb cones away from the zone.
    _guarantee_classes(b, travel)
    for _ in range(int(rng.integers(0, 3))):
        side, x = (1 if rng.random() < 0.5 else -1), float(rng.uniform(-20, travel + 40))
        for k in range(int(rng.integers(2, 6))):
            _add_static(b, "movable_object.barrier", x + 2.7 * k, side * 9.8, np.pi / 2)
    for _ in range(int(rng.integers(0, 5))):
        _add_static(b, "movable_object.trafficcone", float(rng.uniform(-20, travel + 40)),
                    (1 if rng.random() < 0.5 else -1) * float(rng.uniform(6.8, 9.4)), 0.0)

    # Lane traffic. The ego lane moves at the ego's speed, so its vehicles keep their distance.
    lane_mix = (["vehicle.car"] * 16 + ["vehicle.truck"] * 2 + ["vehicle.bus.rigid", "vehicle.construction",
                "vehicle.motorcycle", "vehicle.truck+trailer"])
    for lane_y, direction in LANES:
        speed = ego_speed if lane_y == EGO_LANE_Y else (0.0 if rng.random() < 0.15 else float(rng.uniform(3, 12)))
        yaw = 0.0 if direction > 0 else np.pi
        span_lo = x_lo - (speed * duration if direction > 0 else 0.0)
        span_hi = x_hi + (speed * duration if direction < 0 else 0.0)
        x = span_lo + float(rng.uniform(0, 15))
        while x < span_hi:
            kind = lane_mix[int(rng.integers(len(lane_mix)))]
            if kind == "vehicle.motorcycle":
                _add_cycle(b, kind, x, lane_y + float(rng.normal(0, 0.3)), yaw, speed, True)
            elif kind == "vehicle.truck+trailer":
                tsize = b.size("vehicle.truck")
                trsize = b.size("vehicle.trailer")
                offset = (tsize[1] + trsize[1]) / 2 + 0.6
                if _add_vehicle(b, "vehicle.truck", x + direction * offset, lane_y, yaw, speed, False):
                    _add_vehicle(b, "vehicle.trailer", x, lane_y, yaw, speed, False)
            else:
                _add_vehicle(b, kind, x, lane_y + float(rng.normal(0, 0.15)), yaw, speed, False)
            x += float(rng.uniform(9.0, 35.0))

    # Parked vehicles along both kerbs, a bus at a stop.
    park_mix = ["vehicle.car"] * 14 + ["vehicle.truck", "vehicle.trailer", "vehicle.construction",
                                       "vehicle.motorcycle", "vehicle.bus.rigid", "vehicle.bus.bendy"]
    for side in (-1, 1):
        x = x_lo + float(rng.uniform(0, 10))
        yaw = 0.0 if side < 0 else np.pi
        while x < x_hi:
            if not near_cross(x, 6) and rng.random() < 0.6:
                kind = park_mix[int(rng.integers(len(park_mix)))]
                y = side * (sum(PARKING) / 2 + float(rng.normal(0, 0.1)))
                if kind == "vehicle.motorcycle":
                    _add_cycle(b, kind, x, y, yaw, 0.0, False)
                elif kind.startswith("vehicle.bus"):
                    _add_vehicle(b, kind, x, side * 8.0, yaw, 0.0, parked=False)
                else:
                    _add_vehicle(b, kind, x, y, yaw + float(rng.normal(0, 0.03)), 0.0, True)
            x += float(rng.uniform(6.0, 14.0))

    # Cyclists riding at the edge of the outer lanes, parked bicycles on the sidewalks.
    for _ in range(int(rng.integers(1, 4))):
        side = 1 if rng.random() < 0.5 else -1
        speed = float(rng.uniform(2.5, 6.0))
        _add_cycle(b, "vehicle.bicycle", float(rng.uniform(x_lo + 40, x_hi - 20)), side * 6.4,
                   0.0 if side < 0 else np.pi, speed, True)
    for _ in range(int(rng.integers(2, 7))):
        side = 1 if rng.random() < 0.5 else -1
        _add_cycle(b, "vehicle.bicycle", float(rng.uniform(-30, travel + 40)), side * 10.0,
                   side * np.pi / 2 + float(rng.normal(0, 0.1)), 0.0, False)

    # Pedestrians on the sidewalks, some standing, some crossing.
    for _ in range(int(rng.integers(16, 32))):
        side = 1 if rng.random() < 0.5 else -1
        moving = rng.random() < 0.7
        heading = (0.0 if rng.random() < 0.5 else np.pi) if moving else float(rng.uniform(-np.pi, np.pi))
        category = "human.pedestrian.child" if rng.random() < 0.1 else (
            "human.pedestrian.police_officer" if rng.random() < 0.03 else "human.pedestrian.adult")
        _add_pedestrian(b, float(rng.uniform(x_lo + 50, x_hi - 40)), side * float(rng.uniform(9.9, 12.7)), heading,
                        float(rng.uniform(0.8, 1.6)) if moving else 0.0, category)
    for _ in range(int(rng.integers(0, 4))):
        x = cross_x + float(rng.uniform(-1, 1)) + (ROAD_HALF + 1.5) * (1 if rng.random() < 0.5 else -1) \
            if cross_x is not None else float(rng.uniform(0, travel + 40))
        side = 1 if rng.random() < 0.5 else -1
        _add_pedestrian(b, x, side * float(rng.uniform(9.5, 12.0)), -side * np.pi / 2, float(rng.uniform(1.0, 1.5)))

    # Unannotated clutter: buildings, street lights, trees, and the look-alikes of cones and barriers.
    _add_clutter(b, x_lo - 60, x_hi + 60, cross_x)

    heading = float(rng.uniform(-np.pi, np.pi))
    sun_el, sun_az = float(rng.uniform(0.5, 1.1)), float(rng.uniform(-np.pi, np.pi))
    sun = np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)], np.float32)
    # Map extent: the scene's area rotated to its heading, with a margin, all in positive global coordinates.
    corners = np.array([[x_lo - 80, -80], [x_hi + 80, -80], [x_hi + 80, 80], [x_lo - 80, 80]])
    c, s = np.cos(heading), np.sin(heading)
    rot = corners @ np.array([[c, s], [-s, c]])
    offset = -rot.min(0) + 20.0
    map_size = tuple(float(v) for v in np.ceil(rot.max(0) - rot.min(0) + 40.0))
    actors = [a for a in b.actors if a is not None]
    return SceneWorld(CONDITIONS[condition], b.mats.table(), actors, 0.0, ego_speed, cross_x, sun, heading,
                      offset, map_size, (x_lo, x_hi))


def _add_construction_zone(b: _Builder, travel: float, cross_x: float | None) -> None:
    """A closed stretch of an outer lane: either cones along its edge and barriers across its ends, or barriers
    along its edge and cones at its ends; a construction vehicle and workers inside."""
    rng = b.rng
    for _ in range(10):
        side = 1 if rng.random() < 0.5 else -1
        zx = float(rng.uniform(5.0, max(10.0, travel + 15.0)))
        zlen = float(rng.uniform(14.0, 28.0))
        if cross_x is None or zx > cross_x + SIDEWALK[1] or zx + zlen < cross_x - SIDEWALK[1]:
            break
    else:
        return
    edge_y = side * 3.6
    if rng.random() < 0.6:
        for x in np.arange(zx, zx + zlen + 0.1, float(rng.uniform(2.5, 4.0))):
            _add_static(b, "movable_object.trafficcone", x, edge_y, 0.0)
        for x in (zx - 1.0, zx + zlen + 1.0):
            _add_static(b, "movable_object.barrier", x, side * 5.25, float(rng.normal(0, 0.05)))
    else:
        for x in np.arange(zx + 1.5, zx + zlen - 1.0, 2.8):
            _add_static(b, "movable_object.barrier", x, side * 3.75, np.pi / 2 + float(rng.normal(0, 0.03)))
        for x in (zx - 1.0, zx + zlen + 1.0):
            for y in (side * 4.4, side * 6.1):
                _add_static(b, "movable_object.trafficcone", x, y, 0.0)
    moving = rng.random() < 0.3
    _add_vehicle(b, "vehicle.construction", zx + zlen / 2, side * 5.25, 0.0 if side < 0 else np.pi,
                 1.0 if moving else 0.0, parked=rng.random() < 0.5)
    for _ in range(int(rng.integers(1, 4))):
        walk = rng.random() < 0.4
        _add_pedestrian(b, float(rng.uniform(zx + 1, zx + zlen - 1)), side * float(rng.uniform(4.3, 6.6)),
                        0.0 if walk else float(rng.uniform(-np.pi, np.pi)), 0.5 if walk else 0.0,
                        "human.pedestrian.construction_worker")


def _guarantee_classes(b: _Builder, travel: float) -> None:
    rng = b.rng
    present = {CATEGORY_TO_CLASS[a.category] for a in b.actors if a is not None and a.category is not None}
    wanted = {
        "car": lambda x, s: _add_vehicle(b, "vehicle.car", x, s * 8.25, 0.0 if s < 0 else np.pi, 0.0, True),
        "truck": lambda x, s: _add_vehicle(b, "vehicle.truck", x, s * 8.25, 0.0 if s < 0 else np.pi, 0.0, True),
        "construction_vehicle": lambda x, s: _add_vehicle(b, "vehicle.construction", x, s * 8.25,
                                                          0.0 if s < 0 else np.pi, 0.0, True),
        "bus": lambda x, s: _add_vehicle(b, "vehicle.bus.rigid", x, s * 8.0, 0.0 if s < 0 else np.pi, 0.0, False),
        "trailer": lambda x, s: _add_vehicle(b, "vehicle.trailer", x, s * 8.25, 0.0 if s < 0 else np.pi, 0.0, True),
        "barrier": lambda x, s: _add_static(b, "movable_object.barrier", x, s * 9.7, np.pi / 2),
        "traffic_cone": lambda x, s: _add_static(b, "movable_object.trafficcone", x, s * 7.4, 0.0),
        "motorcycle": lambda x, s: _add_cycle(b, "vehicle.motorcycle", x, s * 8.25, 0.0 if s < 0 else np.pi, 0.0,
                                              False),
        "bicycle": lambda x, s: _add_cycle(b, "vehicle.bicycle", x, s * 10.0, s * np.pi / 2, 0.0, False),
        "pedestrian": lambda x, s: _add_pedestrian(b, x, s * 11.0, 0.0, 0.0),
    }
    for cls, place in wanted.items():
        if cls in present:
            continue
        for _ in range(40):
            if place(float(rng.uniform(0.0, travel + 20.0)), 1 if rng.random() < 0.5 else -1):
                break


def _add_clutter(b: _Builder, x_lo: float, x_hi: float, cross_x: float | None) -> None:
    rng = b.rng

    def in_cross(x, pad):
        return cross_x is not None and abs(x - cross_x) < ROAD_HALF + pad

    for side in (-1, 1):
        x = x_lo
        while x < x_hi:
            length = float(rng.uniform(8, 30))
            depth = float(rng.uniform(10, 20))
            if not in_cross(x + length / 2, length / 2 + 6) and rng.random() < 0.8:
                setback = BUILDING_SETBACK + float(rng.uniform(0, 6))
                shape = shapes.building(rng, b.mats, length, depth, float(rng.uniform(6, 28)))
                b.add(shape, x + length / 2, side * (setback + depth / 2), 0.0, margin=0.0)
            x += length + float(rng.uniform(1, 8))
        for x in np.arange(x_lo, x_hi, float(rng.uniform(22, 35))):
            if not in_cross(x, 4):
                b.add(shapes.pole(rng, b.mats), x, side * 9.75, 0.0, margin=0.05)
        for _ in range(int((x_hi - x_lo) / 18)):
            x = float(rng.uniform(x_lo, x_hi))
            if not in_cross(x, 4):
                b.add(shapes.tree(rng, b.mats), x, side * float(rng.uniform(12.9, 14.0)), 0.0, margin=0.05)
        # Look-alikes close to the road: grey bollards (cone-sized), concrete walls and hedges (barrier-sized).
        for _ in range(int((x_hi - x_lo) / 12)):
            x = float(rng.uniform(x_lo, x_hi))
            kind = rng.random()
            if kind < 0.5:
                b.add(shapes.bollard(rng, b.mats), x, side * float(rng.uniform(9.6, 9.9)), 0.0, margin=0.1)
            elif kind < 0.8:
                b.add(shapes.jersey_wall(rng, b.mats), x, side * float(rng.uniform(9.7, 10.5)),
                      float(rng.choice([0.0, np.pi / 2])), margin=0.1)
            else:
                b.add(shapes.hedge(rng, b.mats), x, side * float(rng.uniform(13.0, 13.8)), np.pi / 2, margin=0.1)
