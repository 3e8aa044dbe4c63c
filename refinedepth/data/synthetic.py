"""Procedurally rendered RGB-D scenes with exact depth: the embedded dataset (SPEC §4).

Each sample is ray cast with NumPy through a pinhole camera against a handful of analytic
primitives (planes, yaw-rotated boxes, spheres), so depth is exact (z-depth, in metres) and no file
is read or downloaded. Two families:

* ``indoor`` (max depth 10 m): a closed room (textured floor, walls, ceiling) with furniture-like
  boxes, balls and pictures on the walls, lit by an ambient term, a directional light and a ceiling
  lamp whose light falls off with distance and casts shadows. Every pixel is valid.
* ``outdoor`` (max depth 80 m): a ground plane with grass and a road, buildings, cars and trees,
  a sun with shadows, distance fog, and a sky at ``max_depth`` (or invalid with ``sky="invalid"``).

The pictures carry the cues a CNN uses to infer depth: perspective of textured planes, texture
gradients (textures are band-limited by the pixel footprint, so they fade with distance instead of
aliasing), shading and light fall-off, shadows at contact points, fog. One camera (60 degrees
across by default) and a narrow range of camera heights and pitches, as in a dataset recorded with
one sensor, keep the scale of a scene inferable from the picture.

Determinism: sample ``i`` of a split is rendered from ``SeedSequence([seed, family, split, i])``,
so it is the same whatever the dataset's length or ``limit``, and train and test never share a
scene. Rendering a 240x320 sample takes a few milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .base import DepthDataset, Sample, check_split

FAMILIES = {"indoor": 1, "outdoor": 2}
MAX_DEPTH = {"indoor": 10.0, "outdoor": 80.0}
_SPLIT_CODE = {"train": 0, "test": 1}
DEFAULT_SIZE = (240, 320)
DEFAULT_COUNTS = {"train": 1000, "test": 200}
# One camera for the whole dataset, as with a real sensor (a Kinect sees about 58 degrees across):
# a varying field of view would make the scale of a scene ambiguous from the picture alone.
DEFAULT_FOV = 60.0

_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# Scene description


@dataclass
class _Material:
    kind: str  # plain | noise | checker | stripes | planks | tiles | grass
    color: np.ndarray  # (3,) linear albedo
    color2: np.ndarray  # (3,) second colour (checker, stripes, grout...)
    period: float  # metres
    amount: float  # texture contrast in [0, 1]
    angle: float = 0.0  # rotation of the texture in its plane


@dataclass
class _Road:
    """A straight road along z on the outdoor ground: asphalt, a dashed centre line, edge lines."""

    x: float  # centre
    half_width: float
    color: np.ndarray
    dash_period: float  # metres per dash + gap


@dataclass
class _Box:
    center: np.ndarray  # (3,)
    half: np.ndarray  # (3,) half extents in the box's own frame
    yaw: float
    material: _Material


@dataclass
class _Sphere:
    center: np.ndarray
    radius: float
    material: _Material


@dataclass
class _Scene:
    family: str
    max_depth: float
    # camera
    origin: np.ndarray
    rotation: np.ndarray  # camera -> world, columns are camera axes (x right, y up, z forward)
    focal: float
    # geometry
    room: tuple[np.ndarray, np.ndarray] | None  # (min corner, max corner), camera inside
    room_materials: dict  # face name -> _Material
    ground: _Material | None  # outdoor ground plane y = 0
    boxes: list
    spheres: list
    # light
    ambient: float
    sun_dir: np.ndarray  # unit vector towards the directional light
    sun_power: float
    lamp_pos: np.ndarray | None
    lamp_power: float
    lamp_radius: float
    tint: np.ndarray
    fog_distance: float
    horizon: np.ndarray
    zenith: np.ndarray
    exposure: float
    road: _Road | None = None


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _camera(yaw: float, pitch: float, roll: float, fov_deg: float, width: int) -> tuple[np.ndarray, float]:
    """Camera-to-world rotation and focal length (pixels) for a horizontal field of view.

    Positive pitch looks up: rotating the forward axis (0, 0, 1) about x by ``-pitch`` lifts it.
    """
    rotation = _rot_y(yaw) @ _rot_x(-pitch) @ _rot_z(roll)
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return rotation, focal


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float64)


def _random_color(rng, sat=(0.1, 0.7), val=(0.25, 0.9), hue=None) -> np.ndarray:
    h = rng.random() if hue is None else hue % 1.0
    return _hsv(h, rng.uniform(*sat), rng.uniform(*val))


def _material(rng, kinds, period=(0.2, 0.8), sat=(0.1, 0.7), val=(0.3, 0.9), base=None) -> _Material:
    kind = kinds[rng.integers(len(kinds))]
    color = _random_color(rng, sat, val) if base is None else base
    # the second colour is a darker or lighter variant of the first, sometimes another hue
    if rng.random() < 0.3:
        color2 = _random_color(rng, sat, val)
    else:
        color2 = np.clip(color * rng.uniform(0.45, 0.8), 0, 1)
    return _Material(
        kind=kind,
        color=color,
        color2=color2,
        period=float(rng.uniform(*period)),
        amount=float(rng.uniform(0.5, 1.0)),
        angle=float(rng.choice([0.0, math.pi / 2, rng.uniform(0, math.pi)])),
    )


def _indoor_scene(rng: np.random.Generator, size: tuple[int, int], fov: float) -> _Scene:
    w_img = size[1]
    # Room extents keep the farthest corner under 10 m of z-depth (diagonal of 6.5 x 6.5 < 9.2).
    width, length, height = rng.uniform(3.0, 6.5), rng.uniform(3.0, 6.5), rng.uniform(2.4, 3.2)
    lo = np.array([-width / 2, 0.0, 0.0])
    hi = np.array([width / 2, height, length])
    cam = np.array(
        [rng.uniform(-width / 2 + 0.4, width / 2 - 0.4), rng.uniform(1.2, 1.6), rng.uniform(0.3, 1.2)]
    )
    rotation, focal = _camera(
        rng.uniform(-0.6, 0.6), rng.uniform(-0.35, 0.0), rng.uniform(-0.03, 0.03), fov, w_img,
    )
    floor = _material(rng, ["planks", "tiles", "checker", "noise"], period=(0.15, 0.6), val=(0.25, 0.75))
    wall_base = _random_color(rng, sat=(0.05, 0.45), val=(0.55, 0.95))
    walls = [
        _material(rng, ["plain", "stripes", "noise", "plain"], period=(0.1, 0.5), base=wall_base)
        for _ in range(2)
    ]
    room_materials = {
        "floor": floor,
        "ceiling": _Material("plain", np.array([0.9, 0.9, 0.88]), np.array([0.8, 0.8, 0.8]), 0.5, 0.3),
        # opposite walls share a finish, as real rooms tend to
        "x-": walls[0], "x+": walls[0], "z-": walls[1], "z+": walls[1],
    }
    if rng.random() < 0.35:  # an accent wall
        room_materials["z+"] = _material(rng, ["plain", "stripes", "checker", "noise"], period=(0.1, 0.6))

    boxes: list[_Box] = []
    spheres: list[_Sphere] = []
    n_boxes = int(rng.integers(2, 7))
    for _ in range(200):
        if len(boxes) >= n_boxes:
            break
        half = np.array([rng.uniform(0.2, 0.9), rng.uniform(0.2, 1.0), rng.uniform(0.2, 0.7)])
        yaw = 0.0 if rng.random() < 0.5 else float(rng.uniform(-math.pi, math.pi))
        reach = float(np.hypot(half[0], half[2]))
        x = rng.uniform(lo[0] + reach, hi[0] - reach) if hi[0] - lo[0] > 2 * reach else 0.0
        z = rng.uniform(lo[2] + reach, hi[2] - reach) if hi[2] - lo[2] > 2 * reach else length / 2
        if math.hypot(x - cam[0], z - cam[2]) < reach + 1.2:
            continue  # keep the camera out of (and not pressed against) the furniture
        center = np.array([x, half[1], z])
        mat = _material(rng, ["plain", "noise", "planks", "checker", "stripes"], period=(0.05, 0.4))
        boxes.append(_Box(center, half, yaw, mat))
    # pictures and shelves on the walls: thin boxes
    for _ in range(int(rng.integers(0, 3))):
        half = np.array([rng.uniform(0.2, 0.7), rng.uniform(0.15, 0.5), 0.02])
        wall = rng.integers(3)
        yv = rng.uniform(1.0, height - 0.6)
        if wall == 0:  # far wall
            center = np.array([rng.uniform(lo[0] + 0.8, hi[0] - 0.8), yv, hi[2] - 0.02])
            yaw = 0.0
        else:  # side walls
            side = lo[0] + 0.02 if wall == 1 else hi[0] - 0.02
            center = np.array([side, yv, rng.uniform(lo[2] + 1.0, hi[2] - 0.8)])
            yaw = math.pi / 2
        mat = _material(rng, ["checker", "stripes", "noise"], period=(0.05, 0.25), sat=(0.4, 0.9))
        boxes.append(_Box(center, half, yaw, mat))
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.12, 0.35)
        x, z = rng.uniform(lo[0] + r, hi[0] - r), rng.uniform(lo[2] + r, hi[2] - r)
        if math.hypot(x - cam[0], z - cam[2]) < r + 0.8:
            continue
        spheres.append(_Sphere(np.array([x, r, z]), r, _material(rng, ["plain", "noise"], sat=(0.4, 0.9))))

    lamp = np.array([rng.uniform(lo[0] + 0.5, hi[0] - 0.5), height - 0.15, rng.uniform(1.0, hi[2] - 0.5)])
    sun = np.array([rng.uniform(-1, 1), rng.uniform(0.6, 1.5), rng.uniform(-1, 1)])
    return _Scene(
        family="indoor", max_depth=MAX_DEPTH["indoor"], origin=cam, rotation=rotation, focal=focal,
        room=(lo, hi), room_materials=room_materials, ground=None, boxes=boxes, spheres=spheres,
        ambient=float(rng.uniform(0.12, 0.22)), sun_dir=sun / np.linalg.norm(sun),
        sun_power=float(rng.uniform(0.15, 0.35)), lamp_pos=lamp, lamp_power=float(rng.uniform(0.9, 1.5)),
        lamp_radius=float(rng.uniform(2.0, 3.5)), tint=_hsv(rng.uniform(0.05, 0.6), rng.uniform(0, 0.12), 1.0),
        fog_distance=float("inf"), horizon=np.zeros(3), zenith=np.zeros(3),
        exposure=float(rng.uniform(1.0, 1.3)),
    )


def _outdoor_scene(rng: np.random.Generator, size: tuple[int, int], fov: float) -> _Scene:
    w_img = size[1]
    cam = np.array([0.0, rng.uniform(1.4, 2.4), 0.0])
    rotation, focal = _camera(
        rng.uniform(-0.3, 0.3), rng.uniform(-0.18, 0.0), rng.uniform(-0.03, 0.03),
        fov, w_img,
    )
    grass = _Material(
        "grass", _hsv(rng.uniform(0.18, 0.3), rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.5)),
        _hsv(rng.uniform(0.08, 0.2), rng.uniform(0.3, 0.6), rng.uniform(0.15, 0.35)),
        float(rng.uniform(0.5, 2.0)), float(rng.uniform(0.5, 1.0)),
    )
    road_x, road_half = float(rng.uniform(-4.0, 4.0)), float(rng.uniform(2.5, 5.0))
    asphalt = np.array([0.22, 0.22, 0.23]) * rng.uniform(0.8, 1.3)
    road = _Road(road_x, road_half, asphalt, float(rng.uniform(2.0, 4.0)))

    boxes: list[_Box] = []
    spheres: list[_Sphere] = []
    # buildings along the road, beyond its edges
    for _ in range(int(rng.integers(3, 10))):
        half = np.array([rng.uniform(2.0, 8.0), rng.uniform(2.0, 12.0), rng.uniform(2.0, 8.0)])
        side = rng.choice([-1.0, 1.0])
        x = road_x + side * (road_half + rng.uniform(2.0, 15.0) + half[0])
        z = rng.uniform(8.0, 70.0)
        mat = _material(rng, ["stripes", "checker", "noise", "tiles"], period=(0.8, 3.0), val=(0.3, 0.85))
        boxes.append(_Box(np.array([x, half[1], z]), half, float(rng.uniform(-0.3, 0.3)), mat))
    # cars on the road
    for _ in range(int(rng.integers(0, 4))):
        half = np.array([0.9, rng.uniform(0.65, 0.85), rng.uniform(1.8, 2.4)])
        x = road_x + rng.uniform(-road_half + 1.0, road_half - 1.0)
        z = rng.uniform(6.0, 40.0)
        mat = _material(rng, ["plain"], sat=(0.3, 0.9), val=(0.2, 0.9))
        boxes.append(_Box(np.array([x, half[1], z]), half, float(rng.uniform(-0.15, 0.15)), mat))
    # trees: trunk + crown
    for _ in range(int(rng.integers(2, 9))):
        side = rng.choice([-1.0, 1.0])
        x = road_x + side * (road_half + rng.uniform(0.8, 6.0))
        z = rng.uniform(4.0, 60.0)
        trunk_h = rng.uniform(1.5, 3.5)
        radius = rng.uniform(1.0, 2.5)
        trunk = _material(rng, ["noise"], period=(0.1, 0.3), base=_hsv(0.08, 0.5, rng.uniform(0.15, 0.3)))
        boxes.append(_Box(np.array([x, trunk_h / 2, z]), np.array([0.15, trunk_h / 2, 0.15]), 0.0, trunk))
        crown = _material(rng, ["noise"], period=(0.2, 0.6), base=_hsv(rng.uniform(0.2, 0.35), 0.6, rng.uniform(0.15, 0.4)))
        spheres.append(_Sphere(np.array([x, trunk_h + radius * 0.8, z]), radius, crown))

    sun = np.array([rng.uniform(-1, 1), rng.uniform(0.4, 1.2), rng.uniform(-1, 0.6)])
    return _Scene(
        family="outdoor", max_depth=MAX_DEPTH["outdoor"], origin=cam, rotation=rotation, focal=focal,
        room=None, room_materials={}, ground=grass, boxes=boxes, spheres=spheres,
        ambient=float(rng.uniform(0.2, 0.35)), sun_dir=sun / np.linalg.norm(sun),
        sun_power=float(rng.uniform(0.7, 1.1)), lamp_pos=None, lamp_power=0.0, lamp_radius=1.0,
        tint=_hsv(rng.uniform(0.05, 0.6), rng.uniform(0, 0.1), 1.0),
        fog_distance=float(rng.uniform(60.0, 180.0)),
        horizon=_hsv(rng.uniform(0.55, 0.62), rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95)),
        zenith=_hsv(rng.uniform(0.57, 0.63), rng.uniform(0.35, 0.7), rng.uniform(0.5, 0.8)),
        exposure=float(rng.uniform(0.9, 1.15)), road=road,
    )


# --------------------------------------------------------------------------------------------
# Ray casting. Rays are ``origin + t * dirs``; ``origin`` is (3,) or (N, 3), ``dirs`` (N, 3).


def _rows_dot(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``x @ v`` for ``x`` (N, 3) and ``v`` (3,) without BLAS (whose threads only contend here)."""
    return x[:, 0] * v[0] + x[:, 1] * v[1] + x[:, 2] * v[2]


