"""Lung nodules in the torso CT phantom: the in-domain transfer task (CT to CT).

Cases are rendered by the torso phantom with their own seed (so none of them is a pre-training
case), then nodules are painted into the lungs: solid, part-solid (a ground-glass halo around a
solid core) and ground-glass, 3-30 mm, lobulated, with a soft edge for partial volume and the
case's own noise. Normal patches sit on the nodule's classic false positives: vessels seen end-on,
vessel branchings, the pleura, scars (thin dense strands painted like the nodules) and plain
parenchyma. Everything here works on arrays in (z, y, x) order with the spacing in mm, and
returns positions as (z, y, x) voxel indices; :func:`nodule_case` turns one case into patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lmtransfer.phantoms.tissues import Tissue

NODULE_KINDS = ("solid", "part_solid", "ground_glass")
LOOKALIKE_KINDS = ("vessel", "branching", "pleura", "scar", "parenchyma")
VESSEL_HU = -500.0        # lung voxels above this are vessels (the phantom's lung vessels lie near -80 HU)


@dataclass(frozen=True)
class NoduleConfig:
    """How many nodules of which kind and size, and where the normal patches go."""

    diameter_mm: tuple[float, float] = (3.0, 30.0)   # log-uniform
    per_case: tuple[int, int] = (1, 4)                # nodules per case, inclusive range
    kind_weights: tuple[float, float, float] = (0.6, 0.2, 0.2)   # solid, part-solid, ground-glass
    juxtapleural_fraction: float = 0.2                # nodules touching the pleura
    scars_per_case: tuple[int, int] = (1, 3)
    negatives_per_case: int = 40
    lookalike_weights: tuple[float, float, float, float, float] = (0.35, 0.25, 0.2, 0.1, 0.1)   # LOOKALIKE_KINDS
    exclusion_mm: float = 8.0                         # normal centres at least this far from a nodule's edge

    def __post_init__(self) -> None:
        low, high = self.diameter_mm
        if not 0 < low <= high:
            raise ValueError(f"diameter_mm {list(self.diameter_mm)}: need 0 < low <= high")
        if not 0 <= self.per_case[0] <= self.per_case[1] or not 0 <= self.scars_per_case[0] <= self.scars_per_case[1]:
            raise ValueError("per_case and scars_per_case are [low, high] counts with 0 <= low <= high")


@dataclass(frozen=True)
class Nodule:
    """A painted nodule: centre (z, y, x voxel index), diameter in mm, kind, and whether it touches the pleura."""

    centre_zyx: tuple[float, float, float]
    diameter_mm: float
    kind: str
    juxtapleural: bool


def _box(centre: np.ndarray, half_mm: float, spacing: np.ndarray, shape) -> tuple[tuple[slice, ...], np.ndarray]:
    """The voxel box around ``centre`` reaching ``half_mm`` each way, and each voxel's offset from the centre in mm (3, ...)."""
    low = np.maximum(np.floor(centre - half_mm / spacing).astype(int), 0)
    high = np.minimum(np.ceil(centre + half_mm / spacing).astype(int) + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    grid = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(low, high)), indexing="ij")).astype(np.float32)
    return box, (grid - centre.reshape(3, 1, 1, 1)) * spacing.reshape(3, 1, 1, 1)


def _paint(hu: np.ndarray, box, weight: np.ndarray, target: np.ndarray, noise_hu: float, rng: np.random.Generator) -> None:
    """Blend ``target`` into ``hu`` with ``weight`` in [0, 1] (partial volume), with the case's noise;
    never darker than what was there, so vessels still show through ground glass."""
    region = hu[box].astype(np.float32)
    painted = region * (1 - weight) + (target + rng.normal(0, noise_hu, region.shape)) * weight
    hu[box] = np.rint(np.clip(np.maximum(region, painted), -1024, 3071)).astype(hu.dtype)


