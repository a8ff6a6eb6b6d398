"""The lung-nodule lesion set on real torso phantom cases (coarse grid for speed)."""

import numpy as np

from lmtransfer.transfer.lesions import LesionPatchConfig
from lmtransfer.transfer.nodules import LungNoduleLesions, nodule_case


def test_a_case_gives_nodule_and_look_alike_patches_in_the_window():
    settings = LungNoduleLesions(n_cases=1, spacing_mm=4.0, nodules_per_case=(2, 2), negatives_per_case=12)
    patch = LesionPatchConfig(positive_copies=2)
    x, rows, nodules = nodule_case(0, settings, patch)
    assert x.shape == (len(rows), 3, 32, 32) and x.min() >= -1.0 and x.max() <= 1.0
    assert len(nodules) >= 1 and rows["case"].unique().tolist() == ["lung_000"]
    clean = rows[rows["variant"] == 0]
    assert clean["label"].sum() == len(nodules) and (clean["label"] == 0).sum() == 12
    assert rows.loc[rows["label"] == 1, "kind"].str.startswith("nodule_").all()
    assert (rows["variant"] > 0).sum() == 2 * len(nodules)                  # augmented copies of the nodules only
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
