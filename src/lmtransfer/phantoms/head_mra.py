"""Procedural head MRA phantom: time-of-flight-like volumes with an artery tree and saccular aneurysms.

One case = an :class:`~lmtransfer.phantoms.vessel_tree.ArteryTree` (circle of Willis, main
branches, random distal branches, loops), 0-3 aneurysms at bifurcations, the hard mimics
(infundibula at small branch origins, full vessel loops), and a head (scalp fat, skull, CSF,
textured brain) in a slab around the circle of Willis. Flowing blood is bright and fades
distally, slow flow darkens the middle of the domes (the more, the larger the dome: flow-related
signal loss), and the magnitude image carries Rician noise and a smooth coil-sensitivity field.
Intensities are arbitrary MR units (int16).

Ground truth per case: ``labels`` (0 air, 1 scalp fat, 2 skull, 3 CSF, 4 brain, 5 vessel lumen,
6 aneurysm), aneurysm centres as 3D Slicer markups, and the tree's look-alike sites
(bifurcations, tight bends, crossings, infundibula, loops) in the meta JSON.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from lmtransfer.io.landmarks import write_slicer_json
from lmtransfer.io.volumes import write_volume
from lmtransfer.phantoms.dataset import CasePaths, case_id, render_missing, temp_path
from lmtransfer.phantoms.noise import smooth_noise
from lmtransfer.phantoms.vessel_tree import Aneurysm, ArteryTree, TreeBuilder, add_mimics, place_aneurysms
from lmtransfer.provenance import source_digest

FORMAT_VERSION = 1
LABELS = {"air": 0, "scalp_fat": 1, "skull": 2, "csf": 3, "brain": 4, "vessel": 5, "aneurysm": 6}
HEAD_CENTRE_MM = np.array([0.0, 8.0, 12.0])
HEAD_SEMI_MM = np.array([70.0, 90.0, 78.0])


@dataclass(frozen=True)
class PhantomMRAConfig:
    """Knobs of the head MRA phantom (``phantom_mra`` in ``params.yaml``)."""

    n_cases: int = 150
    seed: int = 2020
    spacing_inplane_mm: float = 0.8
    slice_mm_choices: tuple[float, ...] = (0.8, 1.0, 1.2)
    slab_mm: tuple[float, float] = (-36.0, 40.0)   # superior-inferior extent around the circle of Willis
    fov_inplane_mm: tuple[float, float] = (150.0, 190.0)
    aneurysm_case_fraction: float = 0.6            # cases with at least one aneurysm
    second_aneurysm_probability: float = 0.2
    median_diameter_mm: float = 4.0
    noise_range: tuple[float, float] = (10.0, 22.0)  # Rician sigma, intensity units (brain ~ 220, fat ~ 420)
    distal_branches: int = 2
    infundibulum_probability: float = 0.35         # per small branch origin
    vessel_loop_probability: float = 0.3           # per M2, A2, P2 segment: a full loop

    def __post_init__(self) -> None:
        for name in ("aneurysm_case_fraction", "second_aneurysm_probability", "infundibulum_probability", "vessel_loop_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"phantom_mra.{name} must lie in [0, 1], got {getattr(self, name)}")

    def fingerprint(self) -> str:
        fields = asdict(self)
        fields.pop("n_cases")
        code = source_digest(__name__)  # this module and all lmtransfer code it imports
        return json.dumps({**fields, "format": FORMAT_VERSION, "code": code}, sort_keys=True)


@dataclass
class MRACase:
    case_id: str
    image: sitk.Image
    labels: sitk.Image
    aneurysms: list[Aneurysm]
    tree: ArteryTree
    meta: dict


def render_case(index: int, cfg: PhantomMRAConfig) -> MRACase:
    """Render case ``index`` (deterministic in ``(cfg.seed, index)``)."""
    rng = np.random.default_rng([cfg.seed, index])
    scale = rng.uniform(0.92, 1.08)
    tree = TreeBuilder(rng, scale=scale, radius_factor=rng.uniform(0.85, 1.15), distal_branches=cfg.distal_branches).build()
    count = 0
    if rng.random() < cfg.aneurysm_case_fraction:
        count = 1 + int(rng.random() < cfg.second_aneurysm_probability) + int(rng.random() < 0.04)
    aneurysms = place_aneurysms(tree, rng, count, cfg.median_diameter_mm)
    # the mimics draw from their own stream: the rest of the case is as it was without them
    add_mimics(tree, np.random.default_rng([cfg.seed, index, 1]), cfg.infundibulum_probability, cfg.vessel_loop_probability,
               avoid=tuple(a.site.split(": ", 1)[-1] for a in aneurysms))

    slice_mm = float(rng.choice(cfg.slice_mm_choices))
    spacing = np.array([cfg.spacing_inplane_mm, cfg.spacing_inplane_mm, slice_mm])
    half = np.array([cfg.fov_inplane_mm[0] / 2, cfg.fov_inplane_mm[1] / 2])
    low = np.array([-half[0], HEAD_CENTRE_MM[1] - half[1], cfg.slab_mm[0]]) + rng.normal(0, 3.0, 3)
    size = np.floor(np.array([2 * half[0], 2 * half[1], cfg.slab_mm[1] - cfg.slab_mm[0]]) / spacing).astype(int) + 1
    axes = [low[a] + spacing[a] * np.arange(size[a]) for a in range(3)]

    labels, tissue = _head(axes, spacing, rng, scale)
    lumen, blood, is_aneurysm = _blood(tree, aneurysms, axes, spacing, rng)
    labels[(lumen > 0.5) & ~is_aneurysm] = LABELS["vessel"]
    labels[(lumen > 0.5) & is_aneurysm] = LABELS["aneurysm"]
    signal = tissue * (1 - lumen) + blood * lumen
    del tissue, blood
    sp = spacing[::-1]
    signal = ndimage.gaussian_filter(signal, sigma=0.35 / sp * spacing.min(), truncate=2.5)
    coil = 1.0 + 0.12 * smooth_noise(rng, signal.shape, 40.0 / sp, step=(4, 8, 8))
    signal *= coil
    sigma = float(rng.uniform(*cfg.noise_range))
    real = signal + rng.normal(0, sigma, signal.shape).astype(np.float32)
    imag = rng.normal(0, sigma, signal.shape).astype(np.float32)
    magnitude = np.sqrt(real * real + imag * imag)
    image = sitk.GetImageFromArray(np.clip(np.rint(magnitude), 0, 32767).astype(np.int16))
    image.SetSpacing(spacing.tolist())
    offset = rng.normal(0, 5.0, 3)  # scanner frame: head not exactly at the isocentre
    image.SetOrigin((low + offset).tolist())
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    for a in aneurysms:
        a.centre_lps_mm, a.neck_lps_mm = a.centre_lps_mm + offset, a.neck_lps_mm + offset
    for v in tree.vessels:
        v.points_lps_mm = v.points_lps_mm + offset
    for s in tree.sites:
        s.point_lps_mm = s.point_lps_mm + offset
    for f in tree.infundibula:
        f.base_lps_mm, f.tip_lps_mm = f.base_lps_mm + offset, f.tip_lps_mm + offset
    meta = {
        "case": case_id(index), "spacing_mm": spacing.round(4).tolist(), "size": size.tolist(), "rician_sigma": round(sigma, 2),
        "aneurysms": len(aneurysms), "infundibula": len(tree.infundibula), "vessel_voxels": int((labels == LABELS["vessel"]).sum()),
        "aneurysm_voxels": int((labels == LABELS["aneurysm"]).sum()),
    }
    return MRACase(case_id(index), image, label_image, aneurysms, tree, meta)


def _ellipsoid_depth_mm(axes, centre, semi) -> np.ndarray:
    """Approximate depth below the surface of an ellipsoid, mm (negative outside), array order (z, y, x)."""
    x, y, z = ((a - c) / s for a, c, s in zip(axes, centre, semi))
    r = np.sqrt(z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2).astype(np.float32)
    return (1.0 - r) * float(np.mean(semi))


def _head(axes, spacing, rng, scale) -> tuple[np.ndarray, np.ndarray]:
    """Tissue labels and background signal: scalp fat (bright on TOF), skull, CSF, textured brain."""
    semi = HEAD_SEMI_MM * scale * rng.uniform(0.95, 1.05, 3)
    depth = _ellipsoid_depth_mm(axes, HEAD_CENTRE_MM + rng.normal(0, 2, 3), semi)
    fat_mm, skull_mm, csf_mm = rng.uniform(3.5, 6.5), rng.uniform(5.0, 8.0), rng.uniform(1.5, 3.5)
    labels = np.zeros(depth.shape, dtype=np.uint8)
    labels[depth >= 0] = LABELS["scalp_fat"]
    labels[depth >= fat_mm] = LABELS["skull"]
    labels[depth >= fat_mm + skull_mm] = LABELS["csf"]
    labels[depth >= fat_mm + skull_mm + csf_mm] = LABELS["brain"]
    sp = spacing[::-1]
    fine = smooth_noise(rng, depth.shape, 1.0 / sp)
    gyri = smooth_noise(rng, depth.shape, 4.0 / sp, step=(2, 4, 4))
    base = np.array([0.0, 420.0, 35.0, 70.0, 0.0], dtype=np.float32)[np.minimum(labels, 4)]
    brain = labels == LABELS["brain"]
    # grey/white pattern: the stationary tissue is suppressed, white matter a little brighter
    base[brain] = 205.0 + 22.0 * np.tanh(2.0 * gyri[brain]) + 8.0 * fine[brain]
    fat = labels == LABELS["scalp_fat"]
    base[fat] += 35.0 * fine[fat]
    return labels, base


def _blood(tree: ArteryTree, aneurysms: list[Aneurysm], axes, spacing, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lumen fraction (partial volume), blood signal and aneurysm mask on the grid, array order (z, y, x)."""
    shape = tuple(len(a) for a in axes[::-1])
    low = np.array([a[0] for a in axes])
    points, radii = tree.samples()
    # flow-related enhancement: bright proximal inflow, fading with distance along the tree and in small vessels
    inflow = np.concatenate([np.linspace(1.0, 0.82, len(v.points_lps_mm)) for v in tree.vessels])
    brightness = (520.0 + 330.0 * np.clip(radii / 2.0, 0.0, 1.0) * inflow) * rng.uniform(0.9, 1.1)
    sdf = np.full(shape, np.inf, dtype=np.float32)
    signal = np.zeros(shape, dtype=np.float32)
    # candidate band: voxels within (largest radius + 2 mm) of a centreline point
    ijk = np.rint((points - low) / spacing).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array([len(a) for a in axes])), axis=1)
    centreline = np.ones(shape, dtype=bool)
    centreline[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]] = False
    reach = float(radii.max() + 2.0)
    # the voxels within ``reach`` mm of a centreline voxel (a distance map: several times faster than dilating)
    band = ndimage.distance_transform_edt(centreline, sampling=spacing[::-1]) <= reach
    kz, ky, kx = np.nonzero(band)
    voxels = np.column_stack([axes[0][kx], axes[1][ky], axes[2][kz]])
    distance, nearest = cKDTree(points).query(voxels, k=4)
    dist_to_wall = distance - radii[nearest]
    best = np.argmin(dist_to_wall, axis=1)
    sdf[kz, ky, kx] = dist_to_wall[np.arange(len(best)), best]
    signal[kz, ky, kx] = brightness[nearest[np.arange(len(best)), best]]
    size = [len(x) for x in axes]

    def box(points_lps_mm: np.ndarray, reach_mm: float):
        """The grid block around ``points`` (+ ``reach_mm``) and its voxel centres in LPS mm; None when outside."""
        lo = np.maximum(np.floor((points_lps_mm.min(axis=0) - reach_mm - low) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((points_lps_mm.max(axis=0) + reach_mm - low) / spacing).astype(int) + 1, size)
        if np.any(hi <= lo):
            return None, None
        sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        gz, gy, gx = np.meshgrid(axes[2][sl[0]], axes[1][sl[1]], axes[0][sl[2]], indexing="ij")
        return sl, np.stack([gx, gy, gz], axis=-1)

    # infundibula: flowing blood, nearly as bright as the parent they widen from
    for f in tree.infundibula:
        sl, pts = box(np.stack([f.base_lps_mm, f.tip_lps_mm]), f.base_radius_mm + 1.5)
        if sl is None:
            continue
        d = f.signed_distance(pts).astype(np.float32)
        parent = float(np.max(signal[sl])) if np.any(signal[sl] > 0) else 700.0
        signal[sl] = np.where(d < sdf[sl], 0.88 * parent, signal[sl])
        sdf[sl] = np.minimum(sdf[sl], d)
    is_aneurysm = np.zeros(shape, dtype=bool)
    for a in aneurysms:
        sl, pts = box(np.stack([a.centre_lps_mm, a.neck_lps_mm]), a.radius_mm + 2.0)
        if sl is None:
            continue
        d = a.signed_distance(pts).astype(np.float32)
        # slow, swirling flow: the dome's centre is darker than its rim, the more so the larger the dome
        radial = np.linalg.norm(pts - a.centre_lps_mm, axis=-1) / a.radius_mm
        parent = float(np.max(signal[sl])) if np.any(signal[sl] > 0) else 700.0
        floor = 0.72 - 0.37 * float(np.clip((2 * a.radius_mm - 5.0) / 10.0, 0.0, 1.0))
        dome_signal = parent * rng.uniform(0.75, 0.95) * (floor + (1 - floor) * np.clip(radial, 0, 1))
        take = d < sdf[sl]
        is_aneurysm[sl] |= (d < 0) & take
        signal[sl] = np.where(take, dome_signal, signal[sl])
        sdf[sl] = np.minimum(sdf[sl], d)
    # linear partial-volume ramp over one voxel across the wall
    lumen = np.clip(0.5 - sdf / float(np.mean(spacing)), 0.0, 1.0)
    return lumen, signal, is_aneurysm


def write_case(case: MRACase, out_dir: Path, fingerprint: str) -> CasePaths:
    """Write one case atomically (meta last), then stamp it done (beside the set)."""
    paths = CasePaths.of(out_dir, case.case_id)
    for p in (paths.image, paths.labels, paths.landmarks, paths.meta):
        p.parent.mkdir(parents=True, exist_ok=True)
    for image, final in ((case.image, paths.image), (case.labels, paths.labels)):
        tmp = temp_path(final)
        write_volume(image, tmp)
        os.replace(tmp, final)
    names = [f"aneurysm_{k + 1}" for k in range(len(case.aneurysms))]
    centres = np.array([a.centre_lps_mm for a in case.aneurysms]).reshape(-1, 3)
    write_slicer_json(paths.landmarks, names, centres, [f"{a.site}; diameter {2 * a.radius_mm:.1f} mm" for a in case.aneurysms])
    meta = {
        **case.meta,
        "aneurysm_list": [{"name": n, "centre_lps_mm": np.round(a.centre_lps_mm, 3).tolist(), "radius_mm": round(a.radius_mm, 3),
                           "neck_lps_mm": np.round(a.neck_lps_mm, 3).tolist(), "neck_radius_mm": round(a.neck_radius_mm, 3),
                           "site": a.site} for n, a in zip(names, case.aneurysms)],
        "infundibulum_list": [{"branch": f.branch, "base_lps_mm": np.round(f.base_lps_mm, 3).tolist(), "tip_lps_mm": np.round(f.tip_lps_mm, 3).tolist(),
                         "base_radius_mm": round(f.base_radius_mm, 3)} for f in case.tree.infundibula],
        "sites": [{"kind": s.kind, "name": s.name, "point_lps_mm": np.round(s.point_lps_mm, 3).tolist(), "radius_mm": round(s.radius_mm, 3)}
                  for s in case.tree.sites],
    }
    tmp = temp_path(paths.meta)
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, paths.meta)
    paths.mark_complete(fingerprint)
    return paths


