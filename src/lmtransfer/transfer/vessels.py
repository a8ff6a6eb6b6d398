"""Automatic vessel extraction on MRA: multi-scale Hessian vesselness, then hysteresis region growing.

Frangi's vesselness finds bright tubes but suppresses blobs, and an aneurysm dome is a blob; the
tubes are therefore only seeds, and the region grows from them into every connected voxel
brighter than half-way between brain tissue and the seeds' blood signal (the half-maximum edge
of a blurred lumen). Domes attached to a vessel are kept, isolated bright specks are not.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from lmtransfer.parallel import process_pool
from lmtransfer.provenance import source_digest


@dataclass(frozen=True)
class VesselConfig:
    """Extraction settings (``vessels`` in ``params.yaml``)."""

    sigmas_mm: tuple[float, ...] = (0.6, 1.0, 1.6)
    alpha: float = 0.5
    beta: float = 0.5
    vesselness_threshold: float = 0.05   # Frangi response (0..1) of seed voxels
    candidate_sd: float = 3.0            # only voxels this many robust SDs above brain are considered
    head_threshold_fraction: float = 0.25  # head = smoothed signal above this fraction of its 99th percentile
    head_margin_mm: float = 10.0         # seeds and growth stay this far inside the head (no scalp fat)
    min_component_voxels: int = 20


TRUNCATE = 3.0  # Gaussian kernels reach this many sigmas

def _second_derivatives(volume: np.ndarray, sigma_vox: np.ndarray) -> dict[tuple[int, int, int], np.ndarray]:
    """The six second-order Gaussian derivatives of ``volume`` (float32), keyed by derivative order per axis.

    ``ndimage.gaussian_filter`` with ``order`` runs one 1D pass per axis, 18 passes for the six; here the
    passes along the first two axes are shared (3 + 6 + 6 = 15). Each pass is the one ``gaussian_filter``
    makes, on float32 like its own intermediates, so the values are its values to the bit."""
    pass_ = lambda array, axis, order: ndimage.gaussian_filter1d(array, sigma_vox[axis], axis=axis, order=order,  # noqa: E731
                                                                  truncate=TRUNCATE, output=np.float32)
    along_z = {a: pass_(volume, 0, a) for a in range(3)}
    along_zy = {(a, b): pass_(along_z[a], 1, b) for a in range(3) for b in range(3 - a)}
    return {(a, b, 2 - a - b): pass_(along_zy[a, b], 2, 2 - a - b) for (a, b) in along_zy}


def hessian_eigenvalues(volume_zyx: np.ndarray, spacing_xyz, sigma_mm: float, where: np.ndarray) -> np.ndarray:
    """Scale-normalised Hessian eigenvalues at the voxels ``where`` (bool, array order), sorted by |value|: (n, 3)."""
    sp = np.asarray(spacing_xyz, float)[::-1]  # (z, y, x)
    derivatives = _second_derivatives(volume_zyx.astype(np.float32, copy=False), sigma_mm / sp)
    h = np.empty((int(where.sum()), 3, 3), dtype=np.float32)
    for order, d in derivatives.items():
        a, b = [axis for axis in range(3) for _ in range(order[axis])]
        h[:, a, b] = h[:, b, a] = d[where] / (sp[a] * sp[b]) * sigma_mm**2
    values = np.linalg.eigvalsh(h)
    return np.take_along_axis(values, np.argsort(np.abs(values), axis=1), axis=1)


def _box_around(where: np.ndarray, margin_vox) -> tuple[slice, ...]:
    """The bounding box of ``where`` grown by ``margin_vox`` voxels per axis, within the array."""
    box = []
    for axis, margin in enumerate(margin_vox):
        hit = np.flatnonzero(where.any(axis=tuple(a for a in range(where.ndim) if a != axis)))
        box.append(slice(max(int(hit[0]) - int(margin), 0), min(int(hit[-1]) + int(margin) + 1, where.shape[axis])))
    return tuple(box)


def filtering_box(where: np.ndarray, spacing_xyz, sigma_mm: float) -> tuple[slice, ...]:
    """The part of the volume that Gaussian filters up to ``sigma_mm`` need to give their values at ``where``.

    Every pass of a separable filter reaches TRUNCATE sigmas along its own axis (scipy's kernel radius), so
    filtering the box of ``where`` grown by that much gives the whole volume's values there, bit for bit."""
    reach = [int(TRUNCATE * (sigma_mm / s) + 0.5) + 1 for s in np.asarray(spacing_xyz, float)[::-1]]
    return _box_around(where, reach)


def vesselness(volume_zyx: np.ndarray, spacing_xyz, cfg: VesselConfig, where: np.ndarray) -> np.ndarray:
    """Frangi vesselness for bright tubes, maximum over ``cfg.sigmas_mm``; zero outside ``where``."""
    out = np.zeros(volume_zyx.shape, dtype=np.float32)
    if not where.any():
        return out
    box = filtering_box(where, spacing_xyz, max(cfg.sigmas_mm))
    volume_zyx, where = volume_zyx[box], where[box]
    best = np.zeros(int(where.sum()), dtype=np.float32)
    for sigma in cfg.sigmas_mm:
        l1, l2, l3 = hessian_eigenvalues(volume_zyx, spacing_xyz, sigma, where).T
        tube = (l2 < 0) & (l3 < 0)
        ra = np.abs(l2) / np.maximum(np.abs(l3), 1e-9)
        rb = np.abs(l1) / np.sqrt(np.maximum(np.abs(l2 * l3), 1e-9))
        s = np.sqrt(l1**2 + l2**2 + l3**2)
        c = 0.5 * float(s.max()) if len(s) else 1.0
        v = (1 - np.exp(-(ra**2) / (2 * cfg.alpha**2))) * np.exp(-(rb**2) / (2 * cfg.beta**2)) * (1 - np.exp(-(s**2) / (2 * c**2)))
        best = np.maximum(best, np.where(tube, v, 0.0).astype(np.float32))
    out[box][where] = best
    return out


def head_mask(volume_zyx: np.ndarray, spacing_xyz, cfg: VesselConfig) -> np.ndarray:
    """Inside of the head minus a margin: the largest bright region, holes filled, eroded by ``head_margin_mm``
    from its surface and from the in-plane edges of the field of view."""
    sp = np.asarray(spacing_xyz, float)[::-1]
    smooth = ndimage.gaussian_filter(volume_zyx.astype(np.float32, copy=False), 2.0 / sp)
    body = smooth > cfg.head_threshold_fraction * float(np.percentile(smooth, 99))
    labels, n = ndimage.label(body)
    if n == 0:
        raise ValueError("no head found: the volume has no bright region")
    body = labels == 1 + int(np.argmax(ndimage.sum(body, labels, range(1, n + 1))))
    body = np.stack([ndimage.binary_fill_holes(s) for s in body])  # slab: fill per axial slice
    # a head wider than the in-plane field of view is cut at the array's sides: those count as outside (or
    # the scalp fat there is "deep inside" and bright enough to grow into); the slab's own top and bottom do not
    return deeper_than(body, sp, cfg.head_margin_mm)


def deeper_than(body_zyx: np.ndarray, spacing_zyx, margin_mm: float) -> np.ndarray:
    """The voxels of ``body_zyx`` more than ``margin_mm`` from every outside voxel; beyond the array's
    in-plane sides (axes 1, 2) counts as outside, beyond its first and last slice does not."""
    body = np.pad(body_zyx, ((0, 0), (1, 1), (1, 1)))
    # the nearest outside voxel of a body voxel lies in the body's box or the layer round it (moving a point
    # outside the box onto that layer brings it closer), so the distances are needed in that box only
    box = _box_around(body, (1, 1, 1))
    inner = np.zeros_like(body)
    inner[box] = ndimage.distance_transform_edt(body[box], sampling=spacing_zyx) > margin_mm
    return np.ascontiguousarray(inner[:, 1:-1, 1:-1])


def extract_vessels(volume_zyx: np.ndarray, spacing_xyz, cfg: VesselConfig = VesselConfig()) -> tuple[np.ndarray, dict]:
    """Vessel mask (bool, array order) and the thresholds used.

    Raises:
        ValueError: the volume is constant, contains NaN, or has no vessel-like structure.
    """
    volume = np.asarray(volume_zyx, dtype=np.float32)
    if not np.isfinite(volume).all():
        raise ValueError("the volume contains NaN or infinite values")
    if float(volume.max()) == float(volume.min()):
        raise ValueError("the volume is constant")
    inner = head_mask(volume, spacing_xyz, cfg)
    tissue = volume[inner]
    level = float(np.median(tissue))
    spread = 1.4826 * float(np.median(np.abs(tissue - level))) + 1e-6
    candidates = inner & (volume > level + cfg.candidate_sd * spread)
    v = vesselness(volume, spacing_xyz, cfg, candidates)
    seeds = v > cfg.vesselness_threshold
    if not seeds.any():
        raise ValueError("no voxel passes the vesselness threshold: no bright tubular structure found")
    blood = float(np.median(volume[seeds]))
    grow = inner & (volume > 0.5 * (level + blood))
    labels, n = ndimage.label(grow, structure=np.ones((3, 3, 3)))
    keep = np.unique(labels[seeds & grow])
    keep = keep[keep > 0]
    if len(keep):
        sizes = ndimage.sum(grow, labels, keep)
        keep = keep[sizes >= cfg.min_component_voxels]
    mask = np.isin(labels, keep)
    return mask, {"tissue_level": level, "tissue_spread": spread, "blood_level": blood, "grow_threshold": 0.5 * (level + blood),
                  "seed_voxels": int(seeds.sum()), "vessel_voxels": int(mask.sum())}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _inputs_hash(image_path: Path, label_path: Path | None) -> str:
    """Hash of a case's image and label files: a mask whose inputs changed is extracted again."""
    from lmtransfer.io.volumes import content_hash

    label = content_hash(label_path) if label_path is not None and Path(label_path).exists() else ""
    return content_hash(image_path) + label


def _extract_case(image_path: Path, label_path: Path | None, out_path: Path, cfg: VesselConfig, inputs_sha256: str) -> dict:
    import SimpleITK as sitk

    from lmtransfer.io.volumes import read_volume, write_volume

    image = read_volume(Path(image_path))  # header checked first; errors name the file
    try:
        mask, info = extract_vessels(sitk.GetArrayFromImage(image), image.GetSpacing(), cfg)
    except ValueError as exc:
        raise ValueError(f"{image_path}: {exc}") from exc
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(image)
    tmp = out_path.with_name(f".tmp_{out_path.name}")
    write_volume(out, tmp)
    os.replace(tmp, out_path)
    row = {"case": out_path.name.removesuffix(".nii.gz"), "inputs_sha256": inputs_sha256,
           **{k: round(v, 2) if isinstance(v, float) else v for k, v in info.items()}}
    if label_path is not None and label_path.exists():
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
        row["dice"] = round(dice(mask, truth >= 5), 4)
        row["aneurysm_voxels_found"] = round(float((mask & (truth == 6)).sum()) / max(int((truth == 6).sum()), 1), 4) if (truth == 6).any() else None
    return row


def extract_dataset(images_dir: Path, out_dir: Path, cfg: VesselConfig, labels_dir: Path | None = None, workers: int = 1,
                    progress: bool = True) -> pd.DataFrame:
    """Vessel masks for every ``*.nii.gz`` in ``images_dir`` into ``out_dir/masks``, scored against
    ``labels_dir`` (phantom labels 5 vessel, 6 aneurysm) when given. Masks already written are kept
    while the settings, the extraction code and the case's image and labels are those they were made from."""
    images = sorted(Path(images_dir).glob("*.nii.gz"))
    if not images:
        raise FileNotFoundError(f"{images_dir}: no .nii.gz volumes")
    masks = Path(out_dir) / "masks"
    masks.mkdir(parents=True, exist_ok=True)
    table_path = Path(out_dir) / "extraction.csv"
    done = pd.read_csv(table_path, dtype={"inputs_sha256": str}) if table_path.exists() else pd.DataFrame(columns=["case"])
    fingerprint = json.dumps({**asdict(cfg), "code": source_digest(__name__)}, sort_keys=True)
    stamp = Path(out_dir) / "settings.json"
    if not stamp.exists() or stamp.read_text() != fingerprint:
        done = pd.DataFrame(columns=["case"])
        for stale in masks.glob("*.nii.gz"):
            stale.unlink()
        stamp.write_text(fingerprint)
    labels = {p: (Path(labels_dir) / p.name) if labels_dir else None for p in images}
    inputs = {p: _inputs_hash(p, labels[p]) for p in images}
    made_from = dict(zip(done["case"], done["inputs_sha256"])) if "inputs_sha256" in done else {}
    todo = [p for p in images if made_from.get(p.name.removesuffix(".nii.gz")) != inputs[p] or not (masks / p.name).exists()]
    args = [(p, labels[p], masks / p.name, cfg, inputs[p]) for p in todo]
    redo = {p.name.removesuffix(".nii.gz") for p in todo}
    rows = [r for r in done.to_dict("records") if r["case"] in {p.name.removesuffix(".nii.gz") for p in images} - redo]
    bar = tqdm(total=len(images), initial=len(images) - len(todo), desc="vessels", unit="case", disable=not progress)

    def record(row):
        rows.append(row)
        pd.DataFrame(rows).sort_values("case").to_csv(table_path, index=False)  # progress survives an interruption
        bar.update()

    if workers > 1 and len(args) > 1:
        with process_pool(workers, multiprocessing.get_context("spawn")) as pool:
            for row in pool.map(_extract_case, *zip(*args)):
                record(row)
    else:
        for a in args:
            record(_extract_case(*a))
    bar.close()
    return pd.DataFrame(rows).sort_values("case").reset_index(drop=True)
