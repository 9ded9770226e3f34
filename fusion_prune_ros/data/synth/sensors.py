"""The sensor rig (nuScenes channel names, nuScenes-like calibration) and the LiDAR / camera models.

Calibration follows the nuScenes vehicle: LIDAR_TOP on the roof with x right / y forward, six cameras (optical
frame: x right, y down, z forward) at the nuScenes positions and yaws, intrinsics of the 1600 x 900 nuScenes
cameras scaled to the chosen resolution. The sensor models are deliberately simple but physical enough to make
the modalities differ: LiDAR returns depend on reflectivity, incidence and range and suffer in rain; images depend
on light (night: dim, noisy, only headlights and lamps) and fog.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ...geometry import matrix_to_quat, rot_z
from ..classes import CAMERAS
from .raycast import Hits, render
from .shapes import LEAVES, STRIPES, WINDOWS
from .world import SceneWorld, ground_material

# nuScenes-like camera calibration: (position in the ego frame, yaw of the optical axis, fx at 1600 px, cx, cy).
_CAMERA_CALIB = {
    "CAM_FRONT": ((1.70, 0.016, 1.51), 0.0, 1266.4, 816.3, 491.5),
    "CAM_FRONT_RIGHT": ((1.55, -0.493, 1.50), np.deg2rad(-55.0), 1260.8, 808.0, 495.3),
    "CAM_FRONT_LEFT": ((1.52, 0.495, 1.51), np.deg2rad(55.0), 1272.6, 826.6, 479.8),
    "CAM_BACK": ((0.028, 0.003, 1.58), np.pi, 809.2, 829.2, 481.8),
    "CAM_BACK_LEFT": ((1.036, 0.485, 1.59), np.deg2rad(110.0), 1256.7, 817.8, 452.0),
    "CAM_BACK_RIGHT": ((1.029, -0.486, 1.58), np.deg2rad(-110.0), 1259.5, 807.3, 501.2),
}
LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)
LIDAR_YAW = -np.pi / 2  # nuScenes LIDAR_TOP: x to the right, y forward
LIDAR_ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)  # HDL-32E
LIDAR_MIN_RANGE = 1.0


@dataclass(frozen=True)
class CameraCalib:
    name: str
    translation: np.ndarray  # in the ego frame
    rotation: np.ndarray  # 3x3 ego <- camera (optical frame)
    intrinsic: np.ndarray  # 3x3
    width: int
    height: int


@dataclass(frozen=True)
class LidarCalib:
    translation: np.ndarray
    rotation: np.ndarray  # 3x3 ego <- lidar
    azimuth_steps: int
    max_range: float


def camera_calibs(width: int, height: int) -> list[CameraCalib]:
    sx, sy = width / 1600.0, height / 900.0
    out = []
    for name in CAMERAS:
        pos, yaw, f, cx, cy = _CAMERA_CALIB[name]
        # Optical frame axes expressed in the ego frame: x right, y down, z along the viewing direction.
        fwd = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
        down = np.array([0.0, 0.0, -1.0])
        k = np.array([[f * sx, 0.0, cx * sx], [0.0, f * sx, cy * sy], [0.0, 0.0, 1.0]])
        out.append(CameraCalib(name, np.array(pos), np.stack([right, down, fwd], 1), k, width, height))
    return out


def lidar_calib(azimuth_steps: int, max_range: float = 70.0) -> LidarCalib:
    return LidarCalib(np.array(LIDAR_TRANSLATION), rot_z(LIDAR_YAW), azimuth_steps, max_range)


def calib_quaternion(rotation: np.ndarray) -> list:
    return [float(v) for v in matrix_to_quat(rotation)]


def _objects_near(world: SceneWorld, t: float, origin: np.ndarray, radius: float):
    """Objects within `radius` of the sensor at time t, in the render() format (positions sensor-relative)."""
    out = []
    for i, a in enumerate(world.actors):
        x, y = a.position(t)
        extent = float(np.abs(a.bounds[:, :2]).max()) * 1.5
        if (x - origin[0]) ** 2 + (y - origin[1]) ** 2 < (radius + extent) ** 2:
            out.append((i, a.shape, (x - origin[0], y - origin[1]), -origin[2], a.yaw, a.bounds))
    return out


def _sensor_pose(world: SceneWorld, t: float, translation: np.ndarray, rotation: np.ndarray):
    ex, ey, eyaw = world.ego_pose(t)
    r_ego = rot_z(eyaw)
    origin = np.array([ex, ey, 0.0]) + r_ego @ translation
    return origin, r_ego @ rotation


# ---- LiDAR ------------------------------------------------------------------------------------------------------


class LidarModel:
    """A spinning 32-beam LiDAR: ray grid (beam x azimuth) in the sensor frame, returns with noise and dropout."""

    def __init__(self, calib: LidarCalib):
        self.calib = calib
        el = np.deg2rad(LIDAR_ELEVATIONS_DEG)
        az = (np.arange(calib.azimuth_steps) + 0.5) / calib.azimuth_steps * 2 * np.pi - np.pi
        self._el_step = el[1] - el[0]
        self._el0 = el[0]
        d = np.stack([np.cos(el)[:, None] * np.cos(az)[None], np.cos(el)[:, None] * np.sin(az)[None],
                      np.broadcast_to(np.sin(el)[:, None], (len(el), len(az)))], -1)
        self.dirs_sensor = d.astype(np.float32)

    def _rects(self, rotation: np.ndarray):
        n_az = self.calib.azimuth_steps
        n_el = len(LIDAR_ELEVATIONS_DEG)

        def rect_fn(corners: np.ndarray) -> list:
            p = corners @ rotation  # (K, 8, 3) in the sensor frame
            rxy = np.hypot(p[..., 0], p[..., 1])
            el = np.arctan2(p[..., 2], rxy)
            r0 = np.clip(np.floor((el.min(1) - self._el0) / self._el_step), 0, n_el).astype(int)
            r1 = np.clip(np.ceil((el.max(1) - self._el0) / self._el_step) + 1, 0, n_el).astype(int)
            az = np.sort(np.arctan2(p[..., 1], p[..., 0]), 1)
            gaps = np.diff(np.concatenate([az, az[:, :1] + 2 * np.pi], 1), axis=1)
            k = gaps.argmax(1)
            rows = np.arange(len(az))
            start = az[rows, (k + 1) % 8]
            span = 2 * np.pi - gaps[rows, k]
            c0 = np.floor((start + np.pi) / (2 * np.pi) * n_az).astype(int) - 1
            c1 = np.ceil((start + span + np.pi) / (2 * np.pi) * n_az).astype(int) + 1
            # Inside the object's angular hull (or right next to it): all azimuths.
            full = (span > np.pi) | (rxy.min(1) < 0.5)
            out = []
            for i in range(len(p)):
                a0, a1, b0, b1 = int(r0[i]), int(r1[i]), int(c0[i]), int(c1[i])
                if rxy[i].min() < 0.5:
                    out.append([(0, n_el, 0, n_az)])
                elif a1 <= a0:
                    out.append([])
                elif full[i]:
                    out.append([(a0, a1, 0, n_az)])
                elif b0 < 0:
                    out.append([(a0, a1, 0, b1), (a0, a1, n_az + b0, n_az)])
                elif b1 > n_az:
                    out.append([(a0, a1, b0, n_az), (a0, a1, 0, b1 - n_az)])
                else:
                    out.append([(a0, a1, b0, b1)])
            return out

        return rect_fn

    def scan(self, world: SceneWorld, t: float, rng: np.random.Generator) -> np.ndarray:
        """One sweep at time t: float32 N x 5 (x, y, z, intensity, ring) in the LIDAR_TOP frame."""
        cal = self.calib
        cond = world.condition
        origin, rot = _sensor_pose(world, t, cal.translation, cal.rotation)
        dirs = self.dirs_sensor @ rot.T.astype(np.float32)
        with np.errstate(divide="ignore"):
            t_ground = np.where(dirs[..., 2] < -1e-4, -origin[2] / dirs[..., 2], np.inf)
        t_init = np.minimum(t_ground, cal.max_range).astype(np.float32)
        hits, _ = render(dirs, _objects_near(world, t, origin, cal.max_range), self._rects(rot), t_init)
        hit = hits.t < cal.max_range
        ground = hit & (hits.obj < 0)
        refl = np.zeros(hits.t.shape, np.float32)
        normal = hits.normal
        normal[ground] = (0.0, 0.0, 1.0)
        gp = origin[:2] + hits.t[ground][:, None] * dirs[ground][:, :2]
        refl[ground] = ground_material(world, gp[:, 0], gp[:, 1])[1]
        on_obj = hit & ~ground
        refl[on_obj] = world.materials.reflectivity[hits.mat[on_obj]]
        cos = np.abs(normal[..., 0] * dirs[..., 0] + normal[..., 1] * dirs[..., 1] + normal[..., 2] * dirs[..., 2])
        rng_m = hits.t
        signal = refl * np.sqrt(np.maximum(cos, 0.02)) / (1.0 + (rng_m / 40.0) ** 2)
        p_return = (1.0 - np.exp(-signal * cond.lidar_sensitivity / 0.09)) * (1.0 - cond.lidar_dropout)
        if cond.lidar_attenuation > 0:
            p_return *= np.exp(-rng_m / cond.lidar_attenuation)
        keep = hit & (rng_m > LIDAR_MIN_RANGE) & (rng.random(rng_m.shape) < p_return)
        ring, col = np.nonzero(keep)
        dist = rng_m[ring, col] + rng.normal(0.0, cond.lidar_range_noise, len(ring)).astype(np.float32)
        xyz = self.dirs_sensor[ring, col] * dist[:, None]
        intensity = np.clip(refl[ring, col] * np.sqrt(cos[ring, col]) * 120.0 + rng.normal(0, 2.0, len(ring)), 0, 255)
        pts = [np.column_stack([xyz, intensity, ring]).astype(np.float32)]
        if cond.lidar_clutter:
            n = int(rng.poisson(cond.lidar_clutter))
            r = rng.integers(0, len(LIDAR_ELEVATIONS_DEG), n)
            c = rng.integers(0, cal.azimuth_steps, n)
            d = rng.uniform(LIDAR_MIN_RANGE, 8.0, n).astype(np.float32)
            pts.append(np.column_stack([self.dirs_sensor[r, c] * d[:, None], rng.uniform(0, 4, n), r]).astype(
                np.float32))
        return np.concatenate(pts)


# ---- cameras ----------------------------------------------------------------------------------------------------


class CameraModel:
    """A pinhole camera: one ray per pixel, Lambertian shading under the scene's light, fog, noise, JPEG."""

    def __init__(self, calib: CameraCalib):
        self.calib = calib
        u, v = np.meshgrid(np.arange(calib.width) + 0.5, np.arange(calib.height) + 0.5)
        k = calib.intrinsic
        d = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
        self.dirs_cam = (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)

    def _rect_fn(self, rotation: np.ndarray):
        k = self.calib.intrinsic
        w, h = self.calib.width, self.calib.height

        def rect_fn(corners: np.ndarray) -> list:
            p = corners @ rotation  # (K, 8, 3) in the camera frame
            z = p[..., 2]
            behind = z < 0.05
            zc = np.maximum(z, 0.05)
            u = k[0, 0] * p[..., 0] / zc + k[0, 2]
            v = k[1, 1] * p[..., 1] / zc + k[1, 2]
            c0 = np.clip(np.floor(u.min(1)), 0, w).astype(int)
            c1 = np.clip(np.ceil(u.max(1)) + 1, 0, w).astype(int)
            r0 = np.clip(np.floor(v.min(1)), 0, h).astype(int)
            r1 = np.clip(np.ceil(v.max(1)) + 1, 0, h).astype(int)
            out = []
            for i in range(len(p)):
                if behind[i].all():
                    out.append([])
                elif behind[i].any():  # crosses the image plane: its projection is unbounded
                    out.append([(0, h, 0, w)])
                elif c1[i] > c0[i] and r1[i] > r0[i]:
                    out.append([(int(r0[i]), int(r1[i]), int(c0[i]), int(c1[i]))])
                else:
                    out.append([])
            return out

        return rect_fn

    def shoot(self, world: SceneWorld, t: float, rng: np.random.Generator, count_own: frozenset = frozenset()):
        """Render at time t. Returns (RGB uint8 H x W x 3, Hits, own-hit counts of the objects in count_own)."""
        cal = self.calib
        origin, rot = _sensor_pose(world, t, cal.translation, cal.rotation)
        dirs = self.dirs_cam @ rot.T.astype(np.float32)
        far = 300.0
        with np.errstate(divide="ignore"):
            t_ground = np.where(dirs[..., 2] < -1e-4, -origin[2] / dirs[..., 2], np.inf)
        t_init = np.minimum(t_ground, far).astype(np.float32)
        objects = _objects_near(world, t, origin, 120.0)
        hits, own = render(dirs, objects, self._rect_fn(rot), t_init, count_own)
        image = self._shade(world, hits, dirs, origin, far, rng, t)
        return image, hits, own

    def _shade(self, world: SceneWorld, hits: Hits, dirs: np.ndarray, origin, far: float, rng, t: float) -> np.ndarray:
        cond = world.condition
        mats = world.materials
        h, w = hits.t.shape
        dist = hits.t.reshape(-1)
        d = dirs.reshape(-1, 3)
        obj_i = np.nonzero(hits.obj.reshape(-1) >= 0)[0]
        ground_i = np.nonzero((hits.obj.reshape(-1) < 0) & (dist < far))[0]
        sky_i = np.nonzero((hits.obj.reshape(-1) < 0) & (dist >= far))[0]
        albedo = np.zeros((h * w, 3), np.float32)
        light = np.full(h * w, cond.ambient, np.float32)
        sun = world.sun
        # Ground: flat, normal +z.
        gp = origin[:2] + dist[ground_i, None] * d[ground_i, :2]
        albedo[ground_i] = ground_material(world, gp[:, 0], gp[:, 1])[0]
        light[ground_i] += cond.diffuse * max(float(sun[2]), 0.0)
        # Objects, with procedural textures in the object's own frame.
        m = hits.mat.reshape(-1)[obj_i]
        a = mats.albedo[m]
        tex = mats.texture[m]
        loc = hits.local.reshape(-1, 3)[obj_i]
        white = (tex == STRIPES) & (np.mod(np.floor(loc[:, 1] / 0.4), 2) == 1)
        a[white] = (0.95, 0.95, 0.93)
        u = np.mod(loc[:, 0] + loc[:, 1], 3.2)
        zz = np.mod(loc[:, 2], 3.5)
        glass = (tex == WINDOWS) & (u > 0.7) & (u < 2.4) & (zz > 1.0) & (zz < 2.6) & (loc[:, 2] > 0.8)
        a[glass] = (0.08, 0.1, 0.14)
        leaves = tex == LEAVES
        if leaves.any():
            q = np.floor(loc[leaves] / 0.15).astype(np.int64)
            hsh = ((q[:, 0] * 73856093) ^ (q[:, 1] * 19349663) ^ (q[:, 2] * 83492791)) % 1000 / 1000.0
            a[leaves] *= (0.6 + 0.8 * hsh)[:, None].astype(np.float32)
        albedo[obj_i] = a
        n = hits.normal.reshape(-1, 3)[obj_i]
        light[obj_i] += cond.diffuse * np.maximum(n[:, 0] * sun[0] + n[:, 1] * sun[1] + n[:, 2] * sun[2], 0.0)
        # Ego headlights light up what is ahead at night; vehicle and street lights glow.
        if cond.headlights > 0:
            yaw = world.ego_pose(t)[2]
            cone = np.clip((d[:, 0] * np.cos(yaw) + d[:, 1] * np.sin(yaw) - 0.75) / 0.25, 0.0, 1.0)
            light += cond.headlights * cone / (1.0 + (dist / 11.0) ** 2)
        colour = albedo * light[:, None]
        glow = mats.emissive[m] * cond.light_gain * 3.0
        colour[obj_i] += a * glow[:, None]
        fog = np.exp(-np.minimum(dist, far) / cond.fog_distance)[:, None]
        colour = colour * fog + np.asarray(cond.fog_colour, np.float32) * (1.0 - fog)
        elev = np.clip(d[sky_i, 2], 0.0, 1.0)[:, None]
        colour[sky_i] = np.asarray(cond.sky_horizon, np.float32) * (1 - elev) + np.asarray(cond.sky_top,
                                                                                               np.float32) * elev
        colour += rng.standard_normal(colour.shape, dtype=np.float32) * np.float32(cond.image_noise)
        image = _GAMMA_LUT[(np.clip(colour, 0.0, 1.0) * (len(_GAMMA_LUT) - 1)).astype(np.int32)].reshape(h, w, 3)
        if cond.blur:
            image = cv2.GaussianBlur(image, (3, 3), 0.8)
        return image


_GAMMA_LUT = (np.linspace(0.0, 1.0, 4096) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def encode_jpeg(image_rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
