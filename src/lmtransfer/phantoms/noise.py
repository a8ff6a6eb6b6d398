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


#: output voxels per slab of :func:`upsample_linear`: its float64 temporaries then stay in the CPU cache
SLAB_VOXELS = 1 << 16


def upsample_linear(coarse: np.ndarray, shape: tuple[int, ...], step: tuple[int, ...]) -> np.ndarray:
    """Separable linear interpolation to ``shape`` (float32), computed slab by slab along the first axis.

    Each output value is the same float64 expression of the coarse values (x, then y, then z
    interpolation) whichever slab it falls in, so the slab size changes the speed, not the bytes.
    """
    weights = {axis: _axis_weights(shape[axis], coarse.shape[axis], step[axis]) for axis in range(3) if step[axis] != 1}
    out = np.empty(shape, dtype=np.float32)
    rows = max(1, SLAB_VOXELS // (shape[1] * shape[2]))
    for start in range(0, shape[0], rows):
        stop = min(start + rows, shape[0])
        if 0 in weights:
            lower, weight = weights[0]
            first = int(lower[start])
            planes, axis0 = coarse[first : int(lower[stop - 1]) + 2], (lower[start:stop] - first, weight[start:stop])
        else:
            planes, axis0 = coarse[start:stop], None
        for axis in (2, 1):
            if axis in weights:
                planes = _interpolate(planes, axis, *weights[axis])
        if axis0 is not None:
            planes = _interpolate(planes, 0, *axis0)
        out[start:stop] = planes
    return out


def _axis_weights(n_out: int, n_coarse: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower coarse index and float64 weight of the upper neighbour for each output index."""
    position = np.arange(n_out, dtype=np.float32) / step
    lower = np.minimum(position.astype(np.int64), n_coarse - 2)
    return lower, position - lower


def _interpolate(values: np.ndarray, axis: int, lower: np.ndarray, weight: np.ndarray) -> np.ndarray:
    weight = weight.reshape([-1 if a == axis else 1 for a in range(3)])
    return np.take(values, lower, axis=axis) * (1 - weight) + np.take(values, lower + 1, axis=axis) * weight
