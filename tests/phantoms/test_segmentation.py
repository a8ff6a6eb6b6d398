"""The landmark derivation measured on the torso phantom, where the truth is known: the organs the
phantom paints as their own tissue, mapped to TotalSegmentator names, give the phantom's landmarks."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lmtransfer.anatomy.derive import derive_landmarks
from lmtransfer.phantoms.segmentation import MEASURED_KINDS, TABLE, derivation_errors, totalsegmentator_map
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, generate_dataset

# the most a kind's median error over the test's cases may be, mm (3 mm voxels, 4 mm slices); measured on
# 40 default-resolution cases the medians are lower (README, "Landmarks from segmentations")
MEDIAN_LIMIT_MM = {"kidney_upper_pole_L": 5, "kidney_upper_pole_R": 5, "kidney_lower_pole_L": 5, "kidney_lower_pole_R": 5,
                   "heart_apex": 7, "liver_dome": 10, "spleen_upper_pole": 12, "spleen_lower_pole": 12,
                   "costophrenic_angle_L": 25, "costophrenic_angle_R": 25, "lung_apex_L": 10, "lung_apex_R": 10, "liver_tip": 20}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    cfg = PhantomCTConfig(n_cases=3, spacing_inplane_mm=3.0, slice_mm_choices=(4.0,), slice_mm_weights=(1.0,), fov_cut_probability=0.0)
    generate_dataset(cfg, out, workers=1, progress=False)
    return out, pd.read_csv(out / "landmarks_truth.csv")


def test_the_map_holds_each_organ_on_its_side(phantom):
    out, _ = phantom
    seg = totalsegmentator_map(sitk.ReadImage(str(out / "labels" / "case_000.nii.gz")))
    derived = derive_landmarks(seg, TABLE)[0].set_index("landmark")
    assert derived.loc["kidney_upper_pole_L", "x"] > 0 > derived.loc["kidney_upper_pole_R", "x"]   # patient's left is +x
    assert set(MEASURED_KINDS) <= set(derived.index[derived["derived"]]) | {"lung_apex_L", "lung_apex_R"}


def test_derived_organ_landmarks_lie_near_the_phantoms_own(phantom):
    out, truth = phantom
    errors = pd.concat([derivation_errors(sitk.ReadImage(str(out / "labels" / f"{case}.nii.gz")), truth[truth["case"] == case])
                        for case in ("case_000", "case_001", "case_002")])
    medians = errors.groupby("landmark")["error_mm"].median()
    too_far = {k: round(float(medians[k]), 1) for k, limit in MEDIAN_LIMIT_MM.items() if not medians[k] <= limit}
    assert not too_far, f"median derivation error over the limit: {too_far}"
    assert np.isfinite(errors["error_mm"]).sum() >= 30


# bones, aorta and branches, trachea: from the structures the phantom's paint operations are named for.
# Medians over three 3 mm cases, mm; the README gives them on default-resolution cases. The aorta's and the
# trachea's kinds differ by definition (the phantom's points lie on centrelines or the vessel wall, the
# derivation's at the ends and meeting surfaces of the labels): their limits say so, they are not tight.
STRUCTURE_MEDIAN_LIMIT_MM = {**{f"{level}_body_centre": 2.0 for level in ("C7", "T1", "T6", "T12", "L1", "L5")},
                             "femoral_head_centre_L": 4, "femoral_head_centre_R": 4, "iliac_crest_top_L": 7, "iliac_crest_top_R": 7,
                             "pubic_symphysis": 4, "sacral_promontory": 5, "rib12_tip_L": 8, "rib12_tip_R": 8,
                             "sternoclavicular_joint_L": 5, "sternoclavicular_joint_R": 5, "jugular_notch": 6, "xiphoid_tip": 3,
                             "aortic_bifurcation": 7, "aortic_arch_top": 15, "left_subclavian_origin": 12, "carina": 9}


@pytest.fixture(scope="module")
def with_structures():
    from lmtransfer.phantoms.segmentation import render_with_structures

    cfg = PhantomCTConfig(spacing_inplane_mm=3.0, slice_mm_choices=(4.0,), slice_mm_weights=(1.0,), fov_cut_probability=0.0)
    return cfg, [render_with_structures(i, cfg) for i in range(3)]


def test_naming_the_structures_leaves_image_and_tissues_as_they_were(with_structures):
    from lmtransfer.phantoms.torso_ct import render_case

    cfg, cases = with_structures
    plain = render_case(1, cfg)
    for a, b in ((plain.image, cases[1].image), (plain.labels, cases[1].labels)):
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert plain.structures is None


def test_each_vertebral_body_centre_lies_in_its_own_vertebra(with_structures):
    from lmtransfer.io.coords import Geometry

    _, cases = with_structures
    for case in cases:
        geometry, named = Geometry.from_sitk(case.structures), sitk.GetArrayViewFromImage(case.structures)
        for level in ("C7", "T4", "T12", "L3", "L5"):
            i, j, k = np.rint(geometry.lps_to_index(case.landmarks_lps_mm[f"{level}_body_centre"][None])[0]).astype(int)
            assert TABLE.names[int(named[k, j, i])] == f"vertebrae_{level}", (case.case_id, level)


def test_derived_bone_vessel_and_airway_landmarks_lie_near_the_phantoms_own(with_structures):
    from lmtransfer.phantoms.segmentation import STRUCTURE_KINDS, case_truth

    _, cases = with_structures
    errors = pd.concat([derivation_errors(case.labels, case_truth(case), case.structures) for case in cases])
    assert set(STRUCTURE_KINDS) <= set(errors["landmark"])
    medians = errors.groupby("landmark")["error_mm"].median()
    too_far = {k: round(float(medians[k]), 1) for k, limit in STRUCTURE_MEDIAN_LIMIT_MM.items() if not medians[k] <= limit}
    assert not too_far, f"median derivation error over the limit: {too_far}"
    vertebrae = errors[errors["landmark"].str.endswith("_body_centre")]
    assert vertebrae["derived"].all() and vertebrae["error_mm"].max() < 3.0


def test_every_structure_the_phantom_names_is_in_the_table():
    # render_case maps a name it is not given to 0: a misspelt structure would drop out of the map unseen
    from lmtransfer.phantoms.torso_anatomy import TorsoBuilder

    named = {op.structure for op in TorsoBuilder(np.random.default_rng([0, 0])).build().ops} - {""}
    assert len(named) > 40 and named <= set(TABLE.names.values()), sorted(named - set(TABLE.names.values()))
