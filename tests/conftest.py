"""Shared test helpers: small images with chosen geometry, and the path to ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_image(size=(12, 10, 8), spacing=(0.8, 1.1, 2.5), origin=(-20.0, 35.0, -110.0), direction=None, dtype=np.int16) -> sitk.Image:
    """A volume whose voxel values encode their index (value = i + 100 j + 10000 k, modulo dtype)."""
    i, j, k = np.meshgrid(*(np.arange(s) for s in size), indexing="ij")
    values = (i + 100 * j + 1000 * k).transpose(2, 1, 0).astype(dtype)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    return image


def oblique_direction() -> np.ndarray:
    """A proper rotation that mixes all three axes (an oblique acquisition)."""
    a, b = np.deg2rad(25.0), np.deg2rad(-40.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


DIRECTIONS = {
    "identity": np.eye(3),
    "flipped_y": np.diag([1.0, -1.0, 1.0]),
    "ras_like": np.diag([-1.0, -1.0, 1.0]),
    "permuted": np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    "oblique": oblique_direction(),
}


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"{SHARED_DATA} is missing: tests need ../shared/data beside the project")
    return SHARED_DATA
