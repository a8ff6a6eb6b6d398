"""2.5D patches: axial, coronal and sagittal planes through a point, resampled isotropically in mm.

A patch is ``(3, P, P)``: channel 0 axial (rows run anterior -> posterior, columns right -> left
of the patient, as radiologists view it), channel 1 coronal and channel 2 sagittal (rows run
superior -> inferior; columns right -> left and anterior -> posterior). The field of view is
``fov_mm`` on each side whatever the voxel spacing, so planes are square in millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lmtransfer.io.coords import Geometry

AIR_HU = -1024.0
_E = np.eye(3)
# (row direction, column direction) of each plane in LPS
PLANE_AXES = np.array([
    [_E[1], _E[0]],   # axial: rows +P, columns +L
    [-_E[2], _E[0]],  # coronal: rows -S, columns +L
    [-_E[2], _E[1]],  # sagittal: rows -S, columns +P
])


@dataclass(frozen=True)
class PatchSpec:
    """Patch geometry: ``fov_mm`` square field of view sampled on ``pixels`` x ``pixels``."""

    fov_mm: float = 48.0
    pixels: int = 32

    def __post_init__(self) -> None:
        if self.fov_mm <= 0 or self.pixels < 4:
            raise ValueError(f"patch needs fov_mm > 0 and pixels >= 4, got {self.fov_mm}, {self.pixels}")

    @property
    def pixel_mm(self) -> float:
        return self.fov_mm / self.pixels

    def offsets_mm(self) -> np.ndarray:
        """Pixel-centre offsets from the patch centre along one side, mm."""
        return (np.arange(self.pixels) - (self.pixels - 1) / 2.0) * self.pixel_mm


def plane_points_lps(centres_lps_mm: np.ndarray, spec: PatchSpec, rotations: np.ndarray | None = None) -> np.ndarray:
    """Physical positions of every pixel: ``(m, 3 planes, P, P, 3)`` in LPS mm.

    ``rotations`` (m, 3, 3) turn each patch's frame about its centre (augmentation).
    """
    centres = np.asarray(centres_lps_mm, dtype=float).reshape(-1, 3)
    u = spec.offsets_mm()
    # (3 planes, P, P, 3): row offset * row direction + column offset * column direction
    local = u[None, :, None, None] * PLANE_AXES[:, 0][:, None, None, :] + u[None, None, :, None] * PLANE_AXES[:, 1][:, None, None, :]
    if rotations is None:
        return centres[:, None, None, None, :] + local[None]
    rotated = np.einsum("mab,pijb->mpija", np.asarray(rotations, dtype=float), local)
    return centres[:, None, None, None, :] + rotated


def sample_planes(
    volume_ijk: np.ndarray,
    geometry: Geometry,
    centres_lps_mm: np.ndarray,
    spec: PatchSpec,
    rotations: np.ndarray | None = None,
    fill_hu: float = AIR_HU,
) -> np.ndarray:
    """Cut 2.5D patches ``(m, 3, P, P)`` (float32 HU) with trilinear interpolation.

    Args:
        volume_ijk: voxel array indexed ``[i, j, k]`` (TorchIO order; for a SimpleITK array
            ``[k, j, i]`` pass ``array.T``).
        geometry: where the voxel grid lies (any direction cosines, anisotropic spacing).
        centres_lps_mm: (m, 3) patch centres.
        fill_hu: value outside the image: a landmark near the border is padded, never dropped.
    """
    points = plane_points_lps(centres_lps_mm, spec, rotations)
    ijk = geometry.lps_to_index(points.reshape(-1, 3))
    values = ndimage.map_coordinates(volume_ijk, ijk.T, order=1, mode="constant", cval=fill_hu, output=np.float32, prefilter=False)
    return values.reshape(points.shape[:-1])


def small_rotations(rng: np.random.Generator, count: int, max_deg: float) -> np.ndarray:
    """Random rotations (count, 3, 3) with angles up to ``max_deg`` about a random axis."""
    axes = rng.normal(size=(count, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.deg2rad(rng.uniform(-max_deg, max_deg, count))
    k = np.zeros((count, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
    k = k - k.transpose(0, 2, 1)
    s, c = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    return np.eye(3)[None] + s * k + (1 - c) * (k @ k)