def paint_nodule(hu: np.ndarray, spacing: np.ndarray, nodule: Nodule, noise_hu: float, rng: np.random.Generator) -> None:
    """Paint ``nodule`` into ``hu`` (in place): a lobulated ball with a 0.8 mm soft edge."""
    radius = nodule.diameter_mm / 2
    box, offset = _box(np.asarray(nodule.centre_zyx), radius * 1.4 + 2.0, spacing, hu.shape)
    distance = np.sqrt((offset ** 2).sum(axis=0))
    direction = offset / np.maximum(distance, 1e-6)
    axes = rng.normal(size=(5, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    lobes = sum(w * np.einsum("c...,c->...", direction, a) ** 2 for w, a in zip(rng.normal(0, 0.12, 5), axes))
    surface = radius * (1 + lobes - float(np.mean(lobes)))
    weight = np.clip(0.5 + (surface - distance) / 0.8, 0, 1)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, distance.shape), 1.0)
    if nodule.kind == "solid":
        target = rng.uniform(-20, 60) + 25 * texture
    elif nodule.kind == "ground_glass":
        target = rng.uniform(-700, -450) + 40 * texture
    else:   # part-solid: a solid core inside the ground glass
        core = np.clip(0.5 + (rng.uniform(0.35, 0.6) * surface - distance) / 0.8, 0, 1)
        target = (1 - core) * (rng.uniform(-650, -450) + 40 * texture) + core * (rng.uniform(0, 50) + 25 * texture)
    _paint(hu, box, weight, target, noise_hu, rng)


def paint_scar(hu: np.ndarray, spacing: np.ndarray, centre_zyx: np.ndarray, rng: np.random.Generator, noise_hu: float) -> None:
    """A scar: a thin dense strand 10-25 mm long, 1-2 mm thick, through ``centre_zyx``."""
    length, thickness = rng.uniform(10, 25), rng.uniform(1.0, 2.0)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    box, offset = _box(np.asarray(centre_zyx, float), length / 2 + 2.0, spacing, hu.shape)
    along = np.clip(np.einsum("c...,c->...", offset, axis), -length / 2, length / 2)
    distance = np.sqrt(((offset - along[None] * axis.reshape(3, 1, 1, 1)) ** 2).sum(axis=0))
    weight = np.clip(0.5 + (thickness / 2 - distance) / 0.6, 0, 1)
    _paint(hu, box, weight, np.float32(rng.uniform(-150, 0)), noise_hu, rng)


