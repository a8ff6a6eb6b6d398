import numpy as np
import pytest

from conftest import DIRECTIONS, make_image
from lmtransfer.io.coords import Geometry, ijk_to_array_index, ras_to_lps, to_lps


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_index_to_lps_matches_simpleitk(name):
    image = make_image(direction=DIRECTIONS[name])
    geometry = Geometry.from_sitk(image)
    rng = np.random.default_rng(0)
    ijk = rng.uniform(-1, 9, size=(20, 3))
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in ijk])
    np.testing.assert_allclose(geometry.index_to_lps(ijk), expected, atol=1e-9)
    np.testing.assert_allclose(geometry.lps_to_index(expected), ijk, atol=1e-9)


def test_anisotropic_spacing_scales_each_axis():
    geometry = Geometry.from_sitk(make_image(spacing=(0.5, 1.0, 3.0), origin=(0, 0, 0)))
    np.testing.assert_allclose(geometry.index_to_lps([2, 2, 2]), [1.0, 2.0, 6.0])


def test_orientation_codes():
    assert Geometry.from_sitk(make_image()).orientation == "LPS"
    assert Geometry.from_sitk(make_image(direction=DIRECTIONS["ras_like"])).orientation == "RAS"
    assert Geometry.from_sitk(make_image(direction=DIRECTIONS["flipped_y"])).orientation == "LAS"


def test_contains_index_has_half_voxel_margin():
    geometry = Geometry.from_sitk(make_image(size=(4, 4, 4)))
    inside = geometry.contains_index(np.array([[-0.49, 0, 0], [3.49, 3, 3], [-0.51, 0, 0], [0, 0, 3.6]]))
    assert inside.tolist() == [True, True, False, False]


def test_ras_lps_flip_and_voxel_space():
    np.testing.assert_allclose(ras_to_lps([10, -20, 30]), [-10, 20, 30])
    geometry = Geometry.from_sitk(make_image(direction=DIRECTIONS["oblique"]))
    np.testing.assert_allclose(to_lps(np.array([[1, 2, 3]]), "voxel", geometry), geometry.index_to_lps([[1, 2, 3]]))
    with pytest.raises(ValueError, match="unknown coordinate system"):
        to_lps(np.zeros(3), "MNI")
    with pytest.raises(ValueError, match="geometry"):
        to_lps(np.zeros(3), "IJK")


def test_array_index_order_is_k_j_i():
    """The classic transpose bug: sitk indexes (i, j, k), its NumPy arrays [k, j, i]."""
    import SimpleITK as sitk

    image = make_image(size=(12, 10, 8))
    array = sitk.GetArrayFromImage(image)
    assert array[ijk_to_array_index([3, 4, 5])] == 3 + 100 * 4 + 1000 * 5
