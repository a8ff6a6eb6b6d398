"""Smooth random fields: the slab-wise upsampler computes exactly the whole-volume interpolation."""

import numpy as np
import pytest

from lmtransfer.phantoms import noise
from lmtransfer.phantoms.noise import smooth_noise, upsample_linear


def whole_volume_upsample(coarse: np.ndarray, shape, step) -> np.ndarray:
    """The interpolation written out on whole arrays (x, then y, then z; float64 after the first pass)."""
    out = coarse
    for axis in (2, 1, 0):
        if step[axis] == 1:
            continue
        position = np.arange(shape[axis], dtype=np.float32) / step[axis]
        lower = np.minimum(position.astype(np.int64), out.shape[axis] - 2)
        weight = (position - lower).reshape([-1 if a == axis else 1 for a in range(3)])
        out = np.take(out, lower, axis=axis) * (1 - weight) + np.take(out, lower + 1, axis=axis) * weight
    return out.astype(np.float32, copy=False)


@pytest.mark.parametrize("step", [(2, 4, 4), (1, 2, 2), (4, 8, 8), (3, 1, 2)])
@pytest.mark.parametrize("slab_voxels", [1, 700, 1 << 40])
def test_slabs_give_the_bytes_of_the_whole_volume(monkeypatch, step, slab_voxels):
    monkeypatch.setattr(noise, "SLAB_VOXELS", slab_voxels)
    shape = (23, 17, 29)
    coarse_shape = tuple(s if k == 1 else int(np.ceil(s / k)) + 1 for s, k in zip(shape, step))
    coarse = np.random.default_rng(0).standard_normal(coarse_shape, dtype=np.float32)
    out = upsample_linear(coarse, shape, step)
    assert out.dtype == np.float32 and out.shape == shape
    assert np.array_equal(out, whole_volume_upsample(coarse, shape, step))


def test_field_has_unit_variance_and_follows_the_seed():
    a = smooth_noise(np.random.default_rng(1), (20, 30, 40), (1.0, 2.0, 2.0), step=(2, 4, 4))
    b = smooth_noise(np.random.default_rng(1), (20, 30, 40), (1.0, 2.0, 2.0), step=(2, 4, 4))
    assert np.array_equal(a, b)
    assert abs(float(a.mean())) < 1e-5 and abs(float(a.std()) - 1.0) < 1e-3
