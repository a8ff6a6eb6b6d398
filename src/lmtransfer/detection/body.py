"""Where the patient is: a coarse body mask, so detection scores anatomy and not air or the table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lmtransfer.io.coords import Geometry


@dataclass(frozen=True)
class BodyMask:
    """Body voxels on a grid ``factors`` times coarser than the image (``mask[i, j, k]``)."""

    mask: np.ndarray
    factors: tuple[int, int, int]
    geometry: Geometry

    def contains(self, points_lps_mm: np.ndarray) -> np.ndarray:
        """True for points (n, 3) inside the image and inside the body."""
        ijk = self.geometry.lps_to_index(np.asarray(points_lps_mm, dtype=float).reshape(-1, 3))
        inside = self.geometry.contains_index(ijk)
        cell = np.rint(ijk / np.asarray(self.factors)).astype(int)
        cell = np.clip(cell, 0, np.asarray(self.mask.shape) - 1)
        return inside & self.mask[cell[:, 0], cell[:, 1], cell[:, 2]]

    @property
    def fraction(self) -> float:
        return float(self.mask.mean())


def body_mask(volume_ijk: np.ndarray, geometry: Geometry, body_hu: float = -300.0, margin_mm: float = 8.0, cell_mm: float = 4.0,
              opening_mm: float = 8.0) -> BodyMask:
    """The patient: voxels above ``body_hu``, holes filled slice by slice, the table cut off, grown by ``margin_mm``.

    Holes are filled in each axial slice because the lungs and airways are air inside the body
    that a 3D fill cannot close: the trachea leaves the top of the scan. The table touches the
    back, so the mask is first eroded by ``opening_mm`` (thin structures vanish), the largest
    region kept, and then grown back.

    Raises:
        ValueError: no voxel above ``body_hu`` (not a CT in HU, or an empty scan).
    """
    factors = tuple(max(1, int(round(cell_mm / s))) for s in geometry.spacing_mm)
    body = np.asarray(volume_ijk[:: factors[0], :: factors[1], :: factors[2]]) > body_hu
    if not body.any():
        raise ValueError(f"no voxel above the body threshold of {body_hu} HU: is this a CT in HU?")
    axial_axis = int(np.argmax(np.abs(geometry.direction[2])))  # image axis closest to superior
    body = np.moveaxis(body, axial_axis, 0)
    for index in range(body.shape[0]):
        body[index] = ndimage.binary_fill_holes(body[index])
    body = np.moveaxis(body, 0, axial_axis)
    cell = min(s * f for s, f in zip(geometry.spacing_mm, factors))
    shrink = int(round(opening_mm / cell))
    core = ndimage.binary_erosion(body, iterations=shrink) if shrink > 0 else body
    if not core.any():
        core = body  # a body thinner than the opening: keep it whole
    labels, n = ndimage.label(core)
    sizes = ndimage.sum(core, labels, range(1, n + 1))
    core = labels == (1 + int(np.argmax(sizes)))
    if shrink > 0:
        core = ndimage.binary_dilation(core, iterations=shrink) & body
    grow = int(round(margin_mm / cell))
    if grow > 0:
        core = ndimage.binary_dilation(core, iterations=grow)
    return BodyMask(core, factors, geometry)


def grid_points(geometry: Geometry, step_mm: float) -> np.ndarray:
    """A regular LPS grid (n, 3) with ``step_mm`` spacing over the image's bounding box."""
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) * (np.asarray(geometry.size_ijk) - 1)
    corners_lps = geometry.index_to_lps(corners)
    low, high = corners_lps.min(axis=0), corners_lps.max(axis=0)
    axes = [np.arange(lo + (hi - lo) % step_mm / 2, hi + 1e-6, step_mm) for lo, hi in zip(low, high)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
