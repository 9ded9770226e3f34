"""Ray casting of a scene of objects built from boxes, vertical cylinders and spheres.

Both sensors are a grid of rays from one origin (a camera's pixels, a LiDAR's beams x azimuth steps). Testing every
ray against every object would cost O(rays x objects); instead each object is first mapped to the rectangle of the
ray grid that can see it (its projected bounding box), and only those rays are intersected, nearest objects
first, in one numba kernel (numpy's per-call overhead on these small batches cost more than the arithmetic).

Everything here works in the scene's local frame (ground plane z = 0) with coordinates relative to the sensor
origin, in float32.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from numba import njit


@dataclass
class Shape:
    """An object's geometry in its own frame: x forward, y left, z up from the ground.

    box: (P, 6) lo xyz, hi xyz; cyl: (P, 5) centre x, centre y, radius, z0, z1 (vertical axis);
    sph: (P, 4) centre xyz, radius. `*_mat` give each primitive's index into the scene's material table.
    """

    box: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.float32))
    box_mat: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    cyl: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    cyl_mat: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    sph: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    sph_mat: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def bounds(self) -> np.ndarray:
        """(2, 3) lo / hi corner of the axis-aligned bounding box in the object frame."""
        lo, hi = [], []
        if len(self.box):
            lo.append(self.box[:, :3].min(0))
            hi.append(self.box[:, 3:].max(0))
        if len(self.cyl):
            c = self.cyl
            lo.append(np.array([(c[:, 0] - c[:, 2]).min(), (c[:, 1] - c[:, 2]).min(), c[:, 3].min()]))
            hi.append(np.array([(c[:, 0] + c[:, 2]).max(), (c[:, 1] + c[:, 2]).max(), c[:, 4].max()]))
        if len(self.sph):
            s = self.sph
            lo.append((s[:, :3] - s[:, 3:4]).min(0))
            hi.append((s[:, :3] + s[:, 3:4]).max(0))
        return np.stack([np.min(lo, 0), np.max(hi, 0)]).astype(np.float32)


class ShapeBuilder:
    """Accumulates primitives for one `Shape`; materials are indices the caller allocates."""

    def __init__(self) -> None:
        self._box, self._box_mat = [], []
        self._cyl, self._cyl_mat = [], []
        self._sph, self._sph_mat = [], []

    def box(self, lo: Sequence[float], hi: Sequence[float], mat: int) -> "ShapeBuilder":
        self._box.append([*lo, *hi])
        self._box_mat.append(mat)
        return self

    def cyl(self, cx: float, cy: float, r: float, z0: float, z1: float, mat: int) -> "ShapeBuilder":
        self._cyl.append([cx, cy, r, z0, z1])
        self._cyl_mat.append(mat)
        return self

    def sph(self, cx: float, cy: float, cz: float, r: float, mat: int) -> "ShapeBuilder":
        self._sph.append([cx, cy, cz, r])
        self._sph_mat.append(mat)
        return self

    def build(self) -> Shape:
        def arr(rows, width):
            return np.asarray(rows, np.float32).reshape(-1, width)

        return Shape(arr(self._box, 6), np.asarray(self._box_mat, np.int32),
                     arr(self._cyl, 5), np.asarray(self._cyl_mat, np.int32),
                     arr(self._sph, 4), np.asarray(self._sph_mat, np.int32))


@dataclass
class Hits:
    """Per-ray result of a render: distance, object id (-1 none), material (-1 none), normal and hit point.

    `normal` is in the scene frame; `local` is the hit point in the hit object's own frame (for textures).
    """

    t: np.ndarray
    obj: np.ndarray
    mat: np.ndarray
    normal: np.ndarray
    local: np.ndarray


@njit(cache=True)
def _nearest_box(dx, dy, dz, o, box, box_mat, best, bm, nx, ny, nz):
    """The nearer of (best, bm, nx, ny, nz) and the ray's first hit on the boxes (slab test), as (distance,
    material, object-frame normal); o: ray origin, (dx, dy, dz): its direction, both in the object frame."""
    for p in range(box.shape[0]):
        tn = -np.inf
        tf = np.inf
        ax = 0
        sg = 0.0
        ok = True
        for a in range(3):
            da = dx if a == 0 else (dy if a == 1 else dz)
            oa = o[a]
            lo = box[p, a]
            hi = box[p, 3 + a]
            if da == 0.0:
                if oa < lo or oa > hi:
                    ok = False
                    break
                continue
            t1 = (lo - oa) / da
            t2 = (hi - oa) / da
            if t1 > t2:
                t1, t2 = t2, t1
            if t1 > tn:
                tn = t1
                ax = a
                sg = -1.0 if da > 0 else 1.0
            if t2 < tf:
                tf = t2
        if ok and tn <= tf and tn > 1e-3 and tn < best:
            best = tn
            bm = box_mat[p]
            nx = sg if ax == 0 else 0.0
            ny = sg if ax == 1 else 0.0
            nz = sg if ax == 2 else 0.0
    return best, bm, nx, ny, nz


@njit(cache=True)
def _nearest_cylinder(dx, dy, dz, o, cyl, cyl_mat, best, bm, nx, ny, nz):
    """As `_nearest_box`, for the vertical cylinders: their side, and their top for a ray going down."""
    for p in range(cyl.shape[0]):
        ox = o[0] - cyl[p, 0]
        oy = o[1] - cyl[p, 1]
        r = cyl[p, 2]
        aa = dx * dx + dy * dy
        if aa > 0.0:
            bb = 2.0 * (ox * dx + oy * dy)
            cc = ox * ox + oy * oy - r * r
            disc = bb * bb - 4.0 * aa * cc
            if disc >= 0.0:
                th = (-bb - np.sqrt(disc)) / (2.0 * aa)
                zh = o[2] + th * dz
                if th > 1e-3 and th < best and zh >= cyl[p, 3] and zh <= cyl[p, 4]:
                    best = th
                    bm = cyl_mat[p]
                    nx = (ox + th * dx) / r
                    ny = (oy + th * dy) / r
                    nz = 0.0
        if dz < 0.0:
            th = (cyl[p, 4] - o[2]) / dz
            px = ox + th * dx
            py = oy + th * dy
            if th > 1e-3 and th < best and px * px + py * py <= r * r:
                best = th
                bm = cyl_mat[p]
                nx = 0.0
                ny = 0.0
                nz = 1.0
    return best, bm, nx, ny, nz


@njit(cache=True)
def _nearest_sphere(dx, dy, dz, o, sph, sph_mat, best, bm, nx, ny, nz):
    """As `_nearest_box`, for the spheres."""
    for p in range(sph.shape[0]):
        ox = o[0] - sph[p, 0]
        oy = o[1] - sph[p, 1]
        oz = o[2] - sph[p, 2]
        r = sph[p, 3]
        bb = ox * dx + oy * dy + oz * dz
        cc = ox * ox + oy * oy + oz * oz - r * r
        disc = bb * bb - cc
        if disc >= 0.0:
            th = -bb - np.sqrt(disc)
            if th > 1e-3 and th < best:
                best = th
                bm = sph_mat[p]
                nx = (ox + th * dx) / r
                ny = (oy + th * dy) / r
                nz = (oz + th * dz) / r
    return best, bm, nx, ny, nz


@njit(cache=True)
def _trace(dirs, idx, o, c, s, box, box_mat, cyl, cyl_mat, sph, sph_mat, t, obj, mat, normal, local, oid,
           near, counting):
    """Intersect the rays dirs[idx] (scene frame) with one object's primitives; keep the nearer hits.

    o: sensor origin in the object frame; (c, s): cos / sin of the object's yaw. Rays whose current distance is
    not beyond `near` (the object's nearest possible point) are skipped unless `counting`, because then every
    ray's own hit is needed (visibility ignoring occlusion). Returns the number of rays hitting the object.
    """
    own = 0
    for k in range(idx.shape[0]):
        i = idx[k]
        if not counting and t[i] <= near:
            continue
        wx, wy, dz = dirs[i, 0], dirs[i, 1], dirs[i, 2]
        dx = c * wx + s * wy
        dy = -s * wx + c * wy
        best, bm, nx, ny, nz = _nearest_box(dx, dy, dz, o, box, box_mat, np.inf, -1, 0.0, 0.0, 0.0)
        best, bm, nx, ny, nz = _nearest_cylinder(dx, dy, dz, o, cyl, cyl_mat, best, bm, nx, ny, nz)
        best, bm, nx, ny, nz = _nearest_sphere(dx, dy, dz, o, sph, sph_mat, best, bm, nx, ny, nz)
        if bm < 0:
            continue
        own += 1
        if best < t[i]:
            t[i] = best
            obj[i] = oid
            mat[i] = bm
            normal[i, 0] = c * nx - s * ny
            normal[i, 1] = s * nx + c * ny
            normal[i, 2] = nz
            local[i, 0] = o[0] + best * dx
            local[i, 1] = o[1] + best * dy
            local[i, 2] = o[2] + best * dz
    return own


# Maps the bounding-box corners of K objects (K, 8, 3; sensor-relative, scene-aligned) to, per object, a list of
# (row0, row1, col0, col1) rectangles of the ray grid that may see it.
RectFn = Callable[[np.ndarray], list]


def box_corners_batch(pos: np.ndarray, z: np.ndarray, yaw: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(K, 8, 3) corners of K objects' bounding boxes (bounds (K, 2, 3) in their frames) placed at pos / z / yaw."""
    sel = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]])
    local = bounds[:, sel, np.arange(3)]  # (K, 8, 3): corner i takes lo or hi per axis
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = pos[:, 0:1] + c * local[..., 0] - s * local[..., 1]
    y = pos[:, 1:2] + s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, z[:, None] + local[..., 2]], -1)


