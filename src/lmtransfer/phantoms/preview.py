"""PNG previews of CT volumes: three orthogonal planes with landmarks drawn on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lmtransfer.figures import subplots
from lmtransfer.io.coords import Geometry


def save_preview(
    image: sitk.Image,
    landmarks_lps_mm: dict[str, np.ndarray],
    path: Path,
    *,
    window: tuple[float, float] = (40.0, 400.0),
    near_mm: float = 12.0,
    title: str = "",
) -> Path:
    """Save axial, coronal and sagittal planes with nearby landmarks (within ``near_mm``) drawn.

    The axial plane passes through the middle of the scan, the coronal plane through the median
    AP position of the landmarks (the spine and big vessels), the sagittal plane through the
    median LR position (the midline). Axes are in mm so anisotropic voxels look right.
    Assumes an axis-aligned image (identity direction), as the phantom writes.
    """
    geometry = Geometry.from_sitk(image)
    array = sitk.GetArrayViewFromImage(image)  # [k, j, i]
    names = list(landmarks_lps_mm)
    points = np.array([landmarks_lps_mm[n] for n in names]).reshape(-1, 3)
    ijk = geometry.lps_to_index(points) if len(points) else np.zeros((0, 3))
    spacing = np.asarray(geometry.spacing_mm)
    size = np.asarray(geometry.size_ijk)
    inside = geometry.contains_index(ijk) if len(points) else np.zeros(0, bool)
    centre = np.array([
        np.median(ijk[inside, 0]) if inside.any() else size[0] / 2,
        np.median(ijk[inside, 1]) if inside.any() else size[1] / 2,
        size[2] / 2,
    ])
    ci, cj, ck = (int(np.clip(round(c), 0, s - 1)) for c, s in zip(centre, size))
    level, width = window
    vmin, vmax = level - width / 2, level + width / 2
    origin = np.asarray(geometry.origin_lps_mm)
    ext_i = (origin[0] - spacing[0] / 2, origin[0] + spacing[0] * (size[0] - 0.5))
    ext_j = (origin[1] - spacing[1] / 2, origin[1] + spacing[1] * (size[1] - 0.5))
    ext_k = (origin[2] - spacing[2] / 2, origin[2] + spacing[2] * (size[2] - 0.5))
    planes = [
        ("axial", array[ck, :, :], (ext_i[0], ext_i[1], ext_j[1], ext_j[0]), 2, ck, (0, 1)),
        ("coronal", array[::-1, cj, :], (ext_i[0], ext_i[1], ext_k[0], ext_k[1]), 1, cj, (0, 2)),
        ("sagittal", array[::-1, :, ci], (ext_j[0], ext_j[1], ext_k[0], ext_k[1]), 0, ci, (1, 2)),
    ]
    widths = [ext_i[1] - ext_i[0], ext_i[1] - ext_i[0], ext_j[1] - ext_j[0]]
    fig, axes = subplots(1, 3, figsize=(18, 9), gridspec_kw={"width_ratios": widths})
    for ax, (name, plane, extent, axis, index, (h, v)) in zip(axes, planes):
        ax.imshow(plane, cmap="gray", vmin=vmin, vmax=vmax, extent=extent, interpolation="bilinear")
        plane_mm = origin[axis] + spacing[axis] * index
        for n, p in zip(names, points):
            if abs(p[axis] - plane_mm) <= near_mm:
                ax.plot(p[h], p[v], "o", ms=5, mfc="none", mec="#ff3b30", mew=1.5)
                ax.annotate(n, (p[h], p[v]), color="#ffd60a", fontsize=6, xytext=(3, 3), textcoords="offset points")
        axis_name = "LPS"[axis]
        ax.set_title(f"{name} ({axis_name} = {plane_mm:.0f} mm)")
        ax.set_xlabel(f"{'LPS'[h]} (mm)")
        ax.set_ylabel(f"{'LPS'[v]} (mm)")
    fig.suptitle(title or f"window L{level:.0f}/W{width:.0f}; landmarks within {near_mm:.0f} mm of each plane")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
