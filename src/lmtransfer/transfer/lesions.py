"""Lesion patch sets: 2.5D patches of lesions (label 1) and normal look-alikes (label 0), by case.

Every source (the MRA phantom, a MedMNIST 3D file, a LUNA16-style folder) ends as the same
:class:`LesionSet`: patches already mapped to [-1, 1] (the CNN's input range), and an index with
the case, label, variant (0 = the exact patch; 1.. = jittered and rotated copies, training only),
the kind of centre and its position in LPS mm, and the lesion's size where the source knows it.
The patches are cut by the same :class:`~lmtransfer.sampling.sampler.LandmarkSampler` as the
landmark patches. A set may also hold the same patches cut at the landmark CNN's own field of view
and normalisation (``native``), for the fair-input ablation.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from dataclasses import asdict, dataclass, replace
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
SIZE_COLUMN = "size_mm"   # lesion diameter, mm; empty for normal patches and for sources that do not know it


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
    native_fov_mm: float = 0.0           # > 0: also cut every patch at this field of view (the landmark CNN's own)

    def __post_init__(self) -> None:
        if not self.fov_mm > 0 or self.native_fov_mm < 0:
            raise ValueError(f"lesion.fov_mm must be > 0 and lesion.native_fov_mm >= 0, got {self.fov_mm}, {self.native_fov_mm}")

    @property
    def spec(self) -> PatchSpec:
        return PatchSpec(self.fov_mm, self.pixels)


@dataclass
class LesionSet:
    """Patches ``x`` (n, 3, P, P) float32 in [-1, 1] and their ``index`` (see :data:`INDEX_COLUMNS`,
    plus :data:`SIZE_COLUMN`); optionally ``native``: the same centres cut at the landmark CNN's field
    of view and normalisation (described in ``info["native"]``)."""

    x: np.ndarray
    index: pd.DataFrame
    info: dict
    native: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.index):
            raise ValueError(f"{len(self.x)} patches but {len(self.index)} index rows")
        if self.native is not None and self.native.shape != self.x.shape:
            raise ValueError(f"native patches {self.native.shape} differ from the patches {self.x.shape}")
        if SIZE_COLUMN not in self.index:
            self.index = self.index.assign(**{SIZE_COLUMN: np.nan})

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
    if lesions.native is not None:
        np.save(tmp, lesions.native.astype(np.float32, copy=False))
        os.replace(tmp, out_dir / "patches_native.npy")
    else:
        (out_dir / "patches_native.npy").unlink(missing_ok=True)
    lesions.index.to_csv(out_dir / "index.csv", index=False, float_format="%.3f")
    (out_dir / "summary.json").write_text(json.dumps({**lesions.summary(), **lesions.info}, indent=1) + "\n")
    return out_dir


def load_lesion_set(out_dir: Path) -> LesionSet:
    out_dir = Path(out_dir)
    if not (out_dir / "patches.npy").exists():
        raise FileNotFoundError(f"{out_dir}: no lesion patches; run `lmtransfer lesion-patches` first")
    index = pd.read_csv(out_dir / "index.csv", keep_default_na=False)
    if SIZE_COLUMN in index:
        index[SIZE_COLUMN] = pd.to_numeric(index[SIZE_COLUMN].replace("", np.nan), errors="raise")
    info = json.loads((out_dir / "summary.json").read_text())
    native = out_dir / "patches_native.npy"
    return LesionSet(np.load(out_dir / "patches.npy", mmap_mode="r"), index, info,
                     np.load(native, mmap_mode="r") if native.exists() else None)


def set_hash(out_dir: Path) -> str:
    """Content hash of a saved lesion set (patches and index), for run provenance."""
    digest = hashlib.sha256()
    for name in ("index.csv", "patches.npy", "patches_native.npy"):
        if name == "patches_native.npy" and not (Path(out_dir) / name).exists():
            continue
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


def cut_both(image: tio.ScalarImage, centres_lps_mm: np.ndarray, copies: np.ndarray, cfg: LesionPatchConfig, seed: int,
             fill_value: float) -> tuple[tuple[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`cut_patches` at ``cfg.fov_mm`` and, when ``cfg.native_fov_mm`` is set, again at that
    field of view with the same draws (same centres, jitter in mm and rotations): ((raw planes,
    raw native planes or None), (centres used, variants, source centre index))."""
    planes, used, variants, source = cut_patches(image, centres_lps_mm, copies, cfg, seed, fill_value)
    native = None
    if cfg.native_fov_mm:
        native, used_native, _, _ = cut_patches(image, centres_lps_mm, copies, replace(cfg, fov_mm=cfg.native_fov_mm), seed, fill_value)
        if not np.allclose(used, used_native):
            raise RuntimeError("the native patches were cut around other centres than the fixed ones")
    return (planes, native), (used, variants, source)


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
    radii = np.array([a["radius_mm"] for a in aneurysms], dtype=float)
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
    sizes = np.r_[2 * radii, np.full(len(centres) - len(radii), np.nan)]
    copies = np.where(labels == 1, cfg.positive_copies, 0)
    low, high = np.percentile(volume, cfg.intensity_percentiles)
    # MR has no absolute scale: the native patches keep the per-volume window, only the field of view is the CNN's
    (planes, native), (used, variants, source) = cut_both(image, centres, copies, cfg, seed, fill_value=0.0)
    rows = pd.DataFrame({"case": meta["case"], "label": labels[source], "variant": variants, "kind": np.array(kinds, dtype=object)[source],
                         "x_lps_mm": used[:, 0], "y_lps_mm": used[:, 1], "z_lps_mm": used[:, 2], "fixed_split": "",
                         SIZE_COLUMN: sizes[source]})
    return window(planes, float(low), float(high)), (None if native is None else window(native, float(low), float(high))), rows


def _case_job(args):
    image_path, mask_path, meta, cfg, seed = args
    return phantom_case_patches(image_path, mask_path, meta, cfg, seed)


def map_cases(job, jobs: list, workers: int, desc: str, progress: bool) -> list:
    """``job(args)`` for every entry of ``jobs``, in ``workers`` spawned processes (torch's thread pools
    do not survive a fork), with a progress bar; the results in the order of ``jobs``."""
    results = []
    with tqdm(total=len(jobs), desc=desc, unit="case", disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            with process_pool(workers, multiprocessing.get_context("spawn")) as pool:
                for result in pool.map(job, jobs):
                    results.append(result)
                    bar.update()
        else:
            for args in jobs:
                results.append(job(args))
                bar.update()
    return results


def join_cases(parts: list[tuple[np.ndarray, np.ndarray | None, pd.DataFrame]], info: dict) -> LesionSet:
    """One lesion set from every case's (patches, native patches or None, index rows)."""
    native = [n for _, n, _ in parts]
    return LesionSet(np.concatenate([x for x, _, _ in parts]), pd.concat([rows for _, _, rows in parts], ignore_index=True),
                     info, None if native[0] is None else np.concatenate(native))


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
        jobs.append((phantom_dir / "images" / f"{case}.nii.gz", mask_path, meta, cfg, seed))
    info = {"source": "phantom_mra", "settings": asdict(cfg)}
    if cfg.native_fov_mm:
        info["native"] = {"fov_mm": cfg.native_fov_mm, "normalisation": f"per-volume percentiles {list(cfg.intensity_percentiles)} (MR)"}
    return join_cases(map_cases(_case_job, jobs, workers, "lesion patches", progress), info)