def _pair_dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise dot product of two (N, 3) arrays (NumPy's axis-1 reductions are slow on 3 columns)."""
    return x[:, 0] * y[:, 0] + x[:, 1] * y[:, 1] + x[:, 2] * y[:, 2]


def _rows_matmul(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m`` for ``x`` (N, 3) or (3,) and ``m`` (3, 3), without BLAS."""
    if x.ndim == 1:
        return x @ m
    return x[:, 0:1] * m[0] + x[:, 1:2] * m[1] + x[:, 2:3] * m[2]


def _bounding_candidates(origin, dirs, center, radius, limit=None) -> np.ndarray:
    """Indices of rays that pass within ``radius`` of ``center`` at some ``0 < t (< limit)``.

    A cheap bounding-sphere test run before the exact one, so each primitive costs a few vector
    operations per ray and the exact test runs only on the rays that can hit it.
    """
    oc = center - origin
    a = _pair_dot(dirs, dirs)
    if oc.ndim == 1:
        b = _rows_dot(dirs, oc)
        c = oc @ oc - radius * radius
    else:
        b = _pair_dot(dirs, oc)
        c = _pair_dot(oc, oc) - radius * radius
    disc = b * b - a * c
    ok = (disc >= 0) & ((b > 0) | (c < 0))
    if limit is not None:
        ok &= (b - np.sqrt(np.maximum(disc, 0.0))) < limit * a
    return np.nonzero(ok)[0]


def _box_t(origin, dirs, box: _Box) -> np.ndarray:
    """Slab test against a yaw-rotated box; ``inf`` where a ray misses."""
    rot = _rot_y(box.yaw)  # box -> world; row vectors: x @ rot == rot.T @ x (world -> box)
    o = _rows_matmul(origin - box.center, rot)
    d = _rows_matmul(dirs, rot)
    t_enter = t_exit = None
    for k in range(3):  # one slab per axis, on 1-D arrays
        dk = d[:, k]
        ok = o[k] if o.ndim == 1 else o[:, k]
        safe = np.where(np.abs(dk) < _EPS, _EPS, dk)
        t1 = (-box.half[k] - ok) / safe
        t2 = (box.half[k] - ok) / safe
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_enter = near if t_enter is None else np.maximum(t_enter, near)
        t_exit = far if t_exit is None else np.minimum(t_exit, far)
    return np.where((t_enter <= t_exit) & (t_enter > 1e-4), t_enter, np.inf)


def _sphere_t(origin, dirs, sphere: _Sphere) -> np.ndarray:
    oc = sphere.center - origin
    a = _pair_dot(dirs, dirs)
    b = _rows_dot(dirs, oc) if oc.ndim == 1 else _pair_dot(dirs, oc)
    c = (oc @ oc if oc.ndim == 1 else _pair_dot(oc, oc)) - sphere.radius**2
    disc = b * b - a * c
    t = (b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc >= 0) & (t > 1e-4), t, np.inf)


def _radius(prim) -> float:
    return float(np.linalg.norm(prim.half)) if isinstance(prim, _Box) else prim.radius


def _screen_rays(scene: _Scene, prim, size: tuple[int, int]) -> np.ndarray | None:
    """Indices of the pixels inside the image rectangle that bounds ``prim``'s bounding sphere.

    Conservative: the sphere lies in the camera-frame box ``centre +- r``, and ``x / z`` over that
    box is extreme at its corners. ``None`` means "every pixel" (the sphere reaches the camera).
    """
    h, w = size
    r = _radius(prim)
    x, y, z = (prim.center - scene.origin) @ scene.rotation  # world -> camera (row vector)
    if z + r <= 0:
        return np.empty(0, dtype=np.int64)
    if z - r <= 1e-3:
        return None
    f = scene.focal
    xs = [(x - r) / (z - r), (x - r) / (z + r), (x + r) / (z - r), (x + r) / (z + r)]
    ys = [(y - r) / (z - r), (y - r) / (z + r), (y + r) / (z - r), (y + r) / (z + r)]
    c0, c1 = int(math.floor(min(xs) * f + w / 2)), int(math.ceil(max(xs) * f + w / 2)) + 1
    r0, r1 = int(math.floor(h / 2 - max(ys) * f)), int(math.ceil(h / 2 - min(ys) * f)) + 1
    c0, c1, r0, r1 = max(c0, 0), min(c1, w), max(r0, 0), min(r1, h)
    if c0 >= c1 or r0 >= r1:
        return np.empty(0, dtype=np.int64)
    return (np.arange(r0, r1)[:, None] * w + np.arange(c0, c1)[None, :]).ravel()


def _primitive_t(origin, dirs, prim, limit=None, rays=None):
    """``(indices, t)`` of the rays (among ``rays``, default all) that hit ``prim``."""
    if rays is not None:
        if rays.size == 0:
            return rays, np.empty(0)
        idx = rays[_bounding_candidates(origin, dirs[rays], prim.center, _radius(prim), limit)]
    else:
        idx = _bounding_candidates(origin, dirs, prim.center, _radius(prim), limit)
    if idx.size == 0:
        return idx, np.empty(0)
    o = origin if np.ndim(origin) == 1 else origin[idx]
    t = _box_t(o, dirs[idx], prim) if isinstance(prim, _Box) else _sphere_t(o, dirs[idx], prim)
    return idx, t


def _occluded(points: np.ndarray, scene: _Scene, sun: np.ndarray | None = None,
              lamp: np.ndarray | None = None) -> np.ndarray:
    """Shadow test: whether a box or sphere lies between each point and the light.

    The light is either directional (``sun``, a unit vector towards it) or a point (``lamp``).
    Candidates are found per primitive with a few scalar operations per point (a cylinder along
    the sun direction, or a cone from the lamp, around the bounding sphere); only those get the
    exact test.
    """
    m = len(points)
    blocked = np.zeros(m, dtype=bool)
    prims = [p for p in scene.boxes + scene.spheres if not (isinstance(p, _Box) and p.half[2] < 0.05)]
    if m == 0 or not prims:
        return blocked  # (pictures on walls are too thin to cast a useful shadow)
    if sun is not None:
        e1 = np.cross(sun, [0.0, 0.0, 1.0] if abs(sun[2]) < 0.9 else [1.0, 0.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(sun, e1)
        q1, q2, along = _rows_dot(points, e1), _rows_dot(points, e2), _rows_dot(points, sun)
        to_light, limit = np.broadcast_to(sun, (m, 3)), np.inf
    else:
        to_light, limit = lamp - points, 1.0
        dist = np.sqrt(_pair_dot(to_light, to_light))
        away = -to_light / dist[:, None]  # unit directions from the lamp to the points
    for prim in prims:
        r = _radius(prim)
        if sun is not None:
            c = prim.center
            near = (q1 - c @ e1) ** 2 + (q2 - c @ e2) ** 2 < r * r
            near &= along < c @ sun + r
        else:
            u = prim.center - lamp
            dc = float(np.linalg.norm(u))
            if dc <= r:
                near = np.ones(m, dtype=bool)
            else:
                near = _rows_dot(away, u / dc) > math.sqrt(1.0 - (r / dc) ** 2)
                near &= dist > dc - r
        cand = np.nonzero(near & ~blocked)[0]
        if cand.size == 0:
            continue
        if isinstance(prim, _Box):
            t = _box_t(points[cand], to_light[cand], prim)
        else:
            t = _sphere_t(points[cand], to_light[cand], prim)
        blocked[cand[t < limit]] = True
    return blocked


def _surface_attributes(prim, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World normals and surface coordinates ``(u, v)`` in metres at hit points on ``prim``."""
    if isinstance(prim, _Box):
        rot = _rot_y(prim.yaw)
        local = _rows_matmul(points - prim.center, rot)
        r0, r1, r2 = (np.abs(local[:, k]) / prim.half[k] for k in range(3))
        axis = np.where(r0 >= r1, np.where(r0 >= r2, 0, 2), np.where(r1 >= r2, 1, 2))
        rows = np.arange(len(points))
        n_local = np.zeros_like(local)
        n_local[rows, axis] = np.sign(local[rows, axis])
        # the two local axes other than the face's normal axis
        u = np.where(axis == 0, local[:, 2], local[:, 0])
        v = np.where(axis == 1, local[:, 2], local[:, 1])
        return _rows_matmul(n_local, rot.T), u, v
    normal = (points - prim.center) / prim.radius
    return normal, points[:, 0] + points[:, 2], points[:, 1]


# --------------------------------------------------------------------------------------------
# Textures


def _hash2(i: np.ndarray, j: np.ndarray, salt: float) -> np.ndarray:
    """A cheap deterministic hash of integer lattice points (given as floats) to [0, 1)."""
    h = i.astype(np.int64) * 73856093 ^ j.astype(np.int64) * 19349663 ^ int(salt * 1000 + 7) * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF) / 65536.0


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _value_noise(u: np.ndarray, v: np.ndarray, salt: float) -> np.ndarray:
    """Smooth value noise in [0, 1) with unit lattice spacing."""
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    a = _hash2(iu, iv, salt)
    b = _hash2(iu + 1, iv, salt)
    c = _hash2(iu, iv + 1, salt)
    d = _hash2(iu + 1, iv + 1, salt)
    return (a * (1 - fu) + b * fu) * (1 - fv) + (c * (1 - fu) + d * fu) * fv


def _fade(footprint: np.ndarray, period: float) -> np.ndarray:
    """Contrast left to a texture of ``period`` when one pixel covers ``footprint`` metres.

    A poor man's mip-mapping: detail fades to its mean as it approaches the Nyquist limit, so
    distant textures turn smooth instead of aliasing, which is itself a depth cue.
    """
    return np.clip(1.0 - 2.0 * footprint / period, 0.0, 1.0)


def _texture(mat: _Material, u: np.ndarray, v: np.ndarray, footprint: np.ndarray, salt: float) -> np.ndarray:
    """Albedo ``[N, 3]`` of material ``mat`` at surface coordinates ``(u, v)`` in metres."""
    if mat.angle:
        c, s = math.cos(mat.angle), math.sin(mat.angle)
        u, v = c * u - s * v, s * u + c * v
    p = mat.period
    base, other = mat.color, mat.color2
    kind = mat.kind
    if kind in ("checker", "stripes", "tiles", "planks"):
        if kind == "checker":
            pattern = ((np.floor(u / p) + np.floor(v / p)).astype(np.int64) & 1).astype(np.float64)
            detail = _fade(footprint, p)
        elif kind == "stripes":
            pattern = (np.floor(2 * u / p).astype(np.int64) & 1).astype(np.float64)
            detail = _fade(footprint, p)
        elif kind == "tiles":  # grout lines, 8% of the period wide
            fu, fv = _frac(u / p), _frac(v / p)
            pattern = ((fu < 0.08) | (fv < 0.08)).astype(np.float64)
            detail = _fade(footprint, 0.08 * p * 2)
        else:  # planks along v, each with its own shade and some grain
            plank = np.floor(u / p)
            shade = _hash2(plank, np.floor(v / (6 * p) + _hash2(plank, plank, salt)), salt)
            grain = _value_noise(u / p * 8, v / p * 0.7, salt + 1)
            seam = (_frac(u / p) < 0.04).astype(np.float64)
            pattern = np.clip(0.55 * shade + 0.3 * grain + 0.8 * seam, 0, 1)
            detail = _fade(footprint, 0.5 * p)
        mean = 0.5 if kind != "tiles" else 0.16
        mix = mean + (pattern - mean) * detail * mat.amount
        albedo = base[None, :] * (1 - mix[:, None]) + other[None, :] * mix[:, None]
    else:  # plain / noise / grass: fractal value noise of two octaves
        amount = {"plain": 0.12, "noise": 0.5, "grass": 0.7}.get(kind, 0.3) * mat.amount
        n1 = _value_noise(u / p, v / p, salt) * _fade(footprint, p)
        n2 = _value_noise(u / p * 4.1, v / p * 4.1, salt + 3) * _fade(footprint, p / 4.1)
        n = (n1 - 0.5) + 0.5 * (n2 - 0.5)
        mix = np.clip(0.5 + amount * n, 0, 1)
        albedo = base[None, :] * (1 - mix[:, None]) + other[None, :] * mix[:, None]
    return albedo


def _road(road: _Road, x: np.ndarray, z: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which ground points lie on the road, and the road's albedo there (asphalt + lines)."""
    road_x, road_half = road.x, road.half_width
    on = np.abs(x - road_x) < road_half
    asphalt = road.color[None, :] * (0.9 + 0.2 * _value_noise(x * 3, z * 3, 5.0))[:, None]
    dash = (np.abs(x - road_x) < 0.08) & ((np.floor(z / road.dash_period).astype(np.int64) & 1) == 0)
    edge = np.abs(np.abs(x - road_x) - (road_half - 0.25)) < 0.07
    line = (dash | edge).astype(np.float64) * _fade(footprint, 0.3)
    albedo = asphalt * (1 - line[:, None]) + np.array([0.85, 0.85, 0.8])[None, :] * line[:, None]
    return on, albedo


# --------------------------------------------------------------------------------------------
# Rendering

_ROOM_FACES = {(0, False): "x-", (0, True): "x+", (1, False): "floor", (1, True): "ceiling",
               (2, False): "z-", (2, True): "z+"}


def render_scene(scene: _Scene, size: tuple[int, int], rng: np.random.Generator | None = None):
    """Ray cast ``scene`` at ``size = (height, width)``; return ``(rgb uint8 [H,W,3], depth float32 [H,W])``."""
    h, w = size
    n = h * w
    jj, ii = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    # camera-frame directions with z = 1, so the ray parameter t is the z-depth itself
    cam_dirs = np.stack(
        [(jj.ravel() + 0.5 - w / 2) / scene.focal, -(ii.ravel() + 0.5 - h / 2) / scene.focal, np.ones(n)], axis=1
    )
    dirs = _rows_matmul(cam_dirs, scene.rotation.T)
    o = scene.origin
    ray_len = np.sqrt(_pair_dot(dirs, dirs))  # metres of path per unit of z-depth
    unit_dirs = dirs / ray_len[:, None]

    # pass 1: nearest hit distance and which surface; surfaces are room faces / ground, then prims
    t = np.full(n, np.inf)
    surface = np.full(n, -1, dtype=np.int64)
    surfaces: list = []  # ("plane", axis, normal sign, material) or ("prim", primitive)
    if scene.room is not None:
        lo, hi = scene.room
        # the camera is inside: each ray leaves through the nearest of the three walls it faces
        axis = np.zeros(n, dtype=np.int64)
        positive = np.zeros(n, dtype=bool)
        for k in range(3):
            dk = dirs[:, k]
            pos = dk > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                tk = np.where(np.abs(dk) > _EPS, (np.where(pos, hi[k], lo[k]) - o[k]) / dk, np.inf)
            closer = tk < t
            t = np.where(closer, tk, t)
            axis[closer] = k
            positive[closer] = pos[closer]
        for (ax, pos), name in _ROOM_FACES.items():
            surface[(axis == ax) & (positive == pos)] = len(surfaces)
            surfaces.append(("plane", ax, -1.0 if pos else 1.0, scene.room_materials[name]))
    if scene.ground is not None:
        down = dirs[:, 1] < -_EPS
        t_ground = np.full(n, np.inf)
        t_ground[down] = -o[1] / dirs[down, 1]
        closer = t_ground < t
        t[closer] = t_ground[closer]
        surface[closer] = len(surfaces)
        surfaces.append(("plane", 1, 1.0, scene.ground))
    for prim in scene.boxes + scene.spheres:
        idx, t_prim = _primitive_t(o, dirs, prim, rays=_screen_rays(scene, prim, size))
        closer = t_prim < t[idx]
        if closer.any():
            sel = idx[closer]
            t[sel] = t_prim[closer]
            surface[sel] = len(surfaces)
        surfaces.append(("prim", prim))

    # pass 2: attributes and albedo per surface, only at the pixels it won
    hit = np.isfinite(t)
    points = o + np.where(hit, t, 0.0)[:, None] * dirs
    normal = np.zeros((n, 3))
    albedo = np.zeros((n, 3))
    for sid, entry in enumerate(surfaces):
        sel = np.nonzero(surface == sid)[0]
        if sel.size == 0:
            continue
        p = points[sel]
        if entry[0] == "plane":
            _, ax, sign, mat = entry
            normal[sel, ax] = sign
            other = [k for k in range(3) if k != ax]
            u, v = p[:, other[0]], p[:, other[1]]
        else:
            mat = entry[1].material
            normal[sel], u, v = _surface_attributes(entry[1], p)
        cos_view = np.abs(_pair_dot(normal[sel], unit_dirs[sel]))
        # metres of surface covered by one pixel: distance / focal, stretched at grazing angles
        footprint = t[sel] * ray_len[sel] / scene.focal / np.maximum(cos_view, 0.08)
        albedo[sel] = _texture(mat, u, v, footprint, salt=float(sid))
        if scene.road is not None and mat is scene.ground:
            on, road_albedo = _road(scene.road, p[:, 0], p[:, 2], footprint)
            albedo[sel[on]] = road_albedo[on]

    # lighting: ambient + directional (with shadows outdoors) + a point lamp with fall-off
    idx = slice(None) if hit.all() else np.nonzero(hit)[0]  # a view when every ray hit (indoors)
    pts = points[idx] + normal[idx] * 1e-3
    nrm = normal[idx]
    light = np.full(len(nrm), scene.ambient)
    sun_cos = np.clip(_rows_dot(nrm, scene.sun_dir), 0.0, None)
    if scene.room is None:
        lit = np.nonzero(sun_cos > 0)[0]
        shadow = _occluded(pts[lit], scene, sun=scene.sun_dir)
        sun_cos[lit[shadow]] = 0.0
    light += scene.sun_power * sun_cos
    if scene.lamp_pos is not None:
        to_lamp = scene.lamp_pos - pts
        dist = np.sqrt(_pair_dot(to_lamp, to_lamp))
        lamp_cos = np.clip(_pair_dot(nrm, to_lamp) / dist, 0.0, None)
        lit = np.nonzero(lamp_cos > 0)[0]
        shadow = _occluded(pts[lit], scene, lamp=scene.lamp_pos)
        lamp_cos[lit[shadow]] *= 0.15
        light += scene.lamp_power * lamp_cos / (1.0 + (dist / scene.lamp_radius) ** 2)
    color = np.zeros((n, 3))
    color[idx] = albedo[idx] * light[:, None] * (scene.tint * scene.exposure)[None, :]

    depth = np.where(hit, t, scene.max_depth)
    if scene.room is None:
        # sky: a gradient from the horizon up; fog blends far surfaces into the horizon colour
        elev = np.clip(unit_dirs[:, 1], 0.0, 1.0) ** 0.6
        sky = scene.horizon[None, :] * (1 - elev[:, None]) + scene.zenith[None, :] * elev[:, None]
        fog = np.exp(-np.where(hit, t * ray_len, np.inf) / scene.fog_distance)[:, None]
        color = color * fog + scene.horizon[None, :] ** 2.2 * (1 - fog)
        color[~hit] = sky[~hit] ** 2.2
    depth = np.minimum(depth, scene.max_depth)

    srgb = np.clip(color, 0.0, 1.0) ** (1 / 2.2)
    if rng is not None:  # a little sensor noise
        srgb = srgb + rng.standard_normal(srgb.shape, dtype=np.float32) * (1.5 / 255)
    rgb = np.clip(np.round(srgb * 255), 0, 255).astype(np.uint8).reshape(h, w, 3)
    return rgb, depth.astype(np.float32).reshape(h, w)


def make_scene(
    family: str, rng: np.random.Generator, size: tuple[int, int] = DEFAULT_SIZE, fov: float = DEFAULT_FOV
) -> _Scene:
    """Draw a random scene of ``family``; ``fov`` is the camera's horizontal field of view (degrees)."""
    if family == "indoor":
        return _indoor_scene(rng, size, fov)
    if family == "outdoor":
        return _outdoor_scene(rng, size, fov)
    raise ConfigError(f"unknown synthetic family {family!r}; expected 'indoor' or 'outdoor'")


def render_sample(
    family: str, index: int, split: str = "train", seed: int = 0, size: tuple[int, int] = DEFAULT_SIZE,
    sky: str = "max", fov: float = DEFAULT_FOV,
) -> Sample:
    """Render sample ``index`` of ``split`` of a synthetic family (independent of any dataset length)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), FAMILIES[family], _SPLIT_CODE[split], int(index)]))
    scene = make_scene(family, rng, size, fov)
    rgb, depth = render_scene(scene, size, rng)
    if sky == "invalid" and family == "outdoor":
        depth = np.where(depth >= scene.max_depth, np.float32(0.0), depth)
    return Sample(rgb=rgb, depth=depth, id=f"synthetic-{family}-{split}-{index:06d}")


class SyntheticDataset(DepthDataset):
    """``synthetic``, ``synthetic:indoor`` (the default family) or ``synthetic:outdoor``.

    Options: ``size=(height, width)`` (default 240x320), ``seed`` (default 0), ``train_count`` and
    ``test_count`` (lengths of the splits, default 1000 and 200; ``all`` is train then test),
    ``sky="max"|"invalid"`` (outdoor: sky depth at ``max_depth``, or marked invalid),
    ``fov`` (the camera's horizontal field of view in degrees, default 60, the same for every sample).
    """

    name = "synthetic"

    def __init__(
        self,
        family: str | None = None,
        split: str = "train",
        limit: int | None = None,
        spec: str | None = None,
        size: tuple[int, int] | list[int] | int = DEFAULT_SIZE,
        seed: int = 0,
        train_count: int = DEFAULT_COUNTS["train"],
        test_count: int = DEFAULT_COUNTS["test"],
        sky: str = "max",
        fov: float = DEFAULT_FOV,
    ) -> None:
        family = (family or "indoor").strip().lower()
        spec = spec or f"synthetic:{family}"
        if family not in FAMILIES:
            raise ConfigError(f"{spec}: unknown synthetic family {family!r}; expected 'indoor' or 'outdoor'")
        check_split(split, name=spec)
        if isinstance(size, int):
            size = (size, size)
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 8:
            raise ConfigError(f"{spec}: size must be (height, width) of at least 8x8 pixels, got {size}")
        if sky not in ("max", "invalid"):
            raise ConfigError(f"{spec}: sky must be 'max' or 'invalid', got {sky!r}")
        if not 10.0 <= float(fov) <= 150.0:
            raise ConfigError(f"{spec}: fov is the horizontal field of view in degrees (10-150), got {fov}")
        counts = {"train": int(train_count), "test": int(test_count)}
        parts = ["train", "test"] if split == "all" else [split]
        items = [(part, i) for part in parts for i in range(counts[part])]
        super().__init__(spec, split, items, limit)
        self.family = family
        self.size = size
        self.seed = int(seed)
        self.sky = sky
        self.fov = float(fov)
        self.max_depth = MAX_DEPTH[family]
        self.protocol = "none"

    @property
    def native_size(self) -> tuple[int, int]:
        return self.size

    @property
    def description(self) -> str:
        h, w = self.size
        return f"synthetic {self.family} scenes, {self.split}, {len(self)} samples at {h}x{w}, seed {self.seed}"

    def _item_id(self, item) -> str:
        part, i = item
        return f"synthetic-{self.family}-{part}-{i:06d}"

    def _load(self, item) -> Sample:
        part, i = item
        return render_sample(self.family, i, part, self.seed, self.size, self.sky, self.fov)
