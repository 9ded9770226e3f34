"""The layout of one sampled scene: a construction zone, every detection class near the ego path, lane traffic,
parked vehicles, cyclists, pedestrians and unannotated clutter, then the light and the scene's place on the map.

Everything is drawn from one random generator in a fixed order, so a seed gives the same scene every time.
"""
from __future__ import annotations

import numpy as np

from ..classes import CATEGORY_TO_CLASS
from . import shapes
from .placement import Placer, add_cycle, add_pedestrian, add_static, add_vehicle
from .world import (BUILDING_SETBACK, CONDITIONS, EGO_LANE_Y, EGO_SIZE_WL, LANES, PARKING, ROAD_HALF, SIDEWALK,
                    SceneWorld)


def sample_world(rng: np.random.Generator, condition: str, duration: float, pre_roll: float) -> SceneWorld:
    """Sample a scene lasting `duration` seconds of key frames (plus `pre_roll` seconds of sweeps before)."""
    times = np.arange(-pre_roll - 0.1, duration + 0.11, 0.25)
    b = Placer(rng, times)
    ego_speed = 0.0 if rng.random() < 0.1 else float(rng.uniform(3.0, 10.0))
    travel = ego_speed * duration
    x_lo, x_hi = -110.0, travel + 130.0
    cross_x = float(rng.uniform(25.0, max(40.0, travel + 25.0))) if rng.random() < 0.5 else None

    # The ego vehicle takes part in collision checks only; its margin keeps a following distance in its lane, so
    # the front and back cameras are not blinded by a vehicle at arm's length.
    b.reserve(0.0, EGO_LANE_Y, ego_speed, EGO_SIZE_WL[0] / 2 + 0.5, EGO_SIZE_WL[1] / 2 + 7.0)

    # Construction zone on an outer lane next to the ego path: cones, barriers, a construction vehicle, workers.
    if rng.random() < 0.85:
        _add_construction_zone(b, travel, cross_x)
    # Every detection class near the ego path, placed before the traffic fills the kerbs, so that every class is
    # evaluated in every scene; then barrier rows and kerb cones away from the zone.
    _guarantee_classes(b, travel)
    _add_kerb_barriers_and_cones(b, travel)
    _add_lane_traffic(b, ego_speed, duration, x_lo, x_hi)
    _add_parked_vehicles(b, x_lo, x_hi, cross_x)
    _add_cyclists(b, x_lo, x_hi, travel)
    _add_pedestrians(b, x_lo, x_hi, travel, cross_x)
    # Unannotated clutter: buildings, street lights, trees, and the look-alikes of cones and barriers.
    _add_clutter(b, x_lo - 60, x_hi + 60, cross_x)

    heading = float(rng.uniform(-np.pi, np.pi))
    sun = _sun_direction(rng)
    offset, map_size = _map_extent(heading, x_lo, x_hi)
    return SceneWorld(CONDITIONS[condition], b.mats.table(), b.actors, 0.0, ego_speed, cross_x, sun, heading,
                      offset, map_size, (x_lo, x_hi))


def _add_kerb_barriers_and_cones(b: Placer, travel: float) -> None:
    """Rows of barriers along a kerb and single cones near the kerbs."""
    rng = b.rng
    for _ in range(int(rng.integers(0, 3))):
        side, x = (1 if rng.random() < 0.5 else -1), float(rng.uniform(-20, travel + 40))
        for k in range(int(rng.integers(2, 6))):
            add_static(b, "movable_object.barrier", x + 2.7 * k, side * 9.8, np.pi / 2)
    for _ in range(int(rng.integers(0, 5))):
        add_static(b, "movable_object.trafficcone", float(rng.uniform(-20, travel + 40)),
                   (1 if rng.random() < 0.5 else -1) * float(rng.uniform(6.8, 9.4)), 0.0)


def _add_lane_traffic(b: Placer, ego_speed: float, duration: float, x_lo: float, x_hi: float) -> None:
    """Lane traffic. The ego lane moves at the ego's speed, so its vehicles keep their distance."""
    rng = b.rng
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
                add_cycle(b, kind, x, lane_y + float(rng.normal(0, 0.3)), yaw, speed, True)
            elif kind == "vehicle.truck+trailer":
                tsize = b.size("vehicle.truck")
                trsize = b.size("vehicle.trailer")
                offset = (tsize[1] + trsize[1]) / 2 + 0.6
                if add_vehicle(b, "vehicle.truck", x + direction * offset, lane_y, yaw, speed, False):
                    add_vehicle(b, "vehicle.trailer", x, lane_y, yaw, speed, False)
            else:
                add_vehicle(b, kind, x, lane_y + float(rng.normal(0, 0.15)), yaw, speed, False)
            x += float(rng.uniform(9.0, 35.0))


