"""`fusion-prune synth`: write a generated data set in the nuScenes format.

Scenes are independent, so they render in parallel worker processes; each scene's randomness derives from
(seed, scene name) only, so the result does not depend on the number of workers. The set is written to
`<out>.partial` and renamed at the end: an interrupted or failed run leaves nothing behind that looks complete.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from nuscenes.utils import splits as nusc_splits
from tqdm import tqdm

from ... import __version__
from ...atomic import built_in_place
from ...config import to_dict
from ...errors import UserError
from ...geometry import points_in_boxes, yaw_to_quat
from ..classes import CAMERAS, LIDAR
from .sensors import CameraModel, LidarModel, calib_quaternion, camera_calibs, encode_jpeg, lidar_calib
from ..schema import LOCATIONS, TABLE_NAMES, make_token, static_tables, visibility_token
from .layout import sample_world
from .world import CONDITION_CYCLE, PARKING, ROAD_HALF, SceneWorld

VERSIONS = ("v1.0-mini", "v1.0-trainval")
LIDAR_HZ = 20
CAMERA_HZ = 12
KEYFRAME_HZ = 2
ANNOTATION_RANGE = 70.0
MAP_RESOLUTION = 0.1


@dataclass
class SynthConfig:
    """What to generate. Scene names come from the official splits of `version`."""

    version: str = "v1.0-mini"
    train_scenes: int = 8
    val_scenes: int = 2
    scene_seconds: float = 10.0
    seed: int = 0
    image_width: int = 400
    image_height: int = 225
    lidar_azimuth_steps: int = 1000
    lidar_sweeps_before_first_keyframe: int = 9
    camera_sweeps: bool = True
    jpeg_quality: int = 90
    workers: int = 0  # 0: one per CPU core


@dataclass(frozen=True)
class SceneSpec:
    name: str
    split: str
    index: int
    condition: str


def scene_specs(cfg: SynthConfig) -> list[SceneSpec]:
    """Validation scenes first, so that small sets still have both splits and mixed conditions."""
    if cfg.version == "v1.0-mini":
        train, val = nusc_splits.mini_train, nusc_splits.mini_val
        split_names = ("mini_train", "mini_val")
    elif cfg.version == "v1.0-trainval":
        train, val = nusc_splits.train, nusc_splits.val
        split_names = ("train", "val")
    else:
        raise UserError(f"unknown version {cfg.version!r}: expected one of {', '.join(VERSIONS)}")
    if not 0 <= cfg.train_scenes <= len(train) or not 0 <= cfg.val_scenes <= len(val):
        raise UserError(f"{cfg.version} has {len(train)} train and {len(val)} val scene names; asked for "
                        f"{cfg.train_scenes} and {cfg.val_scenes}")
    if cfg.train_scenes + cfg.val_scenes == 0:
        raise UserError("asked for no scenes")
    names = [(n, split_names[1]) for n in val[:cfg.val_scenes]] + [(n, split_names[0]) for n in train[:cfg.train_scenes]]
    return [SceneSpec(n, s, i, CONDITION_CYCLE[i % len(CONDITION_CYCLE)]) for i, (n, s) in enumerate(names)]


def _rng(cfg: SynthConfig, spec: SceneSpec, *parts: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, zlib.crc32(spec.name.encode()), *parts])


def _camera_offset(cam_index: int) -> float:
    """As in nuScenes: a camera fires when the spinning LiDAR sweeps across its field of view, and a LiDAR sweep is
    stamped when its turn completes, so each key-frame image precedes its LiDAR stamp by up to one turn (50 ms).
    A causal node then finds, at each LiDAR stamp, the very images the offline sample uses."""
    return -0.05 + (cam_index + 0.5) / len(CAMERAS) * 0.05


class _SceneWriter:
    """Renders one scene and collects its table rows; files go under `root`."""

    def __init__(self, cfg: SynthConfig, spec: SceneSpec, root: Path, progress):
        self.cfg, self.spec, self.root, self.progress = cfg, spec, root, progress
        self.seed = cfg.seed
        self.rows = {name: [] for name in TABLE_NAMES}
        self.world: SceneWorld = sample_world(_rng(cfg, spec, 0), spec.condition, cfg.scene_seconds,
                                              cfg.lidar_sweeps_before_first_keyframe / LIDAR_HZ)
        day = 20 + spec.index % 8
        self.log_name = f"n015-2018-07-{day:02d}-11-{spec.index % 60:02d}-00+0800"
        self.t0_us = 1532402927000000 + spec.index * 3_600_000_000
        self.tok = lambda *parts: make_token(self.seed, spec.name, *parts)

    def us(self, t: float) -> int:
        return self.t0_us + int(round(t * 1e6))

    # -- poses and calibration ----------------------------------------------------------------------------------

    def ego_pose(self, t: float) -> str:
        x, y, yaw = self.world.ego_pose(t)
        g = self.world.to_global(np.array([x, y]))
        token = self.tok("ego_pose", round(t, 6))
        self.rows["ego_pose"].append({"token": token, "timestamp": self.us(t),
                                      "rotation": [float(v) for v in yaw_to_quat(self.world.heading + yaw)],
                                      "translation": [float(g[0]), float(g[1]), 0.0]})
        return token

    def calibrations(self, lidar, cameras) -> dict:
        sensors = {r["channel"]: r["token"] for r in static_tables(self.seed)["sensor"]}
        out = {}
        for ch, translation, rotation, intrinsic in [(LIDAR, lidar.translation, lidar.rotation, [])] + [
                (c.name, c.translation, c.rotation, c.intrinsic.tolist()) for c in cameras]:
            token = self.tok("calibrated_sensor", ch)
            self.rows["calibrated_sensor"].append({
                "token": token, "sensor_token": sensors[ch], "translation": [float(v) for v in translation],
                "rotation": calib_quaternion(rotation), "camera_intrinsic": intrinsic})
            out[ch] = token
        return out

    # -- the scene ----------------------------------------------------------------------------------------------

    def run(self) -> dict:
        cfg, world = self.cfg, self.world
        n_key = max(1, int(round(cfg.scene_seconds * KEYFRAME_HZ)))
        key_times = np.arange(n_key) / KEYFRAME_HZ
        log_token, scene_token = self.tok("log"), self.tok("scene")
        sample_tokens = [self.tok("sample", k) for k in range(n_key)]
        for k, t in enumerate(key_times):
            self.rows["sample"].append({"token": sample_tokens[k], "timestamp": self.us(t),
                                        "prev": sample_tokens[k - 1] if k else "",
                                        "next": sample_tokens[k + 1] if k + 1 < n_key else "",
                                        "scene_token": scene_token})
        lcal = lidar_calib(cfg.lidar_azimuth_steps)
        ccal = camera_calibs(cfg.image_width, cfg.image_height)
        calib_tokens = self.calibrations(lcal, ccal)
        annotated = world.annotated()
        visible = np.zeros((n_key, len(world.actors)))
        own = np.zeros((n_key, len(world.actors)))
        lidar_pts = {}

        # LiDAR: 20 Hz from the pre-roll to the last key frame; every 10th sweep is a key frame.
        pre = cfg.lidar_sweeps_before_first_keyframe
        lidar = LidarModel(lcal)
        lidar_times = (np.arange(pre + (n_key - 1) * LIDAR_HZ // KEYFRAME_HZ + 1) - pre) / LIDAR_HZ
        chain = []
        for i, t in enumerate(lidar_times):
            key = i >= pre and (i - pre) % (LIDAR_HZ // KEYFRAME_HZ) == 0
            points = lidar.scan(world, float(t), _rng(cfg, self.spec, 1, i))
            k = (i - pre) // (LIDAR_HZ // KEYFRAME_HZ) if key else None
            if key:
                lidar_pts[k] = self._count_points(points, float(t), lcal, annotated)
            chain.append(self._sample_data(LIDAR, float(t), key, k, calib_tokens[LIDAR], "pcd", points.tobytes(),
                                           key_times, 0, 0))
            self.progress.put(1)
        self._link(chain)

        # Cameras: 12 Hz (key frames only without camera sweeps); the frame nearest each key frame is the key one.
        for ci, cam_cal in enumerate(ccal):
            cam = CameraModel(cam_cal)
            per_key = CAMERA_HZ // KEYFRAME_HZ
            first = -int(np.floor(pre / LIDAR_HZ * CAMERA_HZ))
            frames = range(first, (n_key - 1) * per_key + 1) if cfg.camera_sweeps else range(0, n_key * per_key,
                                                                                          per_key)
            chain = []
            for j in frames:
                t = j / CAMERA_HZ + _camera_offset(ci)
                key = j >= 0 and j % per_key == 0
                k = j // per_key if key else None
                image, hits, own_hits = cam.shoot(world, t, _rng(cfg, self.spec, 2 + ci, j + 1000),
                                                  frozenset(annotated) if key else frozenset())
                if key:
                    ids = hits.obj[hits.obj >= 0]
                    visible[k, :] += np.bincount(ids, minlength=len(world.actors))[:len(world.actors)]
                    own[k, :len(own_hits)] += own_hits
                chain.append(self._sample_data(cam_cal.name, t, key, k, calib_tokens[cam_cal.name], "jpg",
                                               encode_jpeg(image, cfg.jpeg_quality), key_times, cam_cal.width,
                                               cam_cal.height))
                self.progress.put(1)
            self._link(chain)

        self._annotations(key_times, sample_tokens, annotated, lidar_pts, visible, own)
        self._scene_records(log_token, scene_token, sample_tokens)
        return self.rows

    def _sample_data(self, channel, t, key, k, calib_token, fmt, payload: bytes, key_times, width, height) -> dict:
        ts = self.us(t)
        folder = "samples" if key else "sweeps"
        ext = "pcd.bin" if fmt == "pcd" else "jpg"
        filename = f"{folder}/{channel}/{self.log_name}__{channel}__{ts}.{ext}"
        (self.root / filename).write_bytes(payload)
        # Sweeps belong to the next key frame's sample (the last ones to the last sample), as in nuScenes.
        owner = k if key else int(min(np.searchsorted(key_times, t), len(key_times) - 1))
        rec = {"token": self.tok("sample_data", channel, ts), "sample_token": self.tok("sample", owner),
               "ego_pose_token": self.ego_pose(t), "calibrated_sensor_token": calib_token, "timestamp": ts,
               "fileformat": fmt, "is_key_frame": bool(key), "height": height, "width": width,
               "filename": filename, "prev": "", "next": ""}
        self.rows["sample_data"].append(rec)
        return rec

    @staticmethod
    def _link(chain: list) -> None:
        for a, b in zip(chain, chain[1:]):
            a["next"], b["prev"] = b["token"], a["token"]

    def _count_points(self, points: np.ndarray, t: float, lcal, annotated) -> np.ndarray:
        """num_lidar_pts: returns of the key-frame sweep inside each annotation box (nuScenes' definition)."""
        world = self.world
        ex, ey, eyaw = world.ego_pose(t)
        c, s = np.cos(eyaw), np.sin(eyaw)
        r_ego = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        origin = np.array([ex, ey, 0.0]) + r_ego @ lcal.translation
        local = points[:, :3] @ (r_ego @ lcal.rotation).T + origin
        acts = [world.actors[i] for i in annotated]
        centres = np.array([[*a.position(t), a.size[2] / 2] for a in acts]).reshape(-1, 3)
        sizes = np.array([a.size for a in acts]).reshape(-1, 3)
        yaws = np.array([a.yaw for a in acts])
        return points_in_boxes(local, centres, sizes, yaws).sum(1)

    def _annotations(self, key_times, sample_tokens, annotated, lidar_pts, visible, own) -> None:
        world = self.world
        st = static_tables(self.seed)
        cat_tok = {r["name"]: r["token"] for r in st["category"]}
        attr_tok = {r["name"]: r["token"] for r in st["attribute"]}
        per_instance: dict[int, list] = {}
        for k, t in enumerate(key_times):
            ex, ey, _ = world.ego_pose(float(t))
            for n, i in enumerate(annotated):
                a = world.actors[i]
                x, y = a.position(float(t))
                if (x - ex) ** 2 + (y - ey) ** 2 > ANNOTATION_RANGE ** 2:
                    continue
                g = world.to_global(np.array([x, y]))
                frac = visible[k, i] / own[k, i] if own[k, i] > 0 else 0.0
                rec = {"token": self.tok("sample_annotation", i, k), "sample_token": sample_tokens[k],
                       "instance_token": self.tok("instance", i), "visibility_token": visibility_token(frac),
                       "attribute_tokens": [attr_tok[a.attribute]] if a.attribute else [],
                       "translation": [float(g[0]), float(g[1]), a.size[2] / 2],
                       "size": [round(v, 4) for v in a.size],
                       "rotation": [float(v) for v in yaw_to_quat(world.heading + a.yaw)],
                       "prev": "", "next": "", "num_lidar_pts": int(lidar_pts[k][n]), "num_radar_pts": 0}
                self.rows["sample_annotation"].append(rec)
                per_instance.setdefault(i, []).append(rec)
        for i, recs in per_instance.items():
            self._link(recs)
            self.rows["instance"].append({"token": self.tok("instance", i),
                                          "category_token": cat_tok[world.actors[i].category],
                                          "nbr_annotations": len(recs), "first_annotation_token": recs[0]["token"],
                                          "last_annotation_token": recs[-1]["token"]})

    def _scene_records(self, log_token, scene_token, sample_tokens) -> None:
        spec, world = self.spec, self.world
        location = LOCATIONS[spec.index % len(LOCATIONS)]
        self.rows["log"].append({"token": log_token, "logfile": self.log_name, "vehicle": "n015",
                                 "date_captured": self.log_name[5:15], "location": location})
        self.rows["scene"].append({
            "token": scene_token, "log_token": log_token, "nbr_samples": len(sample_tokens),
            "first_sample_token": sample_tokens[0], "last_sample_token": sample_tokens[-1], "name": spec.name,
            "description": f"generated, {spec.condition}, {'intersection' if world.cross_x is not None else 'street'}"
                           f", ego {world.ego_speed:.1f} m/s"})
        map_token = self.tok("map")
        filename = f"maps/{map_token}.png"
        cv2.imwrite(str(self.root / filename), self._map_mask())
        self.rows["map"].append({"token": map_token, "log_tokens": [log_token], "category": "semantic_prior",
                                 "filename": filename})

    def _map_mask(self) -> np.ndarray:
        """Drivable area (roads and parking strips) in global coordinates, 0.1 m per pixel, origin bottom-left."""
        world = self.world
        w_px, h_px = (int(np.ceil(v / MAP_RESOLUTION)) for v in world.map_size)
        mask = np.zeros((h_px, w_px), np.uint8)
        x_lo, x_hi = world.x_range
        polys = [np.array([[x_lo - 80, -PARKING[1]], [x_hi + 80, -PARKING[1]], [x_hi + 80, PARKING[1]],
                           [x_lo - 80, PARKING[1]]])]
        if world.cross_x is not None:
            cx = world.cross_x
            polys.append(np.array([[cx - ROAD_HALF, -80], [cx + ROAD_HALF, -80], [cx + ROAD_HALF, 80],
                                   [cx - ROAD_HALF, 80]]))
        for p in polys:
            g = world.to_global(p)
            px = np.stack([g[:, 0] / MAP_RESOLUTION, h_px - g[:, 1] / MAP_RESOLUTION], 1)
            cv2.fillPoly(mask, [np.round(px).astype(np.int32)], 255)
        return mask


def _render_scene(args) -> dict:
    cfg, spec, root, progress = args
    return _SceneWriter(cfg, spec, Path(root), progress).run()


def generate(cfg: SynthConfig, out: str | Path, quiet: bool = False) -> dict:
    """Generate the set into `out` (which must not exist). Returns a summary with timings and sizes."""
    out = Path(out)
    if out.exists():
        raise UserError(f"output directory already exists: {out} (choose another --out or remove it)")
    specs = scene_specs(cfg)
    if cfg.image_width < 32 or cfg.image_height < 32 or cfg.scene_seconds < 0.5:
        raise UserError("image size must be at least 32 x 32 and scenes at least 0.5 s long")
    start = time.time()
    with built_in_place(out) as partial:
        for folder in ("samples", "sweeps"):
            for ch in (LIDAR, *CAMERAS):
                (partial / folder / ch).mkdir(parents=True)
        (partial / "maps").mkdir()
        (partial / cfg.version).mkdir()
        rows = _render_all(cfg, specs, partial, quiet)
        tables = static_tables(cfg.seed)
        for name in TABLE_NAMES:
            tables.setdefault(name, [])
            for scene_rows in rows:
                tables[name].extend(scene_rows.get(name, []))
        for name in TABLE_NAMES:
            with open(partial / cfg.version / f"{name}.json", "w") as f:
                json.dump(tables[name], f, indent=0)
        seconds = time.time() - start
        size = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file())
        summary = {"generator": f"fusion_prune_ros {__version__}", "config": to_dict(cfg),
                   "scenes": [{"name": s.name, "split": s.split, "condition": s.condition} for s in specs],
                   "samples": len(tables["sample"]), "sample_data": len(tables["sample_data"]),
                   "annotations": len(tables["sample_annotation"]), "seconds": round(seconds, 1),
                   "bytes": size}
        (partial / "synth.json").write_text(json.dumps(summary, indent=1))
    return summary


