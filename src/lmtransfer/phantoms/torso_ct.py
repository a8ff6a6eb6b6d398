"""Procedural torso CT phantom: CT-like volumes in HU with 64 named landmarks in LPS mm.

One case = :class:`~lmtransfer.phantoms.torso_anatomy.TorsoBuilder` anatomy, a posture tilt and
smooth deformation (:class:`~lmtransfer.phantoms.shapes.BodyWarp`), tissue labels painted on an
anisotropic voxel grid, then CT numbers with tissue texture, partial-volume blur and correlated
quantum noise. Cases are deterministic functions of ``(seed, case index)``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from lmtransfer.io.coords import Geometry
from lmtransfer.io.landmarks import write_slicer_json
from lmtransfer.io.volumes import write_volume
from lmtransfer.phantoms.dataset import CasePaths, case_id, render_missing, temp_path
from lmtransfer.phantoms.noise import smooth_noise
from lmtransfer.phantoms.shapes import BodyWarp, SmoothFunction1D, rotation
from lmtransfer.phantoms.tissues import Tissue, hu_table
from lmtransfer.phantoms.torso_anatomy import LANDMARKS, TorsoAnatomy, TorsoBuilder
from lmtransfer.provenance import source_digest

FORMAT_VERSION = 1


@dataclass(frozen=True)
class PhantomCTConfig:
    """Knobs of the torso phantom (``phantom_ct`` in ``params.yaml``)."""

    n_cases: int = 120
    seed: int = 17680
    spacing_inplane_mm: float = 1.2
    spacing_inplane_jitter: float = 0.08
    slice_mm_choices: tuple[float, ...] = (2.0, 2.5, 3.0)
    slice_mm_weights: tuple[float, ...] = (0.25, 0.5, 0.25)
    noise_hu_range: tuple[float, float] = (8.0, 20.0)
    fov_cut_probability: float = 0.3
    tilt_deg: float = 3.0
    warp_mm: float = 5.0
    psf_sigma_inplane_mm: tuple[float, float] = (0.45, 0.45)   # in-plane blur (sigma, mm), drawn per case

    def __post_init__(self) -> None:
        low, high = self.psf_sigma_inplane_mm
        if not 0 < low <= high:
            raise ValueError(f"phantom_ct.psf_sigma_inplane_mm: expected [low, high] with 0 < low <= high, got {[low, high]}")

    def fingerprint(self) -> str:
        """Everything that changes a case's voxels; stored beside each case to detect stale files."""
        fields = asdict(self)
        fields.pop("n_cases")
        fields["format"] = FORMAT_VERSION
        fields["code"] = source_digest(__name__)  # this module and all lmtransfer code it imports
        return json.dumps(fields, sort_keys=True)




@dataclass
class PhantomCase:
    """A rendered case: HU image, tissue labels, and landmarks in physical LPS mm."""

    case_id: str
    image: sitk.Image
    labels: sitk.Image
    landmarks_lps_mm: dict[str, np.ndarray]
    in_image: dict[str, bool]
    meta: dict = field(default_factory=dict)
    structures: sitk.Image | None = None   # uint8 structure ids, when render_case was asked for them


def _sample_warp(rng: np.random.Generator, anatomy: TorsoAnatomy, cfg: PhantomCTConfig) -> BodyWarp:
    centre = 0.5 * (anatomy.extent_low + anatomy.extent_high)
    tilt = rotation(*rng.normal(0.0, cfg.tilt_deg, 3))
    f = lambda amplitude: SmoothFunction1D.random(rng, amplitude)
    return BodyWarp(
        centre=centre, rot=tilt, bend_x=f(cfg.warp_mm), bend_y=f(cfg.warp_mm), scale_x=f(0.03), scale_y=f(0.03),
        lift_x=f(cfg.warp_mm * 0.6), lift_y=f(cfg.warp_mm * 0.6),
    )


