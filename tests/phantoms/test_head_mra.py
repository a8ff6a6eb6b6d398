"""The head MRA phantom: artery tree, aneurysms at bifurcations, TOF-like contrast, files a user recognises."""

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.head_mra import LABELS, PhantomMRAConfig, generate_dataset, render_case
from lmtransfer.phantoms.vessel_tree import TreeBuilder, place_aneurysms

SMALL = PhantomMRAConfig(n_cases=2, spacing_inplane_mm=1.0, slice_mm_choices=(1.2,), aneurysm_case_fraction=1.0)


def test_tree_has_circle_of_willis_and_look_alikes():
    tree = TreeBuilder(np.random.default_rng(3)).build()
    names = {v.name for v in tree.vessels}
    assert {"ICA_L", "ICA_R", "BA", "ACom", "M1_L", "A1_R", "P1_L"} <= names
    kinds = {s.kind for s in tree.sites}
    assert {"bifurcation", "bend"} <= kinds
    # children leave from their parent: every vessel with a parent starts within 1.5 mm of it
    by_name = {v.name: v for v in tree.vessels}
    for v in tree.vessels:
        if v.parent and v.name != "ACom":
            gap = np.linalg.norm(by_name[v.parent].points_lps_mm - v.points_lps_mm[0], axis=1).min()
            assert gap < 1.5, v.name
    radii = np.concatenate([v.radii_mm for v in tree.vessels])
    assert 0.3 < radii.min() and radii.max() < 3.0


def test_aneurysms_sit_on_bifurcations_with_a_neck():
    rng = np.random.default_rng(0)
    tree = TreeBuilder(rng).build()
    found = place_aneurysms(tree, rng, 3)
    assert len(found) == 3 and len({a.site for a in found}) == 3
    points, radii = tree.samples()
    for a in found:
        assert 1.0 <= a.radius_mm <= 7.0
        assert a.neck_radius_mm <= a.radius_mm
        # the neck touches the parent's lumen: it starts inside a vessel
        inside = np.linalg.norm(points - a.neck_lps_mm, axis=1) - radii
        assert inside.min() < 0
        assert a.signed_distance(a.centre_lps_mm[None])[0] == pytest.approx(-a.radius_mm)


def test_rendered_case_looks_like_tof_mra():
    case = render_case(0, SMALL)
    image, labels = sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.labels)
    mean = {name: image[labels == value].mean() for name, value in LABELS.items() if (labels == value).any()}
    assert mean["vessel"] > 2 * mean["brain"] > 4 * mean["skull"]
    assert mean["scalp_fat"] > mean["brain"] > mean["air"]
    assert case.aneurysms and (labels == LABELS["aneurysm"]).any()
    # aneurysm centres in LPS mm land on aneurysm-labelled voxels
    geometry = Geometry.from_sitk(case.image)
    for a in case.aneurysms:
        i, j, k = np.rint(geometry.lps_to_index(a.centre_lps_mm[None])[0]).astype(int)
        if geometry.contains_index(np.array([[i, j, k]]))[0]:
            assert labels[k, j, i] == LABELS["aneurysm"]
    assert case.image.GetSpacing()[2] == pytest.approx(1.2)


def test_dataset_files_and_resume(tmp_path):
    table = generate_dataset(SMALL, tmp_path, workers=1, progress=False)
    assert list(table["case"]) == ["case_000", "case_001"]
    aneurysms = pd.read_csv(tmp_path / "aneurysms.csv")
    assert len(aneurysms) == table["aneurysms"].sum() and (aneurysms["diameter_mm"] > 0).all()
    markups = json.loads((tmp_path / "landmarks" / "case_000.mrk.json").read_text())
    assert markups["markups"][0]["coordinateSystem"] == "LPS"
    assert len(pd.read_csv(tmp_path / "sites.csv")) > 20
    before = (tmp_path / "images" / "case_001.nii.gz").stat().st_mtime_ns
    (tmp_path / "meta" / "case_000.json").unlink()
    generate_dataset(SMALL, tmp_path, workers=1, progress=False)
    assert (tmp_path / "images" / "case_001.nii.gz").stat().st_mtime_ns == before
    assert (tmp_path / "meta" / "case_000.json").exists()
