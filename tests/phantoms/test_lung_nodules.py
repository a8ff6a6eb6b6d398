"""Nodules and their look-alikes in a synthetic chest: where they go and what they look like."""

import numpy as np
import pytest

from lmtransfer.phantoms.lung_nodules import VESSEL_HU, NoduleConfig, add_nodules
from lmtransfer.phantoms.tissues import Tissue

SPACING = np.array([1.5, 1.5, 1.5])


def _chest(seed=0):
    """A lung ellipsoid in soft tissue, with straight vessels of 2-3 mm crossing it."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:60, :70, :80]
    lung = ((z - 30) / 26) ** 2 + ((y - 35) / 30) ** 2 + ((x - 40) / 35) ** 2 < 1
    labels = np.where(lung, Tissue.LUNG, Tissue.MUSCLE).astype(np.uint8)
    hu = np.where(lung, -860.0, 40.0) + rng.normal(0, 15, lung.shape)
    for k in range(8):
        centre, axis = rng.uniform([15, 15, 15], [45, 55, 65]), rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        offset = np.stack([z, y, x], axis=-1) - centre
        across = offset - (offset @ axis)[..., None] * axis
        hu[lung & (np.linalg.norm(across, axis=-1) < 1.0)] = -60.0
    return np.rint(hu).astype(np.int16), labels


def test_nodules_lie_in_the_lung_and_look_alikes_where_their_kind_says():
    hu, labels = _chest()
    before = hu.copy()
    cfg = NoduleConfig(diameter_mm=(4.0, 12.0), per_case=(3, 3), negatives_per_case=30)
    nodules, sites = add_nodules(hu, labels, SPACING, cfg, 15.0, np.random.default_rng(1))
    assert len(nodules) == 3
    for nodule in nodules:
        centre = tuple(int(c) for c in nodule.centre_zyx)
        assert labels[centre] == Tissue.LUNG                               # inside the lung
        assert hu[centre] > before[centre] + 200                            # and painted
        assert cfg.diameter_mm[0] <= nodule.diameter_mm <= cfg.diameter_mm[1]
    kinds = [kind for _, kind in sites]
    assert set(kinds) >= {"vessel", "branching", "pleura", "parenchyma", "scar"} and len(sites) >= 25
    from scipy import ndimage
    depth = ndimage.distance_transform_edt(labels == Tissue.LUNG, sampling=SPACING)
    for point, kind in sites:
        point = tuple(point)
        assert labels[point] == Tissue.LUNG
        if kind in ("vessel", "branching"):
            assert before[point] > VESSEL_HU and depth[point] >= 3.0           # on a vessel, not the lung's bright edge
        if kind == "pleura":
            assert depth[point] <= 2.0
        gaps = [np.linalg.norm((np.asarray(point) - n.centre_zyx) * SPACING) - n.diameter_mm / 2 for n in nodules]
        assert min(gaps) > cfg.exclusion_mm                                   # no normal patch on a nodule


def test_the_same_seed_paints_the_same_case():
    first, labels = _chest()
    second = first.copy()
    a = add_nodules(first, labels, SPACING, NoduleConfig(), 15.0, np.random.default_rng(5))
    b = add_nodules(second, labels, SPACING, NoduleConfig(), 15.0, np.random.default_rng(5))
    assert np.array_equal(first, second) and a[0] == b[0]


def test_a_case_without_lungs_is_refused_and_bad_settings_too():
    hu, labels = _chest()
    with pytest.raises(ValueError, match="no lung"):
        add_nodules(hu, np.zeros_like(labels), SPACING, NoduleConfig(), 15.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="diameter_mm"):
        NoduleConfig(diameter_mm=(10.0, 3.0))


@pytest.mark.parametrize("pad", [(0, 0), (20, 0), (20, 30)])   # the lung at the grid's edge; in a grid larger than it
def test_the_lung_maps_computed_in_the_lungs_box_are_those_of_the_whole_grid(pad):
    from scipy import ndimage

    from lmtransfer.phantoms.lung_nodules import _lung_maps

    hu, labels = _chest(seed=3)
    hu = np.pad(hu, [pad, pad, (pad[0], 0)], constant_values=40)
    lung = np.pad(labels, [pad, pad, (pad[0], 0)], constant_values=Tissue.MUSCLE) == Tissue.LUNG
    lung[lung.shape[0] // 2, :, 0] = lung[lung.shape[0] // 2, :, 1]   # and one side touching the grid's border
    spacing = np.array([1.6, 1.2, 1.2])
    depth, vessel, centreline, crowding = _lung_maps(hu, lung, spacing)
    # what the whole grid gives (the code before the box)
    whole_depth = ndimage.distance_transform_edt(lung, sampling=spacing)
    whole_vessel = lung & (hu > VESSEL_HU)
    whole_centreline = whole_vessel & (whole_depth >= 3.0) & (hu >= ndimage.maximum_filter(hu, size=3))
    whole_crowding = ndimage.uniform_filter(whole_vessel.astype(np.float32), size=np.maximum(np.rint(7.0 / spacing), 1).astype(int))
    np.testing.assert_array_equal(depth[lung], whole_depth[lung])
    np.testing.assert_array_equal(vessel, whole_vessel)
    np.testing.assert_array_equal(centreline, whole_centreline)
    np.testing.assert_array_equal(crowding[lung], whole_crowding[lung])
    assert centreline.any() and (depth[lung] > 5).any()
