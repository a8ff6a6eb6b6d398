"""Patch cache: every 2.5D patch for one patch setting, cut once and stored as a compact array.

Layout of a cache folder::

    patches.npy   int16 HU, (N, 3, P, P), memory-mappable
    index.csv     row, case, name ("background" for the +1 class), variant, x/y/z_lps_mm
    cache.json    the settings and the manifest hash it was built from, and their key (with the cutting code's digest)
    cases/        per-case pieces while building (an interrupted build resumes from them;
                  removed once patches.npy is complete)

Variant 0 of each centre is the exact patch (validation and test use only it); variants
1..``augmented_copies`` are jittered and rotated copies for training.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torchio as tio
from tqdm import tqdm

from lmtransfer.parallel import process_pool
from lmtransfer.provenance import source_digest
from lmtransfer.io.coords import Geometry
from lmtransfer.sampling.planes import PatchSpec
from lmtransfer.sampling.sampler import NAMES_KEY, POINTS_KEY, LandmarkSampler, background_points, collate

BACKGROUND = "background"


@dataclass(frozen=True)
class PatchCacheConfig:
    """Patch settings (``patches`` in ``params.yaml``)."""

    fov_mm: float = 48.0
    pixels: int = 32
    background_per_case: int = 64
    background_min_distance_mm: float = 20.0
    augmented_copies: int = 3
    jitter_mm: float = 2.0
    rotation_deg: float = 8.0
    seed: int = 0

    @property
    def spec(self) -> PatchSpec:
        return PatchSpec(self.fov_mm, self.pixels)

    def key(self, manifest_hash: str) -> str:
        """What the cut patches depend on: these settings, the manifest (each image's hash included) and
        the code that cuts them (a change to it is not reused from an earlier cache)."""
        text = json.dumps({**asdict(self), "manifest": manifest_hash, "code": source_digest(__name__)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def int16_hu(planes: np.ndarray) -> np.ndarray:
    """Planes in HU rounded to the int16 the cache stores."""
    return np.clip(np.rint(planes), -32768, 32767).astype(np.int16)


def case_seed(cfg: PatchCacheConfig, case: str) -> int:
    """The seed of one case's background points and augmentation: fixed by ``cfg.seed`` and the case name."""
    return int(hashlib.sha256(f"{cfg.seed}:{case}".encode()).hexdigest()[:8], 16)


def case_subject(case: str, rows: pd.DataFrame, cfg: PatchCacheConfig, seed: int) -> tio.Subject:
    """The case's image with its in-image landmarks and ``cfg.background_per_case`` background points
    (drawn with ``seed``) listed for :class:`LandmarkSampler`."""
    image_path = rows["image_path"].iloc[0]
    try:
        image = tio.ScalarImage(image_path)
        volume = image.data[0].numpy()
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise RuntimeError(f"{image_path}: cannot read volume for patches ({exc})") from exc
    geometry = Geometry.from_ras_affine(image.affine, image.spatial_shape)
    names = rows["landmark"].tolist()
    points = rows[["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(float)
    rng = np.random.default_rng(seed)
    background = background_points(volume, geometry, points, cfg.background_per_case, cfg.background_min_distance_mm, rng)
    return tio.Subject(ct=image, case=case, **{POINTS_KEY: np.vstack([points, background]), NAMES_KEY: names + [BACKGROUND] * len(background)})


def _case_patches(case: str, rows: pd.DataFrame, cfg: PatchCacheConfig, seed: int, out_path: Path) -> Path:
    subject = case_subject(case, rows, cfg, seed)
    variants, centres = [], []
    for variant in range(cfg.augmented_copies + 1):
        sampler = LandmarkSampler(cfg.spec, jitter_mm=cfg.jitter_mm if variant else 0.0,
                                  rotation_deg=cfg.rotation_deg if variant else 0.0, seed=seed * 100 + variant)
        planes, used, _ = collate(sampler(subject), cfg.pixels)
        variants.append(int16_hu(planes))
        centres.append(used)
    tmp = out_path.with_name(f".tmp_{out_path.name}")
    with open(tmp, "wb") as handle:
        np.savez(handle, planes=np.stack(variants), centres=np.stack(centres), names=np.array(subject[NAMES_KEY]))
    os.replace(tmp, out_path)
    return out_path


def build_patch_cache(manifest: pd.DataFrame, manifest_hash: str, cfg: PatchCacheConfig, out_dir: Path, workers: int = 1, progress: bool = True) -> Path:
    """Cut all patches for ``cfg`` from the manifest's volumes into ``out_dir`` (resumes per case)."""
    out_dir = Path(out_dir)
    info = {"settings": asdict(cfg), "manifest_hash": manifest_hash, "key": cfg.key(manifest_hash)}
    info_path = out_dir / "cache.json"
    if info_path.exists() and json.loads(info_path.read_text()).get("key") == info["key"] and (out_dir / "patches.npy").exists():
        return out_dir
    pieces = out_dir / "cases"
    pieces.mkdir(parents=True, exist_ok=True)
    marker = pieces / "key.txt"
    if not marker.exists() or marker.read_text() != info["key"]:
        for stale in pieces.glob("*.npz"):
            stale.unlink()
        marker.write_text(info["key"])
    usable = manifest[manifest["in_image"].astype(bool)]
    cases = sorted(usable["case"].unique())
    if not cases:
        raise ValueError("the manifest has no landmark inside an image: nothing to cut patches from")
    todo = [c for c in cases if not (pieces / f"{c}.npz").exists()]
    groups = {c: usable[usable["case"] == c] for c in todo}
    seeds = {c: case_seed(cfg, c) for c in todo}
    bar = tqdm(total=len(cases), initial=len(cases) - len(todo), desc="patches", unit="case", disable=not progress)
    args = [(c, groups[c], cfg, seeds[c], pieces / f"{c}.npz") for c in todo]
    if workers > 1 and len(args) > 1:
        # spawn, not fork: callers such as `lmtransfer tune` run threads (Optuna's heartbeat,
        # torch) whose locks a forked child would inherit held, and hang on
        with process_pool(workers, multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(_case_patches, *zip(*args)):
                bar.update()
    else:
        for a in args:
            _case_patches(*a)
            bar.update()
    bar.close()
    _consolidate(cases, pieces, out_dir, cfg)
    info_path.write_text(json.dumps(info, indent=1))
    shutil.rmtree(pieces)  # the consolidated array holds them all; keeping them would double the disk
    return out_dir


def _consolidate(cases: list[str], pieces: Path, out_dir: Path, cfg: PatchCacheConfig) -> None:
    loaded = [np.load(pieces / f"{c}.npz") for c in cases]
    total = sum(d["planes"].shape[0] * d["planes"].shape[1] for d in loaded)
    p = cfg.pixels
    array = np.lib.format.open_memmap(out_dir / ".tmp_patches.npy", mode="w+", dtype=np.int16, shape=(total, 3, p, p))
    rows, at = [], 0
    for case, data in zip(cases, loaded):
        planes, centres, names = data["planes"], data["centres"], data["names"]
        for variant in range(planes.shape[0]):
            n = planes.shape[1]
            array[at : at + n] = planes[variant]
            for k in range(n):
                rows.append((case, str(names[k]), variant, *centres[variant, k]))
            at += n
    array.flush()
    del array
    os.replace(out_dir / ".tmp_patches.npy", out_dir / "patches.npy")
    index = pd.DataFrame(rows, columns=["case", "name", "variant", "x_lps_mm", "y_lps_mm", "z_lps_mm"])
    index.insert(0, "row", np.arange(len(index)))
    index.to_csv(out_dir / "index.csv", index=False, float_format="%.3f")


def load_cache(out_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """The patch array (memory-mapped) and its index table."""
    out_dir = Path(out_dir)
    return np.load(out_dir / "patches.npy", mmap_mode="r"), pd.read_csv(out_dir / "index.csv")


def split_cases(cases: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Train / validation / test cases (never patches), fixed by ``seed``."""
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    order = sorted(cases)
    rng = np.random.default_rng(seed)
    order = [order[i] for i in rng.permutation(len(order))]
    n_val = max(1, int(round(fractions[1] * len(order)))) if fractions[1] > 0 else 0
    n_test = max(1, int(round(fractions[2] * len(order)))) if fractions[2] > 0 else 0
    if n_val + n_test >= len(order):
        raise ValueError(f"{len(order)} cases are too few for a train/validation/test split")
    return {"train": sorted(order[n_val + n_test :]), "val": sorted(order[:n_val]), "test": sorted(order[n_val : n_val + n_test])}
