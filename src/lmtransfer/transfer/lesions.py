"""Lesion patch sets: 2.5D patches of lesions (label 1) and normal look-alikes (label 0), by case.

Every source (the MRA phantom, a MedMNIST 3D file, a LUNA16-style folder) ends as the same
:class:`LesionSet`: patches already mapped to [-1, 1] (the CNN's input range), and an index with
the case, label, variant (0 = the exact patch; 1.. = jittered and rotated copies, training only),
the kind of centre and its position in LPS mm. The patches are cut by the same
:class:`~lmtransfer.sampling.sampler.LandmarkSampler` as the landmark patches.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torchio as tio
from scipy import ndimage
from scipy.spatial import cKDTree
from tqdm import tqdm

from lmtransfer.parallel import process_pool
from lmtransfer.io.coords import Geometry
from lmtransfer.sampling.planes import PatchSpec
from lmtransfer.sampling.sampler import NAMES_KEY, POINTS_KEY, LandmarkSampler, collate

INDEX_COLUMNS = ["case", "label", "variant", "kind", "x_lps_mm", "y_lps_mm", "z_lps_mm", "fixed_split"]


@dataclass(frozen=True)
class LesionPatchConfig:
    """Candidate and patch settings (``lesion`` in ``params.yaml``)."""

    fov_mm: float = 24.0                 # aneurysms are a few mm: a finer field of view than the landmarks'
    pixels: int = 32
    negatives_per_case: int = 40         # normal-vessel patches per case
    site_fraction: float = 0.35          # of them, at bifurcations, tight bends and crossings
    exclusion_mm: float = 8.0            # normal patches keep this far from any aneurysm's wall
    positive_copies: int = 8             # jittered + rotated copies of each aneurysm patch (training)
    jitter_mm: float = 1.0
    rotation_deg: float = 15.0
    intensity_percentiles: tuple[float, float] = (0.5, 99.99)  # per-volume MR window -> [-1, 1]
    seed: int = 0

    @property
    def spec(self) -> PatchSpec:
        return PatchSpec(self.fov_mm, self.pixels)


@dataclass
class LesionSet:
    """Patches ``x`` (n, 3, P, P) float32 in [-1, 1] and their ``index`` (see :data:`INDEX_COLUMNS`)."""

    x: np.ndarray
    index: pd.DataFrame
    info: dict

    def __post_init__(self) -> None:
        if len(self.x) != len(self.index):
            raise ValueError(f"{len(self.x)} patches but {len(self.index)} index rows")

    @property
    def cases(self) -> list[str]:
        return sorted(self.index["case"].unique())

    def summary(self) -> dict:
        clean = self.index[self.index["variant"] == 0]
        return {"source": self.info.get("source", "?"), "cases": len(self.cases), "patches": len(self.index),
                "lesion_patches": int((clean["label"] == 1).sum()), "normal_patches": int((clean["label"] == 0).sum()),
                "augmented_lesion_copies": int(((self.index["variant"] > 0) & (self.index["label"] == 1)).sum()),
                "cases_with_lesion": int(clean.groupby("case")["label"].max().sum()),
                "normal_by_kind": {k: int(v) for k, v in clean[clean["label"] == 0]["kind"].value_counts().items()}}


def save_lesion_set(lesions: LesionSet, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".tmp_patches.npy"
    np.save(tmp, lesions.x.astype(np.float32, copy=False))
    os.replace(tmp, out_dir / "patches.npy")
    lesions.index.to_csv(out_dir / "index.csv", index=False, float_format="%.3f")
    (out_dir / "summary.json").write_text(json.dumps({**lesions.summary(), **lesions.info}, indent=1) + "\n")
    return out_dir


def load_lesion_set(out_dir: Path) -> LesionSet:
    out_dir = Path(out_dir)
    if not (out_dir / "patches.npy").exists():
        raise FileNotFoundError(f"{out_dir}: no lesion patches; run `lmtransfer lesion-patches` first")
    index = pd.read_csv(out_dir / "index.csv", keep_default_na=False)
    info = json.loads((out_dir / "summary.json").read_text())
    return LesionSet(np.load(out_dir / "patches.npy", mmap_mode="r"), index, info)


def set_hash(out_dir: Path) -> str:
    """Content hash of a saved lesion set (patches and index), for run provenance."""
    digest = hashlib.sha256()
    for name in ("index.csv", "patches.npy"):
        with open(Path(out_dir) / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def window(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Intensities -> [-1, 1] (clipped)."""
    if not high > low:
        raise ValueError(f"intensity window [{low}, {high}] is empty")
    return (np.clip((np.asarray(x, np.float32) - low) / (high - low), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def cut_patches(image: tio.ScalarImage, centres_lps_mm: np.ndarray, copies: np.ndarray, cfg: LesionPatchConfig, seed: int,
                fill_value: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact patches for every centre plus ``copies[c]`` augmented ones for centre c.

    Returns raw planes (n, 3, P, P), the centres used (n, 3), the variant of each patch and the
    index of the input centre it was cut around.
    """
    centres_lps_mm = np.asarray(centres_lps_mm, float).reshape(-1, 3)
    subject = tio.Subject(image=image, **{POINTS_KEY: centres_lps_mm, NAMES_KEY: [""] * len(centres_lps_mm)})
    exact, used, _ = collate(LandmarkSampler(cfg.spec, image_name="image", fill_value=fill_value, seed=seed)(subject), cfg.pixels)
    planes, centres, variants, sources = [exact], [used], [np.zeros(len(used), int)], [np.arange(len(used))]
    for variant in range(1, int(copies.max(initial=0)) + 1):
        chosen = copies >= variant
        if not chosen.any():
            break
        sub = tio.Subject(image=image, **{POINTS_KEY: centres_lps_mm[chosen], NAMES_KEY: [""] * int(chosen.sum())})
        sampler = LandmarkSampler(cfg.spec, cfg.jitter_mm, cfg.rotation_deg, image_name="image", fill_value=fill_value, seed=seed * 100 + variant)
        p, c, _ = collate(sampler(sub), cfg.pixels)
        planes.append(p), centres.append(c), variants.append(np.full(len(c), variant)), sources.append(np.flatnonzero(chosen))
    return np.concatenate(planes), np.concatenate(centres), np.concatenate(variants), np.concatenate(sources)


def _sites_and_ridge(volume_ijk: np.ndarray, mask_ijk: np.ndarray, geometry: Geometry, meta: dict):
    """Vessel voxels that are local intensity maxima (near the centreline), in LPS mm, and the tree's sites on the mask."""
    ridge = mask_ijk & (volume_ijk >= ndimage.maximum_filter(volume_ijk, size=3))
    ridge_lps = geometry.index_to_lps(np.argwhere(ridge).astype(float))
    sites = [s for s in meta.get("sites", [])]
    site_lps = np.array([s["point_lps_mm"] for s in sites]).reshape(-1, 3)
    if len(site_lps):
        idx = np.rint(geometry.lps_to_index(site_lps)).astype(int)
        inside = geometry.contains_index(idx)
        on_mask = np.zeros(len(sites), bool)
        dilated = ndimage.binary_dilation(mask_ijk, iterations=2)
        on_mask[inside] = dilated[tuple(idx[inside].T)]
        sites = [s for s, keep in zip(sites, on_mask) if keep]
        site_lps = site_lps[on_mask]
    return ridge_lps, sites, site_lps


def phantom_case_patches(image_path: Path, mask_path: Path, meta: dict, cfg: LesionPatchConfig, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Aneurysm and normal-vessel patches of one MRA phantom case (normalised) and their index rows."""
    try:
        image = tio.ScalarImage(image_path)
        volume = image.data[0].numpy().astype(np.float32)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise RuntimeError(f"{image_path}: cannot read volume ({exc})") from exc
    geometry = Geometry.from_ras_affine(image.affine, image.spatial_shape)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))).T.astype(bool)
    if mask.shape != volume.shape:
        raise ValueError(f"{mask_path}: vessel mask grid {mask.shape} differs from the image {volume.shape}")
    rng = np.random.default_rng(seed)
    aneurysms = meta.get("aneurysm_list", [])
    lesion_lps = np.array([a["centre_lps_mm"] for a in aneurysms]).reshape(-1, 3)
    radii = np.array([a["radius_mm"] for a in aneurysms])
    inside = geometry.contains_index(geometry.lps_to_index(lesion_lps)) if len(lesion_lps) else np.zeros(0, bool)
    lesion_lps, radii = lesion_lps[inside], radii[inside]

    ridge_lps, sites, site_lps = _sites_and_ridge(volume, mask, geometry, meta)

    def far_from_lesions(points: np.ndarray) -> np.ndarray:
        if not len(lesion_lps) or not len(points):
            return np.ones(len(points), bool)
        d = np.linalg.norm(points[:, None] - lesion_lps[None], axis=-1) - radii[None]
        return (d > cfg.exclusion_mm).all(axis=1)

    keep_sites = far_from_lesions(site_lps)
    sites, site_lps = [s for s, k in zip(sites, keep_sites) if k], site_lps[keep_sites]
    ridge_lps = ridge_lps[far_from_lesions(ridge_lps)]
    n_sites = min(len(sites), int(round(cfg.site_fraction * cfg.negatives_per_case)))
    pick_sites = rng.choice(len(sites), n_sites, replace=False) if n_sites else np.zeros(0, int)
    n_ridge = min(len(ridge_lps), cfg.negatives_per_case - n_sites)
    if n_ridge + n_sites == 0:
        raise ValueError(f"{mask_path}: no vessel voxel away from the aneurysms; is the vessel mask empty?")
    if n_ridge:  # spread the ridge picks: no two normal centres closer than 3 mm where possible
        order = rng.permutation(len(ridge_lps))
        chosen: list[int] = []
        taken = cKDTree(site_lps[pick_sites]) if n_sites else None
        for k in order:
            p = ridge_lps[k]
            if taken is not None and taken.query(p)[0] < 3.0:
                continue
            if chosen and np.min(np.linalg.norm(ridge_lps[chosen] - p, axis=1)) < 3.0:
                continue
            chosen.append(k)
            if len(chosen) == n_ridge:
                break
        ridge_pick = ridge_lps[chosen]
    else:
        ridge_pick = np.zeros((0, 3))
    centres = np.vstack([lesion_lps, site_lps[pick_sites], ridge_pick])
    labels = np.r_[np.ones(len(lesion_lps), int), np.zeros(len(pick_sites) + len(ridge_pick), int)]
    kinds = ["aneurysm"] * len(lesion_lps) + [sites[i]["kind"] for i in pick_sites] + ["vessel"] * len(ridge_pick)
    copies = np.where(labels == 1, cfg.positive_copies, 0)
    planes, used, variants, source = cut_patches(image, centres, copies, cfg, seed, fill_value=0.0)
    low, high = np.percentile(volume, cfg.intensity_percentiles)
    rows = pd.DataFrame({"case": meta["case"], "label": labels[source], "variant": variants, "kind": np.array(kinds, dtype=object)[source],
                         "x_lps_mm": used[:, 0], "y_lps_mm": used[:, 1], "z_lps_mm": used[:, 2], "fixed_split": ""})
    return window(planes, float(low), float(high)), rows


def _case_job(args):
    case, image_path, mask_path, meta, cfg, seed = args
    return case, *phantom_case_patches(image_path, mask_path, meta, cfg, seed)


def phantom_lesion_set(phantom_dir: Path, vessel_dir: Path, cfg: LesionPatchConfig, workers: int = 1, progress: bool = True) -> LesionSet:
    """Patches of every case of an MRA phantom set, on the vessels extracted into ``vessel_dir``."""
    phantom_dir, vessel_dir = Path(phantom_dir), Path(vessel_dir)
    metas = sorted((phantom_dir / "meta").glob("case_*.json"))
    if not metas:
        raise FileNotFoundError(f"{phantom_dir}/meta: no MRA phantom cases; run `lmtransfer phantom-mra` first")
    jobs = []
    for path in metas:
        meta = json.loads(path.read_text())
        case = meta["case"]
        mask_path = vessel_dir / "masks" / f"{case}.nii.gz"
        if not mask_path.exists():
            raise FileNotFoundError(f"{mask_path}: no vessel mask for {case}; run `lmtransfer vessels` first")
        seed = int(hashlib.sha256(f"{cfg.seed}:{case}".encode()).hexdigest()[:8], 16)
        jobs.append((case, phantom_dir / "images" / f"{case}.nii.gz", mask_path, meta, cfg, seed))
    results = {}
    bar = tqdm(total=len(jobs), desc="lesion patches", unit="case", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with process_pool(workers, multiprocessing.get_context("spawn")) as pool:
            for case, x, rows in pool.map(_case_job, jobs):
                results[case] = (x, rows)
                bar.update()
    else:
        for job in jobs:
            case, x, rows = _case_job(job)
            results[case] = (x, rows)
            bar.update()
    bar.close()
    order = sorted(results)
    x = np.concatenate([results[c][0] for c in order])
    index = pd.concat([results[c][1] for c in order], ignore_index=True)[INDEX_COLUMNS]
    return LesionSet(x, index, {"source": "phantom_mra", "settings": asdict(cfg)})
