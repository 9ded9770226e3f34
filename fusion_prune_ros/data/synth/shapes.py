"""Materials and the primitive shapes of every actor class and of the unannotated clutter.

The shapes are designed so that the two sensors carry partly different information (the premise of the
multimodal pruning methods):
- told apart by colour / texture, hardly by geometry (the camera matters): truck vs. construction vehicle
  (same cab-plus-body layout, white/blue vs. yellow/orange paint), traffic cone vs. grey bollard, striped barrier
  vs. grey concrete jersey wall, bicycle vs. motorcycle at range;
- told apart by shape, size and distance (the LiDAR matters): bus vs. truck vs. trailer (length, ground clearance),
  pedestrian vs. pole, anything at night;
- redundant in both: cars, buses, most pedestrians by day.
LiDAR reflectivities of the colour-confusable pairs are kept close on purpose, so intensity does not give the
camera's answer away.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raycast import Shape, ShapeBuilder

PLAIN, STRIPES, WINDOWS, LEAVES = 0, 1, 2, 3


@dataclass
class MaterialTable:
    """Per-material arrays indexed by the material ids stored in shapes."""

    albedo: np.ndarray  # (N, 3) linear RGB in [0, 1]
    reflectivity: np.ndarray  # (N,) LiDAR reflectivity in [0, 1]
    texture: np.ndarray  # (N,) PLAIN | STRIPES | WINDOWS | LEAVES
    emissive: np.ndarray  # (N,) light strength (vehicle and street lights), scaled by the scene's light gain


class Materials:
    """Registry of the materials of one scene; every object adds its own (its own paint colour)."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []

    def add(self, albedo, reflectivity: float, texture: int = PLAIN, emissive: float = 0.0) -> int:
        self._rows.append((tuple(float(a) for a in albedo), float(reflectivity), int(texture), float(emissive)))
        return len(self._rows) - 1

    def table(self) -> MaterialTable:
        return MaterialTable(
            albedo=np.array([r[0] for r in self._rows], np.float32).reshape(-1, 3),
            reflectivity=np.array([r[1] for r in self._rows], np.float32),
            texture=np.array([r[2] for r in self._rows], np.int32),
            emissive=np.array([r[3] for r in self._rows], np.float32),
        )


CAR_PAINTS = [(0.85, 0.85, 0.83), (0.05, 0.05, 0.06), (0.55, 0.56, 0.58), (0.3, 0.3, 0.32), (0.6, 0.06, 0.05),
              (0.08, 0.18, 0.5), (0.05, 0.08, 0.25), (0.1, 0.3, 0.15), (0.6, 0.55, 0.42)]
TRUCK_PAINTS = [(0.88, 0.88, 0.86), (0.1, 0.25, 0.6), (0.55, 0.08, 0.06), (0.5, 0.52, 0.55), (0.15, 0.35, 0.2)]
CONSTRUCTION_PAINTS = [(0.92, 0.72, 0.05), (0.95, 0.45, 0.04), (0.9, 0.6, 0.02)]
BUS_PAINTS = [(0.7, 0.08, 0.06), (0.1, 0.3, 0.65), (0.88, 0.88, 0.85), (0.15, 0.45, 0.2)]
TRAILER_PAINTS = [(0.9, 0.9, 0.9), (0.6, 0.6, 0.62), (0.45, 0.3, 0.18), (0.3, 0.32, 0.35)]
CLOTHES = [(0.1, 0.1, 0.12), (0.2, 0.25, 0.45), (0.6, 0.1, 0.1), (0.7, 0.7, 0.65), (0.15, 0.4, 0.2),
           (0.5, 0.35, 0.2), (0.8, 0.6, 0.1), (0.35, 0.2, 0.45)]