def _render_all(cfg: SynthConfig, specs: list, root: Path, quiet: bool) -> list:
    workers = cfg.workers or os.cpu_count() or 1
    n_key = max(1, int(round(cfg.scene_seconds * KEYFRAME_HZ)))
    pre = cfg.lidar_sweeps_before_first_keyframe
    n_lidar = pre + (n_key - 1) * LIDAR_HZ // KEYFRAME_HZ + 1
    per_key = CAMERA_HZ // KEYFRAME_HZ
    n_cam = ((n_key - 1) * per_key + 1 + int(np.floor(pre / LIDAR_HZ * CAMERA_HZ))) if cfg.camera_sweeps else n_key
    total = len(specs) * (n_lidar + len(CAMERAS) * n_cam)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, tqdm(total=total, unit="frame", desc="synth", disable=quiet,
                                        mininterval=1.0) as bar:
        progress = manager.Queue()
        pool = ctx.Pool(min(workers, len(specs)))
        try:  # multiprocessing.Pool, not an executor: on failure or interrupt, terminate() stops the workers now
            results = [pool.apply_async(_render_scene, ((cfg, s, str(root), progress),)) for s in specs]
            while not all(r.ready() for r in results):
                _drain(progress, bar, timeout=0.5)
                for r in results:
                    if r.ready() and not r.successful():
                        r.get()  # re-raises the worker's exception
            _drain(progress, bar, timeout=0.0)
            return [r.get() for r in results]
        finally:
            pool.terminate()
            pool.join()


def _drain(queue, bar, timeout: float) -> None:
    import queue as queue_mod
    try:
        n = queue.get(timeout=timeout) if timeout else queue.get_nowait()
        bar.update(n)
        while True:
            bar.update(queue.get_nowait())
    except queue_mod.Empty:
        pass
