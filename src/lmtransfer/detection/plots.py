"""Figures of the detection evaluation: error per landmark group, and truth vs detection on one case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from lmtransfer.detection.evaluate import LPS
from lmtransfer.figures import subplots


def error_boxplot(scored: pd.DataFrame, path: Path, hit_radius_mm: float) -> None:
    """Box plot of localisation error (mm, log scale) per landmark group, every landmark as a dot."""
    errors = scored.dropna(subset=["error_mm"])
    groups = sorted(errors["group"].unique())
    fig, ax = subplots(figsize=(1.6 * max(len(groups), 3) + 2, 4.5))
    if groups:
        data = [errors.loc[errors["group"] == g, "error_mm"].clip(lower=0.1).to_numpy() for g in groups]
        ax.boxplot(data, whis=(5, 95), showfliers=False)
        rng = np.random.default_rng(0)
        for position, values in enumerate(data, start=1):
            ax.scatter(position + rng.uniform(-0.18, 0.18, len(values)), values, s=6, alpha=0.35, color="tab:blue")
        ax.set_xticks(range(1, len(groups) + 1), [f"{g}\n(n={len(d)})" for g, d in zip(groups, data)])
        ax.set_yscale("log")
    ax.axhline(hit_radius_mm, color="tab:red", lw=0.8, ls="--", label=f"{hit_radius_mm:g} mm")
    ax.set_ylabel("localisation error, mm (log)")
    ax.set_title("Landmark detection on held-out cases: error per group (whiskers 5-95 %)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def overlay(image: sitk.Image, scored_case: pd.DataFrame, truth_case: pd.DataFrame, path: Path, cell_mm: float = 2.0) -> None:
    """Coronal and sagittal maximum-intensity projections with true (o) and detected (x) landmarks.

    The image is resampled onto an LPS-aligned grid first, so any orientation is drawn the same
    way: coronal with the patient's right on the viewer's left, sagittal with anterior on the left.
    """
    projection, low, high = _lps_mip(image, cell_mm)
    fig, axes = subplots(1, 2, figsize=(12, 8), gridspec_kw={"width_ratios": [high[0] - low[0], high[1] - low[1]]})
    truth = truth_case.set_index("landmark")
    for ax, axis, label in ((axes[0], 0, "coronal MIP (x: patient right -> left)"), (axes[1], 1, "sagittal MIP (y: anterior -> posterior)")):
        ax.imshow(projection[axis], cmap="gray", origin="lower", extent=(low[axis], high[axis], low[2], high[2]), vmin=-200, vmax=1200)
        for row in scored_case.itertuples():
            known = truth.loc[row.landmark] if row.landmark in truth.index else None
            detected = np.array([getattr(row, c) for c in LPS], dtype=float)
            if known is not None and known["in_image"]:
                t = known[LPS].to_numpy(dtype=float)
                ax.scatter(t[axis], t[2], s=28, facecolors="none", edgecolors="lime" if row.found else "gold", lw=1.2)
                if row.found:
                    ax.plot([t[axis], detected[axis]], [t[2], detected[2]], color="red", lw=0.8)
            if row.found:
                colour = "red" if known is None or known["in_image"] else "magenta"
                ax.scatter(detected[axis], detected[2], marker="x", s=22, color=colour, lw=1.2)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("mm")
        ax.set_ylabel("z (superior), mm")
    present = scored_case[scored_case["present"]]
    median = present["error_mm"].median()
    fig.suptitle(f"{scored_case['case'].iloc[0]}: o truth (green found, yellow missed), x detected (magenta: landmark outside the image); "
                 f"median error {median:.1f} mm, found {int(present['found'].sum())}/{len(present)}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _lps_mip(image: sitk.Image, cell_mm: float) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Maximum projections along y (coronal, [z, x]) and x (sagittal, [z, y]) of the image on an LPS grid."""
    size = np.asarray(image.GetSize())
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) * (size - 1)
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in c)) for c in corners])
    low, high = points.min(axis=0), points.max(axis=0)
    reference = sitk.Image([int(v) for v in np.ceil((high - low) / cell_mm) + 1], sitk.sitkFloat32)
    reference.SetSpacing((cell_mm,) * 3)
    reference.SetOrigin(tuple(float(v) for v in low))
    grid = sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32))
    return [grid.max(axis=1), grid.max(axis=2)], low, high