def _pick(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return points[rng.choice(len(points), min(n, len(points)), replace=False)] if len(points) and n > 0 else np.zeros((0, 3), int)


def add_nodules(hu: np.ndarray, labels: np.ndarray, spacing: np.ndarray, cfg: NoduleConfig, noise_hu: float,
                rng: np.random.Generator) -> tuple[list[Nodule], list[tuple[np.ndarray, str]]]:
    """Paint nodules and scars into ``hu`` (in place) and choose the normal look-alike sites.

    Returns the nodules and the normal sites as (z, y, x index, kind). ``spacing``: (z, y, x) mm.
    """
    spacing = np.asarray(spacing, float)
    lung = labels == Tissue.LUNG
    if not lung.any():
        raise ValueError("the case has no lung voxels: cannot place nodules")
    depth, vessel, centreline, crowding = _lung_maps(hu, lung, spacing)

    nodules: list[Nodule] = []
    free = lung & ~vessel
    for _ in range(int(rng.integers(cfg.per_case[0], cfg.per_case[1] + 1))):
        diameter = float(np.exp(rng.uniform(*np.log(cfg.diameter_mm))))
        radius = diameter / 2
        juxtapleural = bool(rng.random() < cfg.juxtapleural_fraction)
        room = free & ((np.abs(depth - 0.8 * radius) < max(1.0, 0.2 * radius)) if juxtapleural else (depth >= radius + 1.5))
        for nodule in nodules:    # apart from earlier nodules
            room &= _far_from(np.asarray(nodule.centre_zyx), nodule.diameter_mm / 2 + radius + 3.0, spacing, room.shape)
        candidates = np.argwhere(room)
        if not len(candidates):
            continue              # no room for a nodule this size in these lungs
        centre = candidates[rng.integers(len(candidates))]
        kind = str(rng.choice(NODULE_KINDS, p=np.asarray(cfg.kind_weights) / np.sum(cfg.kind_weights)))
        nodules.append(Nodule(tuple(float(c) for c in centre), round(diameter, 2), kind, juxtapleural))

    def away(points: np.ndarray) -> np.ndarray:
        keep = np.ones(len(points), bool)
        for nodule in nodules:
            gap = np.linalg.norm((points - np.asarray(nodule.centre_zyx)) * spacing, axis=1) - nodule.diameter_mm / 2
            keep &= gap > cfg.exclusion_mm
        return points[keep]

    weights = np.asarray(cfg.lookalike_weights, float) / np.sum(cfg.lookalike_weights)
    counts = dict(zip(LOOKALIKE_KINDS, np.floor(weights * cfg.negatives_per_case).astype(int)))
    counts["scar"] = int(rng.integers(cfg.scars_per_case[0], cfg.scars_per_case[1] + 1))
    on_centreline = away(np.argwhere(centreline))
    branch_level = np.quantile(crowding[tuple(on_centreline.T)], 0.9) if len(on_centreline) else 0.0
    pools = {
        "vessel": on_centreline,
        "branching": on_centreline[crowding[tuple(on_centreline.T)] >= branch_level] if len(on_centreline) else on_centreline,
        "pleura": away(np.argwhere(lung & (depth <= 2.0) & ~vessel)),
        "scar": away(np.argwhere(free & (depth >= 8.0))),
        "parenchyma": away(np.argwhere(free & (depth >= 5.0))),
    }
    sites = [(point, kind) for kind in LOOKALIKE_KINDS[:-1] for point in _pick(pools[kind], counts[kind], rng)]
    # a kind with too few places (coarse grids, few vessels) leaves its share to the parenchyma
    sites += [(point, "parenchyma") for point in _pick(pools["parenchyma"], cfg.negatives_per_case - len(sites), rng)]
    for point, kind in sites:
        if kind == "scar":
            paint_scar(hu, spacing, point, rng, noise_hu)
    for nodule in nodules:
        paint_nodule(hu, spacing, nodule, noise_hu, rng)
    return nodules, sites


def _lung_maps(hu: np.ndarray, lung: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, ...]:
    """Where nodules and look-alikes may go, read off the image before painting (so a nodule cannot hide
    the vessel a look-alike sits on): each lung voxel's depth (mm to the nearest voxel outside the lung),
    vessels, vessel centrelines and vessel crowding (the share of vessel voxels within about 7 mm).

    Computed in the lungs' box grown by the filters' reach, zero outside: every value a lung voxel
    gets is the one the whole grid would give it (the grown box's border lies outside the lung and is
    nearer than anything beyond it), at a fraction of the cost.
    """
    window = np.maximum(np.rint(7.0 / spacing), 1).astype(int)
    where = np.argwhere(lung)
    reach = int(window.max()) // 2 + 1
    box = tuple(slice(max(int(a) - reach, 0), int(b) + reach + 1) for a, b in zip(where.min(axis=0), where.max(axis=0)))
    depth, crowding = np.zeros(lung.shape), np.zeros(lung.shape, np.float32)
    centreline = np.zeros(lung.shape, bool)
    depth[box] = ndimage.distance_transform_edt(lung[box], sampling=spacing)
    vessel = lung & (hu > VESSEL_HU)
    # the lung's edge is bright by partial volume with the wall: not a vessel centre
    centreline[box] = vessel[box] & (depth[box] >= 3.0) & (hu[box] >= ndimage.maximum_filter(hu[box], size=3))
    crowding[box] = ndimage.uniform_filter(vessel[box].astype(np.float32), size=window)
    return depth, vessel, centreline, crowding


def _far_from(centre: np.ndarray, distance_mm: float, spacing: np.ndarray, shape) -> np.ndarray:
    """A mask of the voxels farther than ``distance_mm`` from ``centre`` (computed in its box only)."""
    mask = np.ones(shape, bool)
    box, offset = _box(centre, distance_mm, spacing, shape)
    mask[box] = (offset ** 2).sum(axis=0) > distance_mm ** 2
    return mask