def render_case(index: int, cfg: PhantomCTConfig, structure_ids: dict[str, int] | None = None) -> PhantomCase:
    """Render case ``index`` of the phantom set described by ``cfg`` (deterministic).

    ``structure_ids``: also paint a map of anatomical structures (:attr:`PaintOp.structure`, e.g.
    ``vertebrae_L1``) with these ids, 0 elsewhere, into ``PhantomCase.structures``; the image and
    tissue labels are the same either way.
    """
    rng = np.random.default_rng([cfg.seed, index])
    anatomy = TorsoBuilder(rng, cfg.fov_cut_probability).build()
    warp = _sample_warp(rng, anatomy, cfg)
    inplane = cfg.spacing_inplane_mm * (1 + rng.uniform(-cfg.spacing_inplane_jitter, cfg.spacing_inplane_jitter))
    inplane = round(float(inplane), 4)
    slice_mm = float(rng.choice(cfg.slice_mm_choices, p=np.asarray(cfg.slice_mm_weights) / np.sum(cfg.slice_mm_weights)))
    spacing = np.array([inplane, inplane, slice_mm])
    margin = warp.displacement_bound_mm(200.0) * 0.5 + 10.0
    low = anatomy.extent_low - [margin, margin, 0]
    high = anatomy.extent_high + [margin, margin, 0]
    size = np.floor((high - low) / spacing).astype(int) + 1
    px, py, pz = (low[a] + spacing[a] * np.arange(size[a]) for a in range(3))
    qx, qy, qz = warp.canonical_grid(px, py, pz)

    labels = np.zeros(size[::-1], dtype=np.uint8)
    owners = None if structure_ids is None else np.zeros(size[::-1], dtype=np.uint8)
    for op, box in zip(anatomy.ops, _index_boxes(anatomy, warp, low, spacing, size)):
        if box is not None:
            owner = None if owners is None else (owners, structure_ids.get(op.structure, 0))
            for piece in _pieces(box):
                _paint(labels, (qx, qy, qz), op, piece, owner)
    del qx, qy, qz

    psf_mm = _psf_sigma(index, cfg)
    hu, noise_hu = _intensities(labels, spacing, anatomy.phase, rng, cfg, psf_mm)

    # scanner coordinates: table position along z and a small in-plane offset
    offset = np.array([rng.normal(0, 8), rng.normal(0, 8), rng.uniform(-900.0, -500.0)])
    origin = low + offset
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(origin.tolist())
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    structures = None
    if owners is not None:
        structures = sitk.GetImageFromArray(owners)
        structures.CopyInformation(image)
    geometry = Geometry.from_sitk(image)
    names = list(LANDMARKS)
    canonical = np.array([anatomy.landmarks[n] for n in names])
    physical = warp.physical(canonical) + offset
    inside = geometry.contains_index(geometry.lps_to_index(physical))
    meta = {
        "case": case_id(index), "phase": anatomy.phase, "spacing_mm": spacing.round(4).tolist(),
        "size": size.tolist(), "noise_hu": round(noise_hu, 2), "psf_sigma_inplane_mm": round(psf_mm, 3),
        "landmarks_in_image": int(inside.sum()), **{f"factor_{k}": round(v, 4) for k, v in anatomy.factors.items()},
    }
    return PhantomCase(
        case_id=case_id(index), image=image, labels=label_image,
        landmarks_lps_mm=dict(zip(names, physical)), in_image=dict(zip(names, inside.tolist())), meta=meta,
        structures=structures,
    )


#: voxels per piece of a paint operation's box: an inside test's temporaries then stay in the CPU cache
PIECE_VOXELS = 1 << 16


