"""The lung-nodule lesion set on real torso phantom cases (coarse grid for speed)."""

import numpy as np

from lmtransfer.transfer.lesions import LesionPatchConfig
from lmtransfer.transfer.nodules import LungNoduleLesions, nodule_case


def test_a_case_gives_nodule_and_look_alike_patches_in_the_window():
    settings = LungNoduleLesions(n_cases=1, spacing_mm=4.0, nodules_per_case=(2, 2), negatives_per_case=12)
    patch = LesionPatchConfig(positive_copies=2)
    x, native, rows, nodules = nodule_case(0, settings, patch)
    assert native is None                                                    # lesion.native_fov_mm 0: none cut
    assert x.shape == (len(rows), 3, 32, 32) and x.min() >= -1.0 and x.max() <= 1.0
    assert len(nodules) >= 1 and rows["case"].unique().tolist() == ["lung_000"]
    clean = rows[rows["variant"] == 0]
    assert clean["label"].sum() == len(nodules) and (clean["label"] == 0).sum() == 12
    assert rows.loc[rows["label"] == 1, "kind"].str.startswith("nodule_").all()
    assert (rows["variant"] > 0).sum() == 2 * len(nodules)                  # augmented copies of the nodules only
    assert sorted(clean.loc[clean["label"] == 1, "size_mm"]) == sorted(n["diameter_mm"] for n in nodules)
    assert clean.loc[clean["label"] == 0, "size_mm"].isna().all()
    # the nodule centres in LPS mm are the exact patches' centres
    exact = clean[clean["label"] == 1][["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy()
    assert np.allclose(sorted(map(tuple, exact)), sorted(tuple(n["centre_lps_mm"]) for n in nodules), atol=0.01)
    # the nodule patches are brighter at the centre than the look-alikes on average: the task can be learned
    centre = x[:, 0, 14:18, 14:18].mean(axis=(1, 2))
    assert centre[rows["label"].to_numpy() == 1].mean() > centre[rows["label"].to_numpy() == 0].mean()
    again = nodule_case(0, settings, patch)
    assert np.array_equal(again[0], x)                                       # deterministic


def test_the_set_holds_every_case_and_its_nodules():
    settings = LungNoduleLesions(n_cases=2, spacing_mm=4.0, negatives_per_case=6)
    lesions = settings.build(LesionPatchConfig(positive_copies=1), workers=1)
    assert sorted(lesions.cases) == ["lung_000", "lung_001"]
    assert lesions.info["source"] == "phantom_lung_nodules" and len(lesions.info["nodules"]) == int(lesions.index["label"][lesions.index["variant"] == 0].sum())


def test_native_patches_are_the_same_cuts_in_the_landmark_cnns_window():
    settings = LungNoduleLesions(n_cases=1, spacing_mm=4.0, nodules_per_case=(1, 1), negatives_per_case=6)
    x, native, rows, _ = nodule_case(0, settings, LesionPatchConfig(positive_copies=1, native_fov_mm=48.0))
    assert native is not None and native.shape == x.shape
    hu_fixed = (x + 1) / 2 * 1400.0 - 1000.0          # hu_window [-1000, 400]
    hu_native = (native + 1) / 2 * 2000.0 - 1000.0    # native_hu_window [-1000, 1000]
    unclipped = (hu_fixed > -999.0) & (hu_fixed < 399.0)
    assert unclipped.mean() > 0.3 and np.allclose(hu_fixed[unclipped], hu_native[unclipped], atol=0.05)
    assert (hu_native[hu_fixed >= 399.9] >= 399.0).all()   # what the fixed window clips, the native one keeps