SKIN = [(0.85, 0.65, 0.5), (0.6, 0.42, 0.3), (0.35, 0.22, 0.15)]
BIKE_PAINTS = [(0.85, 0.1, 0.1), (0.1, 0.4, 0.9), (0.1, 0.75, 0.3), (0.95, 0.85, 0.1), (0.1, 0.8, 0.85)]
MOTO_PAINTS = [(0.04, 0.04, 0.05), (0.2, 0.2, 0.22), (0.5, 0.03, 0.03), (0.05, 0.1, 0.3)]
FACADES = [(0.75, 0.68, 0.55), (0.55, 0.25, 0.18), (0.6, 0.6, 0.6), (0.85, 0.83, 0.78), (0.45, 0.42, 0.4)]
CONE_ORANGE = (0.98, 0.38, 0.03)
HIVIS = [(0.98, 0.5, 0.05), (0.85, 0.95, 0.1)]


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _paint_reflectivity(albedo) -> float:
    """Diffuse paint returns roughly in proportion to its brightness; dark cars are hard LiDAR targets."""
    return float(0.08 + 0.5 * np.mean(albedo))


def _lights(b: ShapeBuilder, mats: Materials, l: float, w: float, z: float, size: float = 0.12) -> None:
    """Head lights (white) at the front and tail lights (red) at the back, emissive so they show at night."""
    head = mats.add((0.9, 0.9, 0.8), 0.6, emissive=1.0)
    tail = mats.add((0.7, 0.05, 0.05), 0.6, emissive=0.6)
    for side in (-1, 1):
        y = side * (w / 2 - 0.25)
        b.box((l / 2 - 0.02, y - size, z - size / 2), (l / 2 + 0.01, y + size, z + size / 2), head)
        b.box((-l / 2 - 0.01, y - size, z - size / 2), (-l / 2 + 0.02, y + size, z + size / 2), tail)


def _body_glass_tyre(rng, mats: Materials, paints) -> tuple[int, int, int]:
    """The materials of a vehicle painted in one colour of `paints`: body, dark glass, tyres."""
    paint = _pick(rng, paints)
    body = mats.add(paint, _paint_reflectivity(paint))
    glass = mats.add((0.04, 0.05, 0.07), 0.05)
    tyre = mats.add((0.03, 0.03, 0.03), 0.05)
    return body, glass, tyre


def car(rng, mats: Materials, w: float, l: float, h: float) -> Shape:
    body, glass, tyre = _body_glass_tyre(rng, mats, CAR_PAINTS)
    b = ShapeBuilder()
    clear = 0.18 * h
    b.box((-l / 2, -w / 2, clear), (l / 2, w / 2, 0.6 * h), body)
    b.box((-0.32 * l, -0.44 * w, 0.6 * h), (0.2 * l, 0.44 * w, h), glass)
    b.box((-0.33 * l, -0.46 * w, 0.92 * h), (0.21 * l, 0.46 * w, h), body)  # roof
    for xw in (-0.32 * l, 0.32 * l):
        b.box((xw - 0.33, -w / 2, 0.0), (xw + 0.33, w / 2, clear + 0.05), tyre)
    _lights(b, mats, l, w, 0.45 * h)
    return b.build()


def truck(rng, mats: Materials, w: float, l: float, h: float, paint=None, cargo=None) -> Shape:
    """Cab at the front, a tall box body behind; the construction vehicle deliberately shares this layout."""
    paint = paint or _pick(rng, TRUCK_PAINTS)
    cargo = cargo or _pick(rng, [(0.9, 0.9, 0.88), (0.62, 0.63, 0.65), (0.45, 0.32, 0.2), paint])
    cab = mats.add(paint, _paint_reflectivity(paint))
    body = mats.add(cargo, _paint_reflectivity(cargo))
    glass = mats.add((0.04, 0.05, 0.07), 0.05)
    tyre = mats.add((0.03, 0.03, 0.03), 0.05)
    b = ShapeBuilder()
    cab_l = 0.24 * l
    b.box((l / 2 - cab_l, -w / 2, 0.35), (l / 2, w / 2, 0.62 * h), cab)
    b.box((l / 2 - cab_l, -0.48 * w, 0.62 * h), (l / 2 - 0.1, 0.48 * w, 0.82 * h), glass)
    b.box((l / 2 - cab_l, -w / 2, 0.82 * h), (l / 2 - 0.05, w / 2, 0.86 * h), cab)
    b.box((-l / 2, -w / 2, 0.9), (l / 2 - cab_l - 0.15, w / 2, h), body)
    for xw in (-0.35 * l, -0.15 * l, 0.35 * l):
        b.box((xw - 0.45, -w / 2, 0.0), (xw + 0.45, w / 2, 0.95), tyre)
    _lights(b, mats, l, w, 0.8)
    return b.build()