def _pieces(box: tuple[slice, slice, slice]) -> list[tuple[slice, slice, slice]]:
    """``box`` cut along z into pieces of about ``PIECE_VOXELS`` voxels (every test is pointwise)."""
    zs, ys, xs = box
    step = max(1, PIECE_VOXELS // ((ys.stop - ys.start) * (xs.stop - xs.start)))
    return [(slice(z, min(z + step, zs.stop)), ys, xs) for z in range(zs.start, zs.stop, step)]


def _paint(labels: np.ndarray, grid: tuple[np.ndarray, ...], op, sl: tuple[slice, ...],
           owner: tuple[np.ndarray, int] | None = None) -> None:
    """Apply one paint operation to the voxels ``sl`` (canonical coordinates ``grid``, each ``[z, y, x]``);
    ``owner``: (a structure map, the operation's id) to mark the voxels it paints there as well."""
    qx, qy, qz = (g[sl] for g in grid)
    region, tested = labels[sl], op.tested_on()
    if tested is None:  # every voxel of the box
        mask = op.shape.contains(qx, qy, qz)
        if op.only_on is not None:
            mask &= _holds(op.only_on)[region]
    else:  # the inside tests are pointwise: only the voxels that may change are tested
        mask = _holds(tested)[region]
        mask[mask] = op.shape.contains(qx[mask], qy[mask], qz[mask])
    region[mask] = op.tissue
    if owner is not None:
        owner[0][sl][mask] = owner[1]


def _slabs(shape: tuple[int, ...]) -> list[slice]:
    """Slices along z of about ``PIECE_VOXELS`` voxels each, for pointwise work on whole volumes."""
    rows = max(1, PIECE_VOXELS // int(np.prod(shape[1:])))
    return [slice(z, min(z + rows, shape[0])) for z in range(0, shape[0], rows)]


@functools.lru_cache(maxsize=None)
def _holds(tissues: tuple[Tissue, ...]) -> np.ndarray:
    """Lookup table label -> whether it is one of ``tissues`` (indexing by it is np.isin on uint8, faster)."""
    table = np.zeros(256, dtype=bool)
    table[list(tissues)] = True
    return table


def _index_boxes(anatomy: TorsoAnatomy, warp: BodyWarp, low, spacing, size) -> list:
    """Voxel slices covering each paint operation's canonical bounding box (``None`` if off the grid).

    The box corners are mapped exactly through the inverse warp; the warp is smooth (wavelengths
    of 18 cm and more), so a margin of 6 % of the box size plus two voxels covers its curvature.
    """
    bounds = np.array([op.shape.bounds() for op in anatomy.ops])  # (n, 2, 3)
    grid = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)])
    corners = np.stack([bounds[:, grid[:, 0], 0], bounds[:, grid[:, 1], 1], bounds[:, grid[:, 2], 2]], axis=-1)
    phys = warp.physical(corners.reshape(-1, 3)).reshape(corners.shape)
    extent = bounds[:, 1] - bounds[:, 0]
    pad = 0.06 * extent.max(axis=1, keepdims=True) + 2.0 * spacing.max()
    pmin, pmax = phys.min(axis=1) - pad, phys.max(axis=1) + pad
    i0 = np.maximum(np.floor((pmin - low) / spacing).astype(int), 0)
    i1 = np.minimum(np.ceil((pmax - low) / spacing).astype(int) + 1, size)
    return [
        None if np.any(b <= a) else (slice(a[2], b[2]), slice(a[1], b[1]), slice(a[0], b[0]))
        for a, b in zip(i0, i1)
    ]


def _psf_sigma(index: int, cfg: PhantomCTConfig) -> float:
    """Case ``index``'s in-plane blur (sigma, mm): reconstruction kernels and resampled scans range from
    sharp to soft. Drawn from a generator of its own, so the rest of the case is the same whatever the range."""
    low, high = cfg.psf_sigma_inplane_mm
    if low == high:
        return float(low)
    return float(np.random.default_rng([cfg.seed, index, 1]).uniform(low, high))


def _intensities(labels: np.ndarray, spacing: np.ndarray, phase: str, rng: np.random.Generator, cfg: PhantomCTConfig,
                 psf_mm: float):
    """CT numbers from tissue labels: texture, bowel and lung vessels, partial volume (in-plane sigma
    ``psf_mm``), quantum noise."""
    shape = labels.shape
    sp = spacing[::-1]  # array order (z, y, x)
    means, textures = (np.asarray(v, dtype=np.float32) for v in hu_table(phase))
    bone_density = rng.uniform(0.7, 1.2)
    means[Tissue.CANCELLOUS_BONE] *= bone_density
    means[Tissue.CORTICAL_BONE] *= 0.85 + 0.15 * bone_density
    fine = smooth_noise(rng, shape, 0.9 / sp)
    coarse = smooth_noise(rng, shape, 5.0 / sp, step=(2, 4, 4))
    texture = np.empty(shape, dtype=np.float32)
    hu = np.empty(shape, dtype=np.float32)
    for z in _slabs(shape):
        texture[z] = 0.75 * fine[z] + 0.65 * coarse[z]
        hu[z] = means[labels[z]] + textures[labels[z]] * texture[z]
    del fine, coarse

    loops = smooth_noise(rng, shape, 7.0 / sp, step=(2, 4, 4))
    gas = smooth_noise(rng, shape, 6.0 / sp, step=(2, 4, 4))
    for z in _slabs(shape):
        h, t, loop = hu[z], texture[z], loops[z]
        abdomen = labels[z] == Tissue.ABDOMEN
        bowel = abdomen & (loop > -0.1)
        wall = abdomen & (np.abs(loop + 0.1) < 0.12)
        h[bowel] = means[Tissue.BOWEL] + 15.0 * t[bowel]
        h[bowel & (gas[z] > 1.2)] = -930.0
        h[wall] = means[Tissue.BOWEL] + 20.0
    del loops, gas

    v1 = smooth_noise(rng, shape, 3.0 / sp, step=(1, 2, 2))
    v2 = smooth_noise(rng, shape, 3.0 / sp, step=(1, 2, 2))
    for z in _slabs(shape):
        h, t = hu[z], texture[z]
        vessels = (labels[z] == Tissue.LUNG) & (np.abs(v1[z]) < 0.17) & (np.abs(v2[z]) < 0.17)
        h[vessels] += 780.0 + 40.0 * t[vessels]
    del v1, v2, texture

    # partial volume: the in-plane PSF (sigma psf_mm; 0.45: about 1 mm FWHM), slice profile about the slice thickness
    hu = ndimage.gaussian_filter(hu, sigma=[0.42, psf_mm / sp[1], psf_mm / sp[2]], truncate=2.5)
    noise_hu = float(rng.uniform(*cfg.noise_hu_range))
    quantum = rng.standard_normal(shape, dtype=np.float32)
    # soft-tissue reconstruction kernels correlate noise over about a millimetre in-plane
    quantum = ndimage.gaussian_filter(quantum, sigma=[0.0, 1.1, 1.1], truncate=2.5)
    quantum *= noise_hu / (quantum.std() + 1e-6)
    hu += quantum
    np.clip(hu, -1024, 3071, out=hu)
    return np.rint(hu).astype(np.int16), noise_hu