def _add_parked_vehicles(b: Placer, x_lo: float, x_hi: float, cross_x: float | None) -> None:
    """Parked vehicles along both kerbs (none where the cross street meets them), a bus at a stop."""
    rng = b.rng
    park_mix = ["vehicle.car"] * 14 + ["vehicle.truck", "vehicle.trailer", "vehicle.construction",
                                       "vehicle.motorcycle", "vehicle.bus.rigid", "vehicle.bus.bendy"]
    for side in (-1, 1):
        x = x_lo + float(rng.uniform(0, 10))
        yaw = 0.0 if side < 0 else np.pi
        while x < x_hi:
            near_cross = cross_x is not None and abs(x - cross_x) < SIDEWALK[1] + 6
            if not near_cross and rng.random() < 0.6:
                kind = park_mix[int(rng.integers(len(park_mix)))]
                y = side * (sum(PARKING) / 2 + float(rng.normal(0, 0.1)))
                if kind == "vehicle.motorcycle":
                    add_cycle(b, kind, x, y, yaw, 0.0, False)
                elif kind.startswith("vehicle.bus"):
                    add_vehicle(b, kind, x, side * 8.0, yaw, 0.0, parked=False)
                else:
                    add_vehicle(b, kind, x, y, yaw + float(rng.normal(0, 0.03)), 0.0, True)
            x += float(rng.uniform(6.0, 14.0))


def _add_cyclists(b: Placer, x_lo: float, x_hi: float, travel: float) -> None:
    """Cyclists riding at the edge of the outer lanes, parked bicycles on the sidewalks."""
    rng = b.rng
    for _ in range(int(rng.integers(1, 4))):
        side = 1 if rng.random() < 0.5 else -1
        speed = float(rng.uniform(2.5, 6.0))
        add_cycle(b, "vehicle.bicycle", float(rng.uniform(x_lo + 40, x_hi - 20)), side * 6.4,
                  0.0 if side < 0 else np.pi, speed, True)
    for _ in range(int(rng.integers(2, 7))):
        side = 1 if rng.random() < 0.5 else -1
        add_cycle(b, "vehicle.bicycle", float(rng.uniform(-30, travel + 40)), side * 10.0,
                  side * np.pi / 2 + float(rng.normal(0, 0.1)), 0.0, False)


def _add_pedestrians(b: Placer, x_lo: float, x_hi: float, travel: float, cross_x: float | None) -> None:
    """Pedestrians on the sidewalks, some standing, some crossing."""
    rng = b.rng
    for _ in range(int(rng.integers(16, 32))):
        side = 1 if rng.random() < 0.5 else -1
        moving = rng.random() < 0.7
        heading = (0.0 if rng.random() < 0.5 else np.pi) if moving else float(rng.uniform(-np.pi, np.pi))
        category = "human.pedestrian.child" if rng.random() < 0.1 else (
            "human.pedestrian.police_officer" if rng.random() < 0.03 else "human.pedestrian.adult")
        add_pedestrian(b, float(rng.uniform(x_lo + 50, x_hi - 40)), side * float(rng.uniform(9.9, 12.7)), heading,
                       float(rng.uniform(0.8, 1.6)) if moving else 0.0, category)
    for _ in range(int(rng.integers(0, 4))):
        x = cross_x + float(rng.uniform(-1, 1)) + (ROAD_HALF + 1.5) * (1 if rng.random() < 0.5 else -1) \
            if cross_x is not None else float(rng.uniform(0, travel + 40))
        side = 1 if rng.random() < 0.5 else -1
        add_pedestrian(b, x, side * float(rng.uniform(9.5, 12.0)), -side * np.pi / 2, float(rng.uniform(1.0, 1.5)))


def _sun_direction(rng: np.random.Generator) -> np.ndarray:
    """Unit vector towards the sun, at a random azimuth and an elevation of 29 to 63 degrees."""
    sun_el, sun_az = float(rng.uniform(0.5, 1.1)), float(rng.uniform(-np.pi, np.pi))
    return np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)], np.float32)


