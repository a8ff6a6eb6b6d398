"""Real lesion data in: MedMNIST 3D ``.npz`` files and LUNA16-style folders, as :class:`LesionSet`.

* MedMNIST 3D (e.g. NoduleMNIST3D, VesselMNIST3D, AdrenalMNIST3D): ``train_images`` /
  ``train_labels``, ``val_*``, ``test_*``; images ``(n, D, H, W)`` uint8. Each image is its own
  case, taken as a 1 mm isotropic volume; its 2.5D patch passes through the volume's centre and
  spans the whole image. Labels in ``positive_labels`` are lesions. The official split is kept
  (train + val for training, test for testing).
* LUNA16: a folder of volumes (``<seriesuid>.mhd`` + ``.raw``, or any format SimpleITK reads)
  and a candidates CSV (``seriesuid, coordX, coordY, coordZ, class``) in world millimetres, which
  in ITK's convention is LPS. One case per series.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchio as tio

from lmtransfer.io.coords import Geometry
from lmtransfer.io.volumes import VolumeReadError, read_geometry
from lmtransfer.sampling.planes import AIR_HU
from lmtransfer.transfer.lesions import INDEX_COLUMNS, LesionPatchConfig, LesionSet, cut_patches, window

MEDMNIST_KEYS = [f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "labels")]
LUNA_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "class"]
VOLUME_SUFFIXES = (".mhd", ".mha", ".nii.gz", ".nii", ".nrrd")


def medmnist_lesion_set(path: Path, positive_labels: tuple[int, ...] = (1,), pixels: int = 32) -> LesionSet:
    """Patches of every image of a MedMNIST 3D file (see the module notes)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: MedMNIST file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz ({exc})") from exc
    with data:
        missing = [k for k in MEDMNIST_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path}: not a MedMNIST 3D file, missing arrays {missing}")
        parts = []
        for split in ("train", "val", "test"):
            images, labels = data[f"{split}_images"], data[f"{split}_labels"].reshape(len(data[f"{split}_images"]), -1)[:, 0]
            if images.ndim == 5 and images.shape[-1] == 1:
                images = images[..., 0]
            if images.ndim != 4:
                raise ValueError(f"{path}: {split}_images has shape {images.shape}, expected (n, D, H, W)")
            parts.append((split, images, labels))
    found = np.unique(np.concatenate([p[2] for p in parts]))
    if not set(positive_labels) & set(found.tolist()):
        raise ValueError(f"{path}: no image has a label in positive_labels {list(positive_labels)} (labels present: {found.tolist()})")
    xs, rows = [], []
    for split, images, labels in parts:
        side = images.shape[1]
        spec_cfg = LesionPatchConfig(fov_mm=float(side), pixels=pixels)
        geometry = Geometry((images.shape[3], images.shape[2], images.shape[1]), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
        centre = geometry.index_to_lps((np.array(geometry.size_ijk, float) - 1) / 2)
        for k in range(len(images)):
            image = tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(images[k].transpose(2, 1, 0)))[None].float(),
                                    affine=np.diag([-1.0, -1.0, 1.0, 1.0]))  # LPS identity grid in TorchIO's RAS affine
            planes, used, _, _ = cut_patches(image, centre, np.zeros(1, int), spec_cfg, seed=k, fill_value=0.0)
            xs.append(window(planes, 0.0, 255.0))
            rows.append((f"{split}_{k:05d}", int(labels[k] in positive_labels), 0, "lesion" if labels[k] in positive_labels else "normal",
                         *used[0], split))
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    return LesionSet(np.concatenate(xs), index, {"source": f"medmnist:{path.name}", "positive_labels": list(positive_labels)})


def read_candidates(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: candidates CSV not found")
    table = pd.read_csv(path)
    missing = [c for c in LUNA_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {LUNA_COLUMNS}")
    bad = ~np.isfinite(table[["coordX", "coordY", "coordZ"]].to_numpy(float)).all(axis=1)
    if bad.any():
        raise ValueError(f"{path}: line(s) {(np.flatnonzero(bad) + 2).tolist()[:10]} have a missing or NaN coordinate")
    if not set(table["class"].unique()) <= {0, 1}:
        raise ValueError(f"{path}: class must be 0 or 1, found {sorted(table['class'].unique())}")
    return table


def _find_volume(folder: Path, uid: str) -> Path | None:
    for suffix in VOLUME_SUFFIXES:
        hits = list(folder.rglob(f"{uid}{suffix}"))
        if hits:
            return hits[0]
    return None


def luna_lesion_set(folder: Path, candidates_csv: Path, cfg: LesionPatchConfig, hu_window: tuple[float, float] = (-1000.0, 400.0),
                    max_negatives_per_case: int = 40) -> LesionSet:
    """Nodule (class 1) and non-nodule (class 0) candidate patches of a LUNA16-style folder.

    Series listed in the CSV without a volume, and candidates outside their volume, are skipped
    with a warning that names them; a series whose volume cannot be read is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: LUNA16 folder not found")
    table = read_candidates(candidates_csv)
    xs, frames = [], []
    for uid, group in table.groupby("seriesuid", sort=True):
        path = _find_volume(folder, str(uid))
        if path is None:
            warnings.warn(f"{candidates_csv}: series {uid} has no volume in {folder}; skipped", stacklevel=2)
            continue
        try:
            read_geometry(path)  # the header first: refuses short files and absurd sizes before any allocation
            image = tio.ScalarImage(path)
            image.load()
        except VolumeReadError as exc:
            raise ValueError(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - re-raised with the file named
            raise ValueError(f"{path}: cannot read volume ({exc})") from exc
        geometry = Geometry.from_ras_affine(image.affine, image.spatial_shape)
        seed = int(hashlib.sha256(f"{cfg.seed}:{uid}".encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        points = group[["coordX", "coordY", "coordZ"]].to_numpy(float)
        inside = geometry.contains_index(geometry.lps_to_index(points))
        if not inside.all():
            warnings.warn(f"{candidates_csv}: {int((~inside).sum())} candidate(s) of {uid} lie outside its volume; skipped", stacklevel=2)
        group = group[inside]
        negatives = group[group["class"] == 0]
        if len(negatives) > max_negatives_per_case:
            negatives = negatives.iloc[np.sort(rng.choice(len(negatives), max_negatives_per_case, replace=False))]
        chosen = pd.concat([group[group["class"] == 1], negatives])
        if chosen.empty:
            continue
        labels = chosen["class"].to_numpy(int)
        copies = np.where(labels == 1, cfg.positive_copies, 0)
        planes, used, variants, source = cut_patches(image, chosen[["coordX", "coordY", "coordZ"]].to_numpy(float), copies, cfg, seed, AIR_HU)
        xs.append(window(planes, *hu_window))
        frames.append(pd.DataFrame({"case": str(uid), "label": labels[source], "variant": variants,
                                    "kind": np.where(labels[source] == 1, "nodule", "candidate"), "x_lps_mm": used[:, 0],
                                    "y_lps_mm": used[:, 1], "z_lps_mm": used[:, 2], "fixed_split": ""}))
    if not frames:
        raise ValueError(f"{candidates_csv}: no candidate falls inside a readable volume of {folder}")
    return LesionSet(np.concatenate(xs), pd.concat(frames, ignore_index=True)[INDEX_COLUMNS],
                     {"source": f"luna16:{folder.name}", "hu_window": list(hu_window)})