def write_case(case: PhantomCase, out_dir: Path, fingerprint: str) -> CasePaths:
    """Write one case atomically (temporary names, then rename; meta last), then stamp it done (beside the set)."""
    paths = CasePaths.of(out_dir, case.case_id)
    for p in (paths.image, paths.labels, paths.landmarks, paths.meta):
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp_image = temp_path(paths.image)
    tmp_labels = temp_path(paths.labels)
    write_volume(case.image, tmp_image)
    write_volume(case.labels, tmp_labels)
    os.replace(tmp_image, paths.image)
    os.replace(tmp_labels, paths.labels)
    visible = [n for n in LANDMARKS if case.in_image[n]]
    write_slicer_json(paths.landmarks, visible, np.array([case.landmarks_lps_mm[n] for n in visible]).reshape(-1, 3))
    truth = {n: {"lps_mm": np.round(case.landmarks_lps_mm[n], 3).tolist(), "in_image": case.in_image[n]} for n in LANDMARKS}
    meta = {**case.meta, "landmarks": truth}
    tmp_meta = temp_path(paths.meta)
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, paths.meta)
    paths.mark_complete(fingerprint)
    return paths


def _render_and_write(index: int, cfg: PhantomCTConfig, out_dir: Path, fingerprint: str) -> dict:
    start = time.perf_counter()
    case = render_case(index, cfg)
    write_case(case, out_dir, fingerprint)
    return {**case.meta, "seconds": round(time.perf_counter() - start, 2)}


def generate_dataset(cfg: PhantomCTConfig, out_dir: Path, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Render ``cfg.n_cases`` cases into ``out_dir``; cases already written with the same settings are kept.

    Layout: ``images/case_XXX.nii.gz`` (int16 HU), ``labels/case_XXX.nii.gz`` (uint8 tissue
    labels, see ``tissues.json``), ``landmarks/case_XXX.mrk.json`` (landmarks inside the image,
    LPS mm, 3D Slicer markups), ``meta/case_XXX.json`` (case parameters and all 64 landmarks with
    an in-image flag), plus ``cases.csv``, ``landmarks.csv`` and ``tissues.json``.
    """
    render_missing(_render_and_write, cfg, out_dir, cfg.n_cases, cfg.fingerprint(), workers, "phantom CT", progress)
    return write_index(out_dir, cfg.n_cases)


def write_index(out_dir: Path, n_cases: int) -> pd.DataFrame:
    """Dataset-level tables from the per-case meta files: ``cases.csv``, ``landmarks.csv``, ``tissues.json``."""
    cases, rows = [], []
    for i in range(n_cases):
        meta = json.loads(CasePaths.of(out_dir, case_id(i)).meta.read_text())
        truth = meta.pop("landmarks")
        cases.append(meta)
        for name, entry in truth.items():
            x, y, z = entry["lps_mm"]
            rows.append({"case": meta["case"], "landmark": name, "x": x, "y": y, "z": z, "space": "LPS", "in_image": entry["in_image"]})
    table = pd.DataFrame(cases)
    table.to_csv(out_dir / "cases.csv", index=False)
    pd.DataFrame(rows).to_csv(out_dir / "landmarks_truth.csv", index=False)
    (out_dir / "tissues.json").write_text(json.dumps({t.name.lower(): int(t) for t in Tissue}, indent=1))
    return table