def _render_and_write(index: int, cfg: PhantomMRAConfig, out_dir: Path, fingerprint: str) -> dict:
    start = time.perf_counter()
    case = render_case(index, cfg)
    write_case(case, out_dir, fingerprint)
    return {**case.meta, "seconds": round(time.perf_counter() - start, 2)}


def generate_dataset(cfg: PhantomMRAConfig, out_dir: Path, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Render ``cfg.n_cases`` MRA cases into ``out_dir`` (resumes; finished cases are kept).

    Layout: ``images/`` (int16 MRA), ``labels/`` (uint8, see ``labels.json``), ``landmarks/``
    (aneurysm centres, 3D Slicer markups), ``meta/`` (case parameters, aneurysms, look-alike
    sites), plus ``cases.csv``, ``aneurysms.csv`` and ``sites.csv``.
    """
    render_missing(_render_and_write, cfg, out_dir, cfg.n_cases, cfg.fingerprint(), workers, "phantom MRA", progress)
    return write_index(out_dir, cfg.n_cases)


def write_index(out_dir: Path, n_cases: int) -> pd.DataFrame:
    out_dir = Path(out_dir)
    cases, aneurysms, sites = [], [], []
    for i in range(n_cases):
        meta = json.loads(CasePaths.of(out_dir, case_id(i)).meta.read_text())
        for a in meta.pop("aneurysm_list"):
            x, y, z = a.pop("centre_lps_mm")
            nx, ny, nz = a.pop("neck_lps_mm")
            a.update(neck_x_lps_mm=nx, neck_y_lps_mm=ny, neck_z_lps_mm=nz)
            aneurysms.append({"case": meta["case"], "name": a.pop("name"), "x_lps_mm": x, "y_lps_mm": y, "z_lps_mm": z,
                              "diameter_mm": round(2 * a["radius_mm"], 2), **a})
        for s in meta.pop("sites"):
            x, y, z = s.pop("point_lps_mm")
            sites.append({"case": meta["case"], **s, "x_lps_mm": x, "y_lps_mm": y, "z_lps_mm": z})
        meta.pop("infundibulum_list", None)
        cases.append(meta)
    table = pd.DataFrame(cases)
    table.to_csv(out_dir / "cases.csv", index=False)
    columns = ["case", "name", "x_lps_mm", "y_lps_mm", "z_lps_mm", "diameter_mm", "radius_mm", "neck_radius_mm",
               "neck_x_lps_mm", "neck_y_lps_mm", "neck_z_lps_mm", "site"]
    pd.DataFrame(aneurysms, columns=columns).to_csv(out_dir / "aneurysms.csv", index=False)
    pd.DataFrame(sites).to_csv(out_dir / "sites.csv", index=False)
    (out_dir / "labels.json").write_text(json.dumps(LABELS, indent=1))
    return table


def save_mip_preview(image: sitk.Image, aneurysms_lps_mm: np.ndarray, path: Path, title: str = "") -> Path:
    """Maximum intensity projections (axial, coronal, sagittal) with aneurysms circled, axes in mm."""
    from matplotlib.patches import Circle

    from lmtransfer.figures import subplots
    from lmtransfer.io.coords import Geometry

    array = sitk.GetArrayViewFromImage(image)  # (z, y, x)
    geometry = Geometry.from_sitk(image)
    sx, sy, sz = geometry.spacing_mm
    nx, ny, nz = geometry.size_ijk
    vmax = float(np.percentile(array, 99.95))
    ijk = geometry.lps_to_index(np.asarray(aneurysms_lps_mm).reshape(-1, 3))
    fig, axes = subplots(1, 3, figsize=(15, 5.2))
    views = [
        ("axial MIP (from above)", array.max(axis=0), (0, nx * sx, ny * sy, 0), (0, 1), (sx, sy)),
        ("coronal MIP", array.max(axis=1)[::-1], (0, nx * sx, 0, nz * sz), (0, 2), (sx, sz)),
        ("sagittal MIP", array.max(axis=2)[::-1], (0, ny * sy, 0, nz * sz), (1, 2), (sy, sz)),
    ]
    for ax, (name, mip, extent, (a, b), (da, db)) in zip(axes, views):
        ax.imshow(mip, cmap="gray", vmin=0, vmax=vmax, extent=extent, interpolation="bilinear")
        for p in ijk:
            ax.add_patch(Circle((p[a] * da, p[b] * db), 6.0, fill=False, color="orange", lw=1.5))
        ax.set_title(name)
        ax.set_xlabel("mm")
    fig.suptitle(title or "MRA phantom")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
