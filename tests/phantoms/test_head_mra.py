"""The head MRA phantom: artery tree, aneurysms at bifurcations, TOF-like contrast, files a user recognises."""

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.head_mra import LABELS, PhantomMRAConfig, generate_dataset, render_case
from lmtransfer.phantoms.vessel_tree import TreeBuilder, add_mimics, place_aneurysms

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


def test_mimics_sit_on_the_vessels_and_spare_the_aneurysms():
    rng = np.random.default_rng(5)
    tree = TreeBuilder(rng).build()
    aneurysms = place_aneurysms(tree, rng, 2)
    avoid = tuple(a.site.split(": ", 1)[-1] for a in aneurysms)
    add_mimics(tree, np.random.default_rng(1), infundibulum_probability=1.0, loop_probability=1.0, avoid=avoid)
    funnels = {s.name: s for s in tree.sites if s.kind == "infundibulum"}
    loops = [s for s in tree.sites if s.kind == "loop"]
    assert len(funnels) >= 8 and len(loops) >= 4
    points, radii = tree.samples()
    for f in tree.infundibula:
        assert f.base_radius_mm <= 1.5 and f.tip_radius_mm <= f.base_radius_mm     # at most 3 mm wide, narrowing
        site = funnels[f"infundibulum of {f.branch}"]
        assert f.signed_distance(site.point_lps_mm[None])[0] < 0                      # the site is inside its funnel
        origin = [s for s in tree.sites if s.kind == "bifurcation" and np.linalg.norm(s.point_lps_mm - f.base_lps_mm) < 0.5]
        assert not any(s.name in avoid for s in origin)                               # no funnel where an aneurysm sits
    for site in loops:  # where the loop passes itself: inside the lumen
        assert (np.linalg.norm(points - site.point_lps_mm, axis=1) - radii).min() < 0
    # a loop comes back past its start: the vessel passes within about two diameters of itself after a full turn
    looped = next(v for v in tree.vessels if any(s.name == f"loop of {v.name}" for s in loops))
    start = next(s.point_lps_mm for s in loops if s.name == f"loop of {looped.name}")
    near = np.flatnonzero(np.linalg.norm(looped.points_lps_mm - start, axis=1) < 1e-9)
    assert len(near) == 2 and near[1] - near[0] > 20


def test_rendered_mimics_are_labelled_vessel():
    case = render_case(1, PhantomMRAConfig(spacing_inplane_mm=0.8, slice_mm_choices=(0.8,), infundibulum_probability=1.0,
                                           vessel_loop_probability=1.0))
    labels = sitk.GetArrayFromImage(case.labels)
    geometry = Geometry.from_sitk(case.image)
    sites = [s for s in case.tree.sites if s.kind in ("infundibulum", "loop")]
    assert len(sites) > 5 and case.meta["infundibula"] == len(case.tree.infundibula)
    ijk = np.rint(geometry.lps_to_index(np.array([s.point_lps_mm for s in sites]))).astype(int)
    inside = geometry.contains_index(ijk)
    assert inside.sum() > 5 and all(labels[k, j, i] == LABELS["vessel"] for i, j, k in ijk[inside])


def test_the_mimics_leave_the_rest_of_the_case_unchanged():
    plain = render_case(0, PhantomMRAConfig(**{**SMALL.__dict__, "infundibulum_probability": 0.0, "vessel_loop_probability": 0.0}))
    mimics = render_case(0, SMALL)
    assert [a.centre_lps_mm.tolist() for a in plain.aneurysms] == [a.centre_lps_mm.tolist() for a in mimics.aneurysms]
    assert plain.meta["rician_sigma"] == mimics.meta["rician_sigma"] and mimics.meta["infundibula"] > 0


def test_probabilities_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match="infundibulum_probability"):
        PhantomMRAConfig(infundibulum_probability=1.5)
