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

from .raycast import Shape
from .shapes import MaterialTable

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
