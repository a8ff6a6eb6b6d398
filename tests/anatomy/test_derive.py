"""Landmarks from label maps: definitions on shapes with known answers, the real TotalSegmentator
maps in ../shared/data, and the same points whatever grid the map is stored on."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lmtransfer.anatomy.derive import derive_landmarks, fit_sphere
from lmtransfer.anatomy.labels import LabelTable
from lmtransfer.phantoms.torso_anatomy import LANDMARKS

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ABDOMEN_SEG = SHARED / "real_abdomen_ct" / "seg_totalsegmentator_v1.nii.gz"
V1 = SHARED / "real_abdomen_ct" / "labels_totalsegmentator_v1.csv"
V2 = LabelTable.built_in()


@pytest.fixture(scope="module")
def abdomen():
    seg = sitk.ReadImage(str(ABDOMEN_SEG))
    derived, summary = derive_landmarks(seg, LabelTable.resolve(V1))
    return seg, derived.set_index("landmark"), summary


def points(derived):
    return derived.loc[derived["derived"], ["x", "y", "z"]]


def label_image(array_kji: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array_kji.astype(np.uint8))
    image.SetSpacing(spacing)
    return image


def test_every_landmark_kind_has_a_definition_or_a_reason(abdomen):
    _, derived, _ = abdomen
    assert list(derived.index) == list(LANDMARKS)
    assert (derived["definition"].str.len() > 20).all()
    assert (derived.loc[~derived["derived"], "reason"].str.len() > 10).all()


def test_the_real_abdomen_gives_its_lumbar_spine_kidneys_hips_and_aortic_bifurcation(abdomen):
    _, derived, summary = abdomen
    assert summary["derived"] == 19 and summary["inconsistencies"] == [] and summary["non_integer_voxels"] == 0
    spine = points(derived).loc[[f"L{i}_body_centre" for i in range(1, 6)]]
    steps = -np.diff(spine["z"].to_numpy())
    assert np.all((steps > 25) & (steps < 45)), steps          # lumbar bodies ~35 mm apart, head to feet
    assert spine["x"].abs().max() < 15                            # on the midline
    heads = points(derived).loc[["femoral_head_centre_L", "femoral_head_centre_R"]]
    assert heads.loc["femoral_head_centre_L", "x"] > 60 and heads.loc["femoral_head_centre_R", "x"] < -60
    assert spine.loc["L5_body_centre", "z"] < derived.loc["aortic_bifurcation", "z"] < spine.loc["L3_body_centre", "z"]
    # the map's upper edge cuts T11, T12, the spleen and the liver dome: refused, with the reason
    for kind in ("T12_body_centre", "spleen_upper_pole", "liver_dome"):
        assert not derived.loc[kind, "derived"] and "edge of the scan" in derived.loc[kind, "reason"]
    assert "not in the label table" in derived.loc["jugular_notch", "reason"]  # v1 has no sternum


def test_the_wrong_label_table_contradicts_anatomy():
    _, summary = derive_landmarks(sitk.ReadImage(str(ABDOMEN_SEG)), V2)   # v1 ids read as v2
    assert any("is not above" in problem for problem in summary["inconsistencies"])


def test_the_flipped_dicom_segmentation_is_read_in_physical_space():
    # the shared 40 mm slab of upper abdomen (v2 ids, y axis stored flipped): every structure there is cut
    derived, summary = derive_landmarks(sitk.ReadImage(str(SHARED / "real_ct_dicom_seg.nii.gz")), V2)
    assert summary["derived"] == 0 and summary["unknown_label_ids"] == []
    assert "vertebrae_T12 is cut by the edge of the scan" == derived.set_index("landmark").loc["T12_body_centre", "reason"]


@pytest.mark.parametrize("stored", ["flipped", "permuted", "float64"])
def test_the_same_map_on_another_grid_gives_the_same_points(abdomen, stored):
    seg, derived, _ = abdomen
    other = {"flipped": lambda: sitk.Flip(seg, [False, True, True]), "permuted": lambda: sitk.PermuteAxes(seg, [2, 0, 1]),
             "float64": lambda: sitk.Cast(seg, sitk.sitkFloat64)}[stored]()
    again, _ = derive_landmarks(other, LabelTable.resolve(V1))
    assert np.allclose(points(again.set_index("landmark")), points(derived), atol=1e-6)


def test_an_oblique_resampled_map_gives_the_points_within_its_voxel_size(abdomen):
    seg, derived, _ = abdomen
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(np.deg2rad(10), 0.0, np.deg2rad(15))
    direction = np.asarray(rotation.GetMatrix()).reshape(3, 3) @ np.asarray(seg.GetDirection()).reshape(3, 3)
    size, spacing = np.asarray(seg.GetSize()), np.asarray(seg.GetSpacing())
    centre = np.asarray(seg.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    new_size = (size * spacing / 2.0 * 1.25).astype(int)
    grid = sitk.Image([int(s) for s in new_size], sitk.sitkUInt8)
    grid.SetSpacing((2.0, 2.0, 2.0))
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin((centre - direction @ ((new_size - 1) / 2 * 2.0)).tolist())
    oblique = sitk.Resample(sitk.Cast(seg, sitk.sitkUInt8), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    again = points(derive_landmarks(oblique, LabelTable.resolve(V1))[0].set_index("landmark"))
    both = points(derived).index
    error = np.linalg.norm(again.loc[both].to_numpy() - points(derived).to_numpy(), axis=1)
    assert error.max() < 6.0 and np.median(error) < 2.0, dict(zip(both, error.round(2)))   # 6 mm: two 3 mm voxels


def test_a_non_integer_label_map_is_rounded_and_counted():
    labels = np.zeros((20, 20, 20), np.float32)
    labels[5:10, 5:10, 5:10] = 5.0
    labels[6, 6, 6] = 4.6
    image = sitk.GetImageFromArray(labels)
    _, summary = derive_landmarks(image, V2)
    assert summary["non_integer_voxels"] == 1


def test_the_body_centre_leaves_out_the_posterior_elements():
    # a vertebra on a 1 mm grid: a 30 x 24 x 22 mm body (L-R, A-P, S-I) and a 6 mm thick arch and process behind it
    kji = np.zeros((60, 120, 80), np.uint8)        # (z, y, x): 60 mm high, 120 mm deep, 80 mm wide
    body = (slice(19, 41), slice(20, 44), slice(25, 55))
    kji[body] = 1
    kji[27:33, 44:90, 37:43] = 1                   # arch and spinous process, 46 mm behind the body
    kji[27:33, 44:50, 25:55] = 1                   # pedicles and laminae
    image = label_image(kji * V2.id_of("vertebrae_L3"))
    derived = derive_landmarks(image, V2)[0].set_index("landmark")
    found = derived.loc["L3_body_centre", ["x", "y", "z"]].to_numpy(float)
    truth = np.array([np.mean([s.start, s.stop - 1]) for s in body])[::-1]
    assert np.linalg.norm(found - truth) < 1.0
    whole = np.argwhere(kji)[:, ::-1].mean(axis=0)
    assert np.linalg.norm(whole - truth) > 3.0     # the plain centroid would be pulled back into the arch


def test_the_femoral_head_centre_is_the_fitted_sphere_centre():
    z, y, x = np.mgrid[0:90, 0:80, 0:100].astype(float)
    head = (x - 50) ** 2 + (y - 40) ** 2 + (z - 60) ** 2 <= 22.0 ** 2
    shaft = ((x - 50) ** 2 + (y - 40) ** 2 <= 12.0 ** 2) & (z > 2) & (z < 60)
    image = label_image((head | shaft) * V2.id_of("femur_left"))
    derived = derive_landmarks(image, V2)[0].set_index("landmark")
    assert np.linalg.norm(derived.loc["femoral_head_centre_L", ["x", "y", "z"]].to_numpy(float) - [50, 40, 60]) < 1.5


def test_fit_sphere_recovers_centre_and_radius():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(500, 3))
    surface = directions / np.linalg.norm(directions, axis=1, keepdims=True) * 21.0 + [3.0, -4.0, 5.0]
    centre, radius = fit_sphere(surface + rng.normal(0, 0.2, surface.shape))
    assert np.allclose(centre, [3, -4, 5], atol=0.1) and abs(radius - 21.0) < 0.1


def test_a_label_map_outlives_the_image_it_was_made_from():
    from lmtransfer.anatomy.derive import LabelMap

    labels = np.zeros((30, 30, 30), np.uint8)
    labels[10:20, 10:20, 10:20] = V2.id_of("liver")
    m = LabelMap(label_image(labels), V2)   # the image is a temporary: its buffer must stay alive with the map
    import gc

    gc.collect()
    sitk.GetImageFromArray(np.full((30, 30, 30), 7, np.uint8))  # reuse freed memory, if it had been freed
    assert len(m.voxels("liver")) == 1000


def test_derivation_warnings_name_what_went_wrong_but_leave_contradictions_to_the_caller():
    from lmtransfer.anatomy.derive import derivation_warnings

    clean = {"derived": 12, "kinds": 64, "label_table": "v2", "unknown_label_ids": [], "non_integer_voxels": 0, "inconsistencies": []}
    assert derivation_warnings(clean) == []
    messy = {**clean, "derived": 0, "unknown_label_ids": [200, 201], "non_integer_voxels": 17}
    warnings = derivation_warnings(messy)
    assert warnings[0] == "no landmark kind could be derived from this label map"
    assert "label ids [200, 201] are not in the table v2" in warnings[1] and "17 voxels" in warnings[2]
    assert derivation_warnings({**messy, "inconsistencies": ["L1 above T12"]})[0].startswith("label ids")
