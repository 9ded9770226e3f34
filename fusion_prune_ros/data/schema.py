"""The nuScenes schema: the 13 tables, their static rows, and deterministic tokens.

Field names and shapes follow the published nuScenes schema (v1.0), so the official devkit loads the generated
set with `NuScenes(version, dataroot)` and scores it with `DetectionEval`.
"""
from __future__ import annotations

import hashlib

from .classes import ATTRIBUTES, CAMERAS, LIDAR, VISIBILITY_LEVELS

TABLE_NAMES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
               "scene", "sample", "sample_data", "sample_annotation", "map")

# The nuScenes v1.0 categories (all 23, so that real-data tools find every name they expect).
CATEGORIES = {
    "animal": "All animals, e.g. cats, rats, dogs, deer, birds.",
    "human.pedestrian.adult": "Adult subcategory.",
    "human.pedestrian.child": "Child subcategory.",
    "human.pedestrian.construction_worker": "Construction worker",
    "human.pedestrian.personal_mobility": "A small electric or self-propelled vehicle.",
    "human.pedestrian.police_officer": "Police officer.",
    "human.pedestrian.stroller": "Strollers.",
    "human.pedestrian.wheelchair": "Wheelchairs.",
    "movable_object.barrier": "Temporary road barrier placed in the scene in order to redirect traffic.",
    "movable_object.debris": "Movable object that is left on the driveable surface.",
    "movable_object.pushable_pullable": "Objects that a pedestrian may push or pull.",
    "movable_object.trafficcone": "All types of traffic cone.",
    "static_object.bicycle_rack": "Area or device intended to park or secure the bicycles in a row.",
    "vehicle.bicycle": "Human or electric powered 2-wheeled vehicle designed to travel at lower speeds.",
    "vehicle.bus.bendy": "Bendy bus subcategory. Annotate each section of the bendy bus individually.",
    "vehicle.bus.rigid": "Rigid bus subcategory.",
    "vehicle.car": "Vehicle designed primarily for personal use, e.g. sedans, hatch-backs, wagons, vans, mini-vans.",
    "vehicle.construction": "Vehicles primarily designed for construction. Typically very slow moving or stationary.",
    "vehicle.emergency.ambulance": "All types of ambulances.",
    "vehicle.emergency.police": "All types of police vehicles.",
    "vehicle.motorcycle": "Gasoline or electric powered 2-wheeled vehicle designed to move rapidly.",
    "vehicle.trailer": "Any vehicle trailer, both for trucks, cars and bikes.",
    "vehicle.truck": "Vehicles primarily designed to haul cargo including pick-ups, lorrys, trucks and semi-tractors.",
}

LOCATIONS = ("boston-seaport", "singapore-onenorth", "singapore-queenstown", "singapore-hollandvillage")


def make_token(*parts) -> str:
    """A 32-hex-digit token, stable for the same parts (so a seed reproduces the same set, tokens included)."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def static_tables(seed: int) -> dict:
    """Rows of the tables that do not depend on the scenes."""
    return {
        "category": [{"token": make_token(seed, "category", n), "name": n, "description": d}
                     for n, d in CATEGORIES.items()],
        "attribute": [{"token": make_token(seed, "attribute", n), "name": n, "description": d}
                      for n, d in ATTRIBUTES.items()],
        "visibility": [{"token": str(i + 1), "level": lvl, "description": d}
                       for i, (lvl, d) in enumerate(VISIBILITY_LEVELS)],
        "sensor": [{"token": make_token(seed, "sensor", ch), "channel": ch,
                    "modality": "lidar" if ch == LIDAR else "camera"} for ch in (LIDAR, *CAMERAS)],
    }


def visibility_token(fraction: float) -> str:
    """nuScenes visibility bin of the visible fraction of an object over all cameras."""
    if fraction <= 0.4:
        return "1"
    if fraction <= 0.6:
        return "2"
    if fraction <= 0.8:
        return "3"
    return "4"
