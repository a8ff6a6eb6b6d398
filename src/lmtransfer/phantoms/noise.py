"""Smooth Gaussian random fields shared by the phantoms (CT texture and noise, MR coil field and brain texture)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox, step: tuple[int, ...] = (1, 1, 1)) -> np.ndarray:
    """Gaussian random field with unit variance; generated on a grid ``step`` times coarser, then upsampled."""
    coarse_shape = tuple(s if k == 1 else max(int(np.ceil(s / k)) + 1, 2) for s, k in zip(shape, step))
    field_ = rng.standard_normal(coarse_shape, dtype=np.float32)
    field_ = ndimage.gaussian_filter(field_, np.asarray(sigma_vox) / np.asarray(step), mode="wrap", truncate=3.0)
    if step != (1, 1, 1):
        field_ = upsample_linear(field_, shape, step)
    field_ -= field_.mean()
    field_ /= field_.std() + 1e-6
    return field_


def upsample_linear(coarse: np.ndarray, shape: tuple[int, ...], step: tuple[int, ...]) -> np.ndarray:
    """Separable linear interpolation, one axis at a time (the full-size pass runs last, once)."""
    out = coarse
    for axis in (2, 1, 0):
        if step[axis] == 1:
            continue
        position = np.arange(shape[axis], dtype=np.float32) / step[axis]
        lower = np.minimum(position.astype(np.int64), out.shape[axis] - 2)
        weight = (position - lower).reshape([-1 if a == axis else 1 for a in range(3)])
        out = np.take(out, lower, axis=axis) * (1 - weight) + np.take(out, lower + 1, axis=axis) * weight
    return out.astype(np.float32, copy=False)