def render(dirs: np.ndarray, objects: Sequence, rect_fn: RectFn, t_init: np.ndarray,
           count_own: frozenset = frozenset()) -> tuple[Hits, np.ndarray]:
    """Cast the ray grid `dirs` (H, W, 3; unit, scene-aligned, origin at the sensor) against objects.

    t_init (H, W) is the distance at which each ray already ends (the ground, or the sensor's range): objects hit
    beyond it are hidden. objects: sequence of (object id, Shape, (x, y) relative to the sensor, z of the object's
    ground relative to the sensor, yaw, Shape.bounds()). rect_fn maps an object's 8 bounding corners (relative to
    the sensor, scene-aligned) to a list of (row0, row1, col0, col1) rectangles of the grid that may see it.
    Returns the hits, and for the object ids in `count_own` the number of rays hitting them ignoring occlusion (for
    the visibility of an annotation), as an array indexed by object id.
    """
    h, w, _ = dirs.shape
    t = t_init.astype(np.float32, copy=True).reshape(-1)
    obj = np.full(h * w, -1, np.int32)
    mat = np.full(h * w, -1, np.int32)
    normal = np.zeros((h * w, 3), np.float32)
    local = np.zeros((h * w, 3), np.float32)
    flat_dirs = np.ascontiguousarray(dirs.reshape(-1, 3), dtype=np.float32)
    max_id = max((o[0] for o in objects), default=-1)
    own = np.zeros(max_id + 1, np.int64)
    if not objects:
        return Hits(t.reshape(h, w), obj.reshape(h, w), mat.reshape(h, w), normal.reshape(h, w, 3),
                    local.reshape(h, w, 3)), own
    pos = np.array([o[2] for o in objects], np.float64)
    zs = np.array([o[3] for o in objects], np.float64)
    yaws = np.array([o[4] for o in objects], np.float64)
    bounds = np.stack([o[5] for o in objects]).astype(np.float64)
    rects = rect_fn(box_corners_batch(pos, zs, yaws, bounds))
    # Near objects first: a ray that already ends closer than an object's nearest point cannot hit it.
    near_dist = np.maximum(0.0, np.hypot(pos[:, 0], pos[:, 1]) - np.abs(bounds[:, :, :2]).max((1, 2)) * 1.42)
    cos, sin = np.cos(yaws), np.sin(yaws)
    for k in np.argsort(near_dist, kind="stable"):
        oid, shape = objects[k][0], objects[k][1]
        c, s = float(cos[k]), float(sin[k])
        x, y = pos[k]
        # The sensor origin in the object frame (rotated by -yaw about z).
        o_local = np.array([-(c * x + s * y), -(-s * x + c * y), -zs[k]], np.float64)
        for r0, r1, c0, c1 in rects[k]:
            if r1 <= r0 or c1 <= c0:
                continue
            idx = (np.arange(r0, r1)[:, None] * w + np.arange(c0, c1)[None, :]).reshape(-1)
            own[oid] += _trace(flat_dirs, idx, o_local, c, s, shape.box, shape.box_mat, shape.cyl, shape.cyl_mat,
                               shape.sph, shape.sph_mat, t, obj, mat, normal, local, oid, float(near_dist[k]),
                               oid in count_own)
    return Hits(t.reshape(h, w), obj.reshape(h, w), mat.reshape(h, w), normal.reshape(h, w, 3),
                local.reshape(h, w, 3)), own