def construction_vehicle(rng, mats: Materials, w: float, l: float, h: float) -> Shape:
    """Same cab + body layout as a truck, painted yellow / orange, with a low dark bucket at the front."""
    paint = _pick(rng, CONSTRUCTION_PAINTS)
    shape = truck(rng, mats, w, l - 0.6, h, paint=paint, cargo=paint)
    bucket = mats.add((0.12, 0.12, 0.12), 0.12)
    b = ShapeBuilder()
    b.box(((l - 0.6) / 2, -0.45 * w, 0.1), (l / 2, 0.45 * w, 0.75), bucket)
    extra = b.build()
    shape.box = np.concatenate([shape.box - np.array([0.3, 0, 0, 0.3, 0, 0], np.float32), extra.box])
    shape.box_mat = np.concatenate([shape.box_mat, extra.box_mat])
    return shape


def bus(rng, mats: Materials, w: float, l: float, h: float) -> Shape:
    body, glass, tyre = _body_glass_tyre(rng, mats, BUS_PAINTS)
    b = ShapeBuilder()
    b.box((-l / 2, -w / 2, 0.35), (l / 2, w / 2, 0.55 * h), body)
    b.box((-l / 2 + 0.1, -0.49 * w, 0.55 * h), (l / 2 - 0.05, 0.49 * w, 0.88 * h), glass)
    b.box((-l / 2, -w / 2, 0.88 * h), (l / 2, w / 2, h), body)
    for xw in (-0.3 * l, 0.33 * l):
        b.box((xw - 0.5, -w / 2, 0.0), (xw + 0.5, w / 2, 0.45), tyre)
    _lights(b, mats, l, w, 0.7)
    return b.build()


def trailer(rng, mats: Materials, w: float, l: float, h: float) -> Shape:
    """A long box high off the ground, wheels at the back, a hitch bar at the front: no cab."""
    paint = _pick(rng, TRAILER_PAINTS)
    body = mats.add(paint, _paint_reflectivity(paint))
    dark = mats.add((0.05, 0.05, 0.05), 0.06)
    b = ShapeBuilder()
    b.box((-l / 2, -w / 2, 1.2), (l / 2 - 0.8, w / 2, h), body)
    b.box((l / 2 - 0.8, -0.1, 0.6), (l / 2, 0.1, 0.8), dark)
    b.box((-0.4 * l - 0.5, -w / 2, 0.0), (-0.25 * l + 0.5, w / 2, 1.2), dark)
    b.box((0.3 * l - 0.15, -0.2, 0.0), (0.3 * l + 0.15, 0.2, 1.2), dark)  # landing gear
    return b.build()


def _rider(b: ShapeBuilder, rng, mats: Materials, x: float, seat_z: float, top: float) -> None:
    clothes = mats.add(_pick(rng, CLOTHES), 0.3)
    skin = mats.add(_pick(rng, SKIN), 0.3)
    head_r = 0.11
    b.box((x - 0.17, -0.2, seat_z), (x + 0.17, 0.2, top - 2 * head_r), clothes)
    b.sph(x + 0.05, 0.0, top - head_r, head_r, skin)