def _map_extent(heading: float, x_lo: float, x_hi: float) -> tuple[np.ndarray, tuple]:
    """(global position of the scene's origin, (width, height) of the map): the scene's area rotated to its
    heading, with a margin, all in positive global coordinates."""
    corners = np.array([[x_lo - 80, -80], [x_hi + 80, -80], [x_hi + 80, 80], [x_lo - 80, 80]])
    c, s = np.cos(heading), np.sin(heading)
    rot = corners @ np.array([[c, s], [-s, c]])
    offset = -rot.min(0) + 20.0
    map_size = tuple(float(v) for v in np.ceil(rot.max(0) - rot.min(0) + 40.0))
    return offset, map_size


def _add_construction_zone(b: Placer, travel: float, cross_x: float | None) -> None:
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
            add_static(b, "movable_object.trafficcone", x, edge_y, 0.0)
        for x in (zx - 1.0, zx + zlen + 1.0):
            add_static(b, "movable_object.barrier", x, side * 5.25, float(rng.normal(0, 0.05)))
    else:
        for x in np.arange(zx + 1.5, zx + zlen - 1.0, 2.8):
            add_static(b, "movable_object.barrier", x, side * 3.75, np.pi / 2 + float(rng.normal(0, 0.03)))
        for x in (zx - 1.0, zx + zlen + 1.0):
            for y in (side * 4.4, side * 6.1):
                add_static(b, "movable_object.trafficcone", x, y, 0.0)
    moving = rng.random() < 0.3
    add_vehicle(b, "vehicle.construction", zx + zlen / 2, side * 5.25, 0.0 if side < 0 else np.pi,
                1.0 if moving else 0.0, parked=rng.random() < 0.5)
    for _ in range(int(rng.integers(1, 4))):
        walk = rng.random() < 0.4
        add_pedestrian(b, float(rng.uniform(zx + 1, zx + zlen - 1)), side * float(rng.uniform(4.3, 6.6)),
                       0.0 if walk else float(rng.uniform(-np.pi, np.pi)), 0.5 if walk else 0.0,
                       "human.pedestrian.construction_worker")


def _guarantee_classes(b: Placer, travel: float) -> None:
    rng = b.rng
    present = {CATEGORY_TO_CLASS[a.category] for a in b.actors if a.category is not None}
    wanted = {
        "car": lambda x, s: add_vehicle(b, "vehicle.car", x, s * 8.25, 0.0 if s < 0 else np.pi, 0.0, True),
        "truck": lambda x, s: add_vehicle(b, "vehicle.truck", x, s * 8.25, 0.0 if s < 0 else np.pi, 0.0, True),
        "construction_vehicle": lambda x, s: add_vehicle(b, "vehicle.construction", x, s * 8.25,
                                                         0.0 if s < 0 else np.pi, 0.0, True),
        "bus": lambda x, s: add_vehicle(b, "vehicle.bus.rigid", x, s * 8.0, 0.0 if s < 0 else np.pi, 0.0, False),
        "trailer": lambda x, s: add_vehicle(b, "vehicle.trailer", x, s * 8.25, 0.0 if s < 0 else np.pi, 0.0, True),
        "barrier": lambda x, s: add_static(b, "movable_object.barrier", x, s * 9.7, np.pi / 2),
        "traffic_cone": lambda x, s: add_static(b, "movable_object.trafficcone", x, s * 7.4, 0.0),
        "motorcycle": lambda x, s: add_cycle(b, "vehicle.motorcycle", x, s * 8.25, 0.0 if s < 0 else np.pi, 0.0,
                                             False),
        "bicycle": lambda x, s: add_cycle(b, "vehicle.bicycle", x, s * 10.0, s * np.pi / 2, 0.0, False),
        "pedestrian": lambda x, s: add_pedestrian(b, x, s * 11.0, 0.0, 0.0),
    }
    for cls, place in wanted.items():
        if cls in present:
            continue
        for _ in range(40):
            if place(float(rng.uniform(0.0, travel + 20.0)), 1 if rng.random() < 0.5 else -1):
                break


def _add_clutter(b: Placer, x_lo: float, x_hi: float, cross_x: float | None) -> None:
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
