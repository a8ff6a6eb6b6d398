"""How close is the phantom to real CT? Per-tissue HU statistics, noise and texture, side by side.

The real reference is a CT series with a TotalSegmentator-style label map. The label map is
resampled onto the CT grid in physical space (the two may differ voxel for voxel, e.g. a flipped
axis), so tissues are paired by position, never by array index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from lmtransfer.figures import subplots
from lmtransfer.io.volumes import read_volume
from lmtransfer.phantoms.tissues import Tissue

# TotalSegmentator v2 label ids for the tissues compared here
TOTALSEG = {
    "liver": [5],
    "spleen": [1],
    "aorta": [52],
    "inferior vena cava": [63],
    "muscle (back)": [86, 87],
    "bone (vertebrae, ribs)": [*range(25, 51), *range(92, 117)],
}
PHANTOM = {
    "liver": [Tissue.LIVER],
    "spleen": [Tissue.SPLEEN],
    "aorta": [Tissue.ARTERY],
    "inferior vena cava": [Tissue.VEIN],
    "muscle (back)": [Tissue.MUSCLE],
    "bone (vertebrae, ribs)": [Tissue.CORTICAL_BONE, Tissue.CANCELLOUS_BONE, Tissue.MARROW],
}


def tissue_stats(hu: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, spread and percentiles of HU in ``mask``; ``noise``: std of neighbour differences / sqrt 2.

    The noise estimate uses in-plane neighbours inside a mask eroded by two voxels, so edges
    between tissues do not count as noise.
    """
    values = hu[mask].astype(float)
    core = ndimage.binary_erosion(mask, iterations=2)
    pairs = core[:, :, 1:] & core[:, :, :-1]
    diffs = (hu[:, :, 1:].astype(float) - hu[:, :, :-1].astype(float))[pairs]
    return {
        "voxels": int(mask.sum()),
        "mean_hu": float(values.mean()) if values.size else float("nan"),
        "std_hu": float(values.std()) if values.size else float("nan"),
        "p05_hu": float(np.percentile(values, 5)) if values.size else float("nan"),
        "p95_hu": float(np.percentile(values, 95)) if values.size else float("nan"),
        "noise_hu": float(diffs.std() / np.sqrt(2)) if diffs.size > 50 else float("nan"),
    }


def _fat_mask(hu: np.ndarray, unlabelled: np.ndarray) -> np.ndarray:
    body = ndimage.binary_fill_holes(ndimage.binary_opening(hu > -400, iterations=2))
    return body & unlabelled & (hu > -250) & (hu < -40)


def real_reference(dicom_dir: Path, seg_path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """HU array of the real series and tissue masks from its segmentation, paired in physical space."""
    image = read_volume(dicom_dir)
    seg = sitk.ReadImage(str(seg_path))
    seg_on_ct = sitk.Resample(seg, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, seg.GetPixelID())
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    labels = sitk.GetArrayFromImage(seg_on_ct)
    masks = {name: np.isin(labels, ids) for name, ids in TOTALSEG.items()}
    masks["fat (body, -250..-40 HU)"] = _fat_mask(hu, labels == 0)
    return hu, masks


def phantom_reference(image_path: Path, label_path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path))).astype(np.float32)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    masks = {name: np.isin(labels, [int(t) for t in ids]) for name, ids in PHANTOM.items()}
    body_fat = np.isin(labels, [int(Tissue.FAT), int(Tissue.ABDOMEN)])
    masks["fat (body, -250..-40 HU)"] = body_fat & (hu > -250) & (hu < -40)
    return hu, masks


def compare(real_dicom: Path, real_seg: Path, phantom_cases: list[tuple[Path, Path]], out_dir: Path) -> pd.DataFrame:
    """Write ``realism.csv`` and ``realism_histograms.png``; return the table (one row per tissue and source)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    real_hu, real_masks = real_reference(real_dicom, real_seg)
    rows = [{"source": "real CT", "tissue": name, **tissue_stats(real_hu, mask)} for name, mask in real_masks.items()]
    phantom_values: dict[str, list[np.ndarray]] = {name: [] for name in real_masks}
    for image_path, label_path in phantom_cases:
        hu, masks = phantom_reference(image_path, label_path)
        for name, mask in masks.items():
            rows.append({"source": f"phantom {Path(image_path).name}", "tissue": name, **tissue_stats(hu, mask)})
            phantom_values[name].append(hu[mask])
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "realism.csv", index=False, float_format="%.1f")

    names = list(real_masks)
    fig, axes = subplots(2, (len(names) + 1) // 2, figsize=(5 * ((len(names) + 1) // 2), 8))
    for ax, name in zip(axes.ravel(), names):
        real_values = real_hu[real_masks[name]]
        lo, hi = np.percentile(real_values, [0.5, 99.5]) if real_values.size else (-1000, 1000)
        bins = np.linspace(lo - 50, hi + 50, 80)
        ax.hist(real_values, bins=bins, density=True, alpha=0.55, label="real CT")
        if phantom_values[name]:
            ax.hist(np.concatenate(phantom_values[name]), bins=bins, density=True, alpha=0.55, label="phantom")
        ax.set_title(name)
        ax.set_xlabel("HU")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "realism_histograms.png", dpi=90)
    return table
