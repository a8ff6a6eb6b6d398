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
        rotations: (m, 3, 3) rotations of each patch frame (augmentation), or None.
        fill_hu: value outside the image: a landmark near the border is padded, never dropped.

    Unrotated patches of an axis-aligned image (any flips, permutations and spacing) take a
    separable path: two voxel slices around each plane, then a row and a column interpolation
    matrix. It gives the same numbers as general trilinear interpolation, several times faster.
    Rotated patches, oblique images and patches reaching past the border take the general path.
    """
    centres = np.asarray(centres_lps_mm, dtype=float).reshape(-1, 3)
    out = np.empty((len(centres), 3, spec.pixels, spec.pixels), dtype=np.float32)
    general = np.ones(len(centres), dtype=bool)
    if rotations is None and len(centres):
        general = ~_sample_axis_aligned(volume_ijk, geometry, centres, spec, out)
    if general.any():
        rot = None if rotations is None else np.asarray(rotations)[general]
        points = plane_points_lps(centres[general], spec, rot)
        ijk = geometry.lps_to_index(points.reshape(-1, 3))
        values = ndimage.map_coordinates(volume_ijk, ijk.T, order=1, mode="constant", cval=fill_hu, output=np.float32, prefilter=False)
        out[general] = values.reshape(points.shape[:-1])
    return out


def _sample_axis_aligned(volume_ijk: np.ndarray, geometry: Geometry, centres_lps_mm: np.ndarray, spec: PatchSpec, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` for the patches that lie wholly inside an axis-aligned image; returns which did.

    For plane p, rows step along one image axis, columns along another and the third is fixed,
    so its pixels are ``W_row @ (slice mix) @ W_col.T`` over a small voxel block.
    """
    lps_to_ijk = np.linalg.inv(geometry.direction * np.asarray(geometry.spacing_mm))  # index per mm
    significant = np.abs(lps_to_ijk) > 1e-9 * np.abs(lps_to_ijk).max()
    if not (significant.sum(axis=0) == 1).all():
        return np.zeros(len(centres_lps_mm), dtype=bool)  # oblique: no separable path
    size = np.asarray(volume_ijk.shape)
    centres = geometry.lps_to_index(centres_lps_mm)
    u = spec.offsets_mm()
    done = np.ones(len(centres), dtype=bool)
    for p in range(3):
        step_row, step_col = lps_to_ijk @ PLANE_AXES[p, 0], lps_to_ijk @ PLANE_AXES[p, 1]
        a_row, a_col = int(np.argmax(np.abs(step_row))), int(np.argmax(np.abs(step_col)))
        a_fix = 3 - a_row - a_col
        t_row = centres[:, a_row, None] + u[None] * step_row[a_row]  # (m, P) voxel coordinates
        t_col = centres[:, a_col, None] + u[None] * step_col[a_col]
        t_fix = centres[:, a_fix]
        n_row = int(np.ceil(abs(step_row[a_row]) * (u[-1] - u[0]) - 1e-9)) + 2
        n_col = int(np.ceil(abs(step_col[a_col]) * (u[-1] - u[0]) - 1e-9)) + 2
        window = np.empty(3, dtype=int)
        window[[a_row, a_col, a_fix]] = n_row, n_col, 2
        if (window > size).any():
            return np.zeros(len(centres), dtype=bool)
        base = np.empty((len(centres), 3), dtype=int)
        base[:, a_row] = np.floor(t_row.min(axis=1))
        base[:, a_col] = np.floor(t_col.min(axis=1))
        base[:, a_fix] = np.floor(t_fix)
        done &= ((base >= 0) & (base + window <= size)).all(axis=1)
        base = np.clip(base, 0, size - window)  # patches outside are redone by the general path
        blocks = np.lib.stride_tricks.sliding_window_view(volume_ijk, tuple(window))[base[:, 0], base[:, 1], base[:, 2]]
        blocks = blocks.transpose(0, 1 + a_row, 1 + a_col, 1 + a_fix)  # (m, n_row, n_col, 2)
        frac_fix = (t_fix - base[:, a_fix]).astype(np.float32)[:, None, None]
        mixed = blocks[..., 0] * (1 - frac_fix) + blocks[..., 1] * frac_fix
        w_row = _linear_weights(t_row - base[:, a_row, None], n_row)
        w_col = _linear_weights(t_col - base[:, a_col, None], n_col)
        out[:, p] = w_row @ mixed.astype(np.float32, copy=False) @ w_col.transpose(0, 2, 1)
    return done


def _linear_weights(t: np.ndarray, n: int) -> np.ndarray:
    """(m, P, n) linear interpolation matrices for block-relative coordinates ``t`` (m, P)."""
    floor = np.floor(t)
    frac = (t - floor).astype(np.float32)[..., None]
    cell = np.clip(floor.astype(int), 0, n - 2)[..., None]  # out of range only for patches redone elsewhere
    weights = np.zeros((*t.shape, n), dtype=np.float32)
    np.put_along_axis(weights, cell, 1 - frac, axis=-1)
    np.put_along_axis(weights, cell + 1, frac, axis=-1)
    return weights


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
