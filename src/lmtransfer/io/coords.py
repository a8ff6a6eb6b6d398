"""Coordinate frames: physical LPS millimetres <-> continuous voxel indices.

Conventions used across the project:

* ``*_lps_mm``: physical position in the patient frame used by ITK/DICOM (x towards the
  patient's Left, y towards Posterior, z towards Superior), in millimetres.
* ``*_ras_mm``: the frame of NIfTI headers and 3D Slicer's default (x Right, y Anterior,
  z Superior). It differs from LPS by the sign of x and y.
* ``*_ijk``: continuous voxel index in SimpleITK order (i along the first image axis, ...).
  Voxel centres sit at integer indices.
* NumPy arrays from ``sitk.GetArrayFromImage`` are indexed ``[k, j, i]``; use
  :func:`ijk_to_array_index` rather than transposing by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk

CoordinateSpace = Literal["LPS", "RAS", "IJK"]
_RAS_FLIP = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """Where an image's voxel grid lies in physical space.

    Attributes:
        size_ijk: number of voxels along (i, j, k).
        spacing_mm: voxel spacing along (i, j, k), mm.
        origin_lps_mm: physical position of voxel (0, 0, 0), mm.
        direction: 3 x 3 matrix whose column c is the LPS unit vector of image axis c.
    """

    size_ijk: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction: np.ndarray

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Geometry:
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        return cls(
            size_ijk=tuple(int(s) for s in image.GetSize()),
            spacing_mm=tuple(float(s) for s in image.GetSpacing()),
            origin_lps_mm=tuple(float(o) for o in image.GetOrigin()),
            direction=np.asarray(image.GetDirection(), dtype=float).reshape(3, 3),
        )

    @classmethod
    def from_ras_affine(cls, affine: np.ndarray, size_ijk: tuple[int, int, int]) -> Geometry:
        """From a NIfTI/TorchIO 4 x 4 affine (voxel index -> RAS mm)."""
        affine = np.asarray(affine, dtype=float)
        flip = np.diag(_RAS_FLIP)
        matrix = flip @ affine[:3, :3]
        spacing = np.linalg.norm(matrix, axis=0)
        return cls(
            size_ijk=tuple(int(s) for s in size_ijk),
            spacing_mm=tuple(float(s) for s in spacing),
            origin_lps_mm=tuple(float(o) for o in flip @ affine[:3, 3]),
            direction=matrix / spacing,
        )

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (..., 3) -> physical LPS mm (..., 3)."""
        ijk = np.asarray(ijk, dtype=float)
        scaled = ijk * np.asarray(self.spacing_mm)
        return scaled @ self.direction.T + np.asarray(self.origin_lps_mm)

    def lps_to_index(self, lps_mm: np.ndarray) -> np.ndarray:
        """Physical LPS mm (..., 3) -> continuous voxel indices (..., 3)."""
        offset = np.asarray(lps_mm, dtype=float) - np.asarray(self.origin_lps_mm)
        # direction may be non-orthogonal (sheared DICOM); solve rather than transpose.
        scaled = np.linalg.solve(self.direction, offset.reshape(-1, 3).T).T
        return (scaled / np.asarray(self.spacing_mm)).reshape(offset.shape)

    def contains_index(self, ijk: np.ndarray) -> np.ndarray:
        """True where a continuous index lies inside the image (within half a voxel of a centre)."""
        ijk = np.asarray(ijk, dtype=float)
        upper = np.asarray(self.size_ijk, dtype=float) - 0.5
        return np.all((ijk >= -0.5) & (ijk <= upper), axis=-1)

    @property
    def orientation(self) -> str:
        """Three-letter ITK/DICOM orientation code, e.g. ``"LPS"`` for an identity direction."""
        flat = tuple(float(v) for v in self.direction.ravel())
        return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(flat)


def ras_to_lps(ras_mm: np.ndarray) -> np.ndarray:
    """RAS mm -> LPS mm (the same flip works both ways)."""
    return np.asarray(ras_mm, dtype=float) * _RAS_FLIP


lps_to_ras = ras_to_lps


def to_lps(points: np.ndarray, space: str, geometry: Geometry | None = None) -> np.ndarray:
    """Convert points (..., 3) given in ``space`` to physical LPS mm.

    ``IJK`` (voxel) input needs the image ``geometry``.
    """
    space_upper = space.strip().upper()
    if space_upper == "LPS":
        return np.asarray(points, dtype=float)
    if space_upper == "RAS":
        return ras_to_lps(points)
    if space_upper in {"IJK", "VOXEL"}:
        if geometry is None:
            raise ValueError("voxel (IJK) coordinates need the image geometry")
        return geometry.index_to_lps(points)
    raise ValueError(f"unknown coordinate system {space!r}; expected LPS, RAS or IJK/voxel")


def ijk_to_array_index(ijk: np.ndarray) -> tuple[int, int, int]:
    """Nearest voxel of a continuous (i, j, k) as an index into a NumPy array ``[k, j, i]``."""
    i, j, k = (int(round(float(v))) for v in ijk)
    return k, j, i