def bicycle(rng, mats: Materials, w: float, l: float, h: float, with_rider: bool) -> Shape:
    paint = _pick(rng, BIKE_PAINTS)
    frame = mats.add(paint, _paint_reflectivity(paint))
    tyre = mats.add((0.03, 0.03, 0.03), 0.05)
    b = ShapeBuilder()
    wheel_r = 0.34
    for xw in (-l / 2 + wheel_r, l / 2 - wheel_r):
        b.box((xw - wheel_r, -0.03, 0.0), (xw + wheel_r, 0.03, 2 * wheel_r), tyre)
    b.box((-l / 2 + wheel_r, -0.04, 0.45), (l / 2 - wheel_r, 0.04, 0.85), frame)
    b.box((l / 2 - wheel_r - 0.05, -w / 2, 0.95), (l / 2 - wheel_r + 0.05, w / 2, 1.0), frame)  # handlebar
    if with_rider:
        _rider(b, rng, mats, -0.1, 0.85, h)
    return b.build()


def motorcycle(rng, mats: Materials, w: float, l: float, h: float, with_rider: bool) -> Shape:
    paint = _pick(rng, MOTO_PAINTS)
    body = mats.add(paint, _paint_reflectivity(paint))
    chrome = mats.add((0.75, 0.75, 0.78), 0.45)
    tyre = mats.add((0.03, 0.03, 0.03), 0.05)
    b = ShapeBuilder()
    wheel_r = 0.32
    for xw in (-l / 2 + wheel_r, l / 2 - wheel_r):
        b.box((xw - wheel_r, -0.07, 0.0), (xw + wheel_r, 0.07, 2 * wheel_r), tyre)
    b.box((-0.3 * l, -0.22 * w, 0.35), (0.3 * l, 0.22 * w, 0.95), body)
    b.box((0.1 * l, -0.3 * w, 0.25), (0.3 * l, 0.3 * w, 0.45), chrome)
    b.box((0.28 * l, -w / 2, 1.0), (0.32 * l, w / 2, 1.05), chrome)
    _lights(b, mats, 0.7 * l, 0.9 * w, 0.8, size=0.06)
    if with_rider:
        _rider(b, rng, mats, -0.1, 0.95, h)
    return b.build()


def pedestrian(rng, mats: Materials, w: float, l: float, h: float, hivis: bool = False) -> Shape:
    shirt = mats.add(_pick(rng, HIVIS) if hivis else _pick(rng, CLOTHES), 0.35 if hivis else 0.3)
    trousers = mats.add(_pick(rng, CLOTHES), 0.25)
    skin = mats.add(_pick(rng, SKIN), 0.3)
    b = ShapeBuilder()
    head_r = 0.1 * h / 1.75
    leg_top = 0.47 * h
    b.box((-0.12, -0.16, 0.0), (0.12, -0.02, leg_top), trousers)
    b.box((-0.12, 0.02, 0.0), (0.12, 0.16, leg_top), trousers)
    b.box((-0.14, -0.22, leg_top), (0.14, 0.22, h - 2 * head_r - 0.02), shirt)
    b.sph(0.0, 0.0, h - head_r, head_r, skin)
    return b.build()


def traffic_cone(rng, mats: Materials, w: float, l: float, h: float) -> Shape:
    """Stacked cylinders tapering upwards, orange with a white band: grey bollards have nearly this geometry."""
    orange = mats.add(CONE_ORANGE, 0.45)
    white = mats.add((0.95, 0.95, 0.95), 0.5)
    r = min(w, l) / 2
    b = ShapeBuilder()
    b.box((-r, -r, 0.0), (r, r, 0.04), orange)
    b.cyl(0, 0, 0.8 * r, 0.04, 0.4 * h, orange)
    b.cyl(0, 0, 0.58 * r, 0.4 * h, 0.62 * h, white)
    b.cyl(0, 0, 0.38 * r, 0.62 * h, h, orange)
    return b.build()


