"""The body mask and the search grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lmtransfer.detection.body import body_mask, grid_points
from lmtransfer.io.coords import Geometry
from toy_detection import toy_ct


def test_body_mask_keeps_air_inside_the_body_and_drops_the_table():
    image = toy_ct()
    volume, geometry = sitk.GetArrayFromImage(image).T.copy(), Geometry.from_sitk(image)
    volume[(np.abs(geometry.index_to_lps(np.indices(volume.shape).reshape(3, -1).T)) < 8).all(1).reshape(volume.shape)] = -1000  # a "lung"
    lps = geometry.index_to_lps(np.indices(volume.shape).reshape(3, -1).T).reshape(*volume.shape, 3)
    mask = body_mask(volume, geometry, margin_mm=0.0)
    inside = mask.contains(np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 38.0, 0.0], [45.0, 0.0, 0.0], [0.0, 0.0, 200.0]]))
    assert inside.tolist() == [True, True, False, False, False]
    volume[(lps[..., 1] >= 29) & (lps[..., 1] < 36)] = 150.0  # the table touching the back: its sides go
    inside = body_mask(volume, geometry, margin_mm=0.0).contains(np.array([[0.0, 0.0, 0.0], [44.0, 32.0, 0.0], [44.0, 38.0, 0.0]]))
    assert inside.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="body threshold"):
        body_mask(np.full((8, 8, 8), -1000.0), geometry)


def test_grid_points_cover_the_image_with_the_step():
    geometry = Geometry.from_sitk(toy_ct())
    points = grid_points(geometry, 8.0)
    assert np.allclose(np.diff(np.unique(points[:, 0])), 8.0)
    assert geometry.contains_index(geometry.lps_to_index(points)).all()