def barrier(rng, mats: Materials, w: float, l: float, h: float) -> Shape:
    """A striped plastic barrier; its long side is the box's width (local y), as in nuScenes."""
    colour = _pick(rng, [(0.85, 0.08, 0.05), (0.97, 0.45, 0.05)])
    panel = mats.add(colour, 0.42, texture=STRIPES)
    legs = mats.add((0.2, 0.2, 0.2), 0.1)
    b = ShapeBuilder()
    b.box((-0.12, -w / 2, 0.35 * h), (0.12, w / 2, h), panel)
    for yl in (-w / 2 + 0.1, w / 2 - 0.1):
        b.box((-l / 2, yl - 0.08, 0.0), (l / 2, yl + 0.08, 0.35 * h), legs)
    return b.build()


# ---- unannotated clutter ---------------------------------------------------------------------------------------


def bollard(rng, mats: Materials) -> Shape:
    """Cone-sized grey post: the LiDAR sees a traffic cone, the camera does not."""
    grey = mats.add(_pick(rng, [(0.25, 0.25, 0.27), (0.55, 0.55, 0.57), (0.08, 0.08, 0.08)]), 0.42)
    hgt = float(rng.uniform(0.85, 1.1))
    b = ShapeBuilder()
    b.cyl(0, 0, 0.16, 0.0, 0.45 * hgt, grey)
    b.cyl(0, 0, 0.12, 0.45 * hgt, 0.7 * hgt, grey)
    b.cyl(0, 0, 0.08, 0.7 * hgt, hgt, grey)
    return b.build()


def jersey_wall(rng, mats: Materials) -> Shape:
    """Concrete wall segment the size of a barrier, grey and unstriped."""
    concrete = mats.add((0.62, 0.61, 0.58), 0.4)
    b = ShapeBuilder()
    b.box((-0.3, -1.25, 0.0), (0.3, 1.25, 0.35), concrete)
    b.box((-0.15, -1.25, 0.35), (0.15, 1.25, 0.95), concrete)
    return b.build()


def hedge(rng, mats: Materials) -> Shape:
    leaves = mats.add((0.12, 0.32, 0.1), 0.35, texture=LEAVES)
    b = ShapeBuilder()
    b.box((-0.4, -float(rng.uniform(1.0, 2.5)), 0.0), (0.4, float(rng.uniform(1.0, 2.5)), float(rng.uniform(0.8, 1.2))),
          leaves)
    return b.build()


def pole(rng, mats: Materials) -> Shape:
    metal = mats.add((0.4, 0.4, 0.42), 0.35)
    lamp = mats.add((0.9, 0.88, 0.7), 0.5, emissive=1.0)
    hgt = float(rng.uniform(5.0, 8.0))
    b = ShapeBuilder()
    b.cyl(0, 0, 0.1, 0.0, hgt, metal)
    b.box((-0.3, -0.25, hgt - 0.25), (0.3, 0.25, hgt), lamp)
    return b.build()


def tree(rng, mats: Materials) -> Shape:
    bark = mats.add((0.3, 0.2, 0.12), 0.3)
    leaves = mats.add(_pick(rng, [(0.1, 0.35, 0.08), (0.18, 0.4, 0.1), (0.08, 0.25, 0.07)]), 0.35, texture=LEAVES)
    trunk = float(rng.uniform(2.0, 3.5))
    crown = float(rng.uniform(1.3, 2.6))
    b = ShapeBuilder()
    b.cyl(0, 0, 0.15, 0.0, trunk + 0.5 * crown, bark)
    b.sph(0, 0, trunk + crown, crown, leaves)
    return b.build()


def building(rng, mats: Materials, length: float, depth: float, height: float) -> Shape:
    facade = mats.add(_pick(rng, FACADES), 0.45, texture=WINDOWS)
    b = ShapeBuilder()
    b.box((-length / 2, -depth / 2, 0.0), (length / 2, depth / 2, height), facade)
    return b.build()
