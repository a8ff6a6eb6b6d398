"""The manifest on a deliberately broken folder: every problem is reported, nothing dropped silently."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import DIRECTIONS, make_image
from lmtransfer.io.coords import Geometry
from lmtransfer.io.landmarks import write_slicer_json
from lmtransfer.io.manifest import build_manifest, write_outputs


@pytest.fixture
def broken_folder(tmp_path):
    images, marks = tmp_path / "images", tmp_path / "landmarks"
    images.mkdir()
    marks.mkdir()
    good = make_image(direction=DIRECTIONS["oblique"])
    sitk.WriteImage(good, str(images / "good.nii.gz"))
    sitk.WriteImage(make_image(), str(images / "lonely.nrrd"))
    (images / "corrupt.nii.gz").write_bytes(b"not an image")
    geometry = Geometry.from_sitk(good)
    inside = geometry.index_to_lps([[5, 5, 3], [1, 2, 3]])
    outside = geometry.index_to_lps([[40, 5, 3]])
    write_slicer_json(marks / "good.mrk.json", ["a", "b", "far", "a"], np.vstack([inside, outside, inside[:1] + 1]))
    (marks / "extra.csv").write_text("case,landmark,x,y,z\ngood,nan_point,1,,3\nghost,c,0,0,0\n")
    (marks / "corrupt.csv").write_text("case,landmark,x,y,z,space\ncorrupt,d,1,2,3,LPS\n")
    (marks / "weird.csv").write_text("case,landmark,x,y,z,space\ngood,e,1,2,3,scanner\n")
    return images, marks, geometry, inside


def test_broken_folder_report(broken_folder, tmp_path):
    images, marks, geometry, inside = broken_folder
    manifest, report = build_manifest(images, [marks], progress=False)
    problems = report.frame()
    text = "\n".join(f"{r.severity}|{r.case}|{r.file}|{r.problem}" for r in problems.itertuples())
    assert "error|corrupt|" in text and "cannot read volume" in text
    assert "landmark(s) for a case with no readable image" in text  # corrupt.csv and ghost
    assert "duplicate landmark 'a'" in text
    assert "'far'" in text and "outside the image" in text
    assert "'nan_point' has a missing, NaN or infinite coordinate" in text
    assert "weird.csv|line 2: unknown coordinate system 'scanner'" in text
    assert "warning|lonely|" in text and "image has no landmarks" in text
    # what is kept, is right
    good = manifest[manifest["case"] == "good"].set_index("landmark")
    assert sorted(good.index) == ["a", "b", "far"]
    np.testing.assert_allclose(good.loc["a", ["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(float), inside[0], atol=1e-3)
    np.testing.assert_allclose(good.loc["b", ["i", "j", "k"]].to_numpy(float), [1, 2, 3], atol=1e-3)
    assert good.loc["far", "in_image"] == False  # noqa: E712
    assert good.loc["a", "orientation"] == geometry.orientation

    summary = write_outputs(manifest, report, tmp_path / "out")
    assert summary["errors"] == report.n_errors >= 5
    assert pd.read_csv(tmp_path / "out" / "manifest.csv").shape[0] == len(manifest)
    assert json.loads((tmp_path / "out" / "ingest_summary.json").read_text())["outside_image"] == 1


def test_parallel_reading_gives_the_same_manifest(broken_folder):
    images, marks, *_ = broken_folder
    serial, _ = build_manifest(images, [marks], progress=False, workers=1)
    parallel, _ = build_manifest(images, [marks], progress=False, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)


def test_real_ct_landmark_from_flipped_segmentation(shared_data, tmp_path):
    """The seg is stored y-flipped; a liver centroid taken in physical space lands on liver in the CT."""
    seg = sitk.ReadImage(str(shared_data / "real_ct_dicom_seg.nii.gz"))
    labels = sitk.GetArrayFromImage(seg)
    k, j, i = np.nonzero(labels == 5)  # TotalSegmentator: liver
    centroid_ijk = np.array([i.mean(), j.mean(), k.mean()])
    centroid_lps = Geometry.from_sitk(seg).index_to_lps(centroid_ijk)
    images = tmp_path / "images"
    images.mkdir()
    (images / "real").symlink_to(shared_data / "real_ct_dicom", target_is_directory=True)
    (tmp_path / "real.csv").write_text(f"landmark,x,y,z\nliver_centroid,{centroid_lps[0]},{centroid_lps[1]},{centroid_lps[2]}\n")
    manifest, report = build_manifest(images, [tmp_path / "real.csv"], progress=False)
    assert report.n_errors == 0
    row = manifest.iloc[0]
    ct = sitk.ReadImage([str(p) for p in sorted((shared_data / "real_ct_dicom").iterdir())])
    hu = sitk.GetArrayFromImage(ct)[int(round(row.k)), int(round(row.j)), int(round(row.i))]
    assert 40 < hu < 160, f"liver centroid at HU {hu}"
    # same physical point, so the CT row index is the mirror of the segmentation's (y stored flipped)
    np.testing.assert_allclose([row.i, row.j, row.k], [centroid_ijk[0], 511 - centroid_ijk[1], centroid_ijk[2]], atol=1e-3)


MALFORMED = {
    "m1.mrk.json": ('{"markups": [1]}', "markups[1] is int"),
    "m2.mrk.json": ('{"markups": [{"coordinateSystem": "LPS", "controlPoints": [{"label": "a", "position": 5}]}]}',
                    "point 1 ('a'): position 5"),
    "m3.mrk.json": ('{"markups": [{"coordinateSystem": "LPS", "controlPoints": 7}]}', "controlPoints is int"),
    "m4_ctd.json": ('[{"direction": ["P", "I", "R"]}, {"label": 1e400, "X": 1, "Y": 2, "Z": 3}]', "item 1: label inf"),
    "m5.mrk.json": ('{"markups": [{"coordinateSystem": "LPS", "controlPoints": ["x"]}]}', "controlPoints[1] is str"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_landmark_file_costs_only_itself(tmp_path, name):
    content, problem = MALFORMED[name]
    images, marks = tmp_path / "images", tmp_path / "landmarks"
    images.mkdir()
    marks.mkdir()
    image = make_image()
    case = name.split(".")[0].removesuffix("_ctd")
    for cid in ("good", case):
        sitk.WriteImage(image, str(images / f"{cid}.nii.gz"))
    write_slicer_json(marks / "good.mrk.json", ["a"], Geometry.from_sitk(image).index_to_lps([[5, 5, 3]]))
    (marks / name).write_text(content)
    manifest, report = build_manifest(images, [marks], progress=False)
    errors = report.frame().query("severity == 'error'")
    assert len(errors) == 1
    assert errors["file"].iloc[0].endswith(name) and problem in errors["problem"].iloc[0]
    assert manifest["case"].tolist() == ["good"]


def test_overflowing_coordinates_are_errors(tmp_path):
    images, marks = tmp_path / "images", tmp_path / "landmarks"
    images.mkdir()
    marks.mkdir()
    sitk.WriteImage(make_image(), str(images / "c.nii.gz"))
    (marks / "c.csv").write_text("landmark,x,y,z,space\nok,-18,37,-105,LPS\nbig,1e308,0,0,LPS\nhuge,1e400,0,0,LPS\n"
                                 "voxel,1e308,0,0,IJK\nfar,2e6,0,0,RAS\n")
    manifest, report = build_manifest(images, [marks], progress=False)
    assert manifest["landmark"].tolist() == ["ok"]
    assert np.isfinite(manifest[["x_lps_mm", "y_lps_mm", "z_lps_mm", "i", "j", "k"]].to_numpy(float)).all()
    problems = report.frame().set_index("file")["problem"]
    assert "'big' has a coordinate beyond" in problems[f"{marks / 'c.csv'}:3"]
    assert "'huge' has a missing, NaN or infinite coordinate" in problems[f"{marks / 'c.csv'}:4"]
    assert "'voxel' has a coordinate beyond" in problems[f"{marks / 'c.csv'}:5"]
    assert "'far' has a coordinate beyond" in problems[f"{marks / 'c.csv'}:6"]


def test_image_paths_are_stored_relative_to_the_manifest(tmp_path, monkeypatch):
    """Relative image paths are written relative to the manifest's folder, so the project can move
    (or commands run from elsewhere); absolute ones stay absolute."""
    from lmtransfer.io.manifest import read_manifest

    project = tmp_path / "project"
    (project / "scans").mkdir(parents=True)
    sitk.WriteImage(make_image(), str(project / "scans" / "a.nii.gz"))
    sitk.WriteImage(make_image(), str(tmp_path / "b.nii.gz"))
    (project / "marks.csv").write_text("case,landmark,x,y,z\na,p,-18,37,-105\n")
    monkeypatch.chdir(project)
    manifest, _ = build_manifest(project / "scans", [project / "marks.csv"], progress=False)
    manifest = pd.concat([manifest.assign(image_path="scans/a.nii.gz"), manifest.assign(case="b", image_path=str(tmp_path / "b.nii.gz"))])
    write_outputs(manifest, build_manifest(project / "scans", [], progress=False)[1], project / "out" / "manifest")
    stored = pd.read_csv(project / "out" / "manifest" / "manifest.csv")["image_path"].tolist()
    assert stored == ["../../scans/a.nii.gz", str(tmp_path / "b.nii.gz")]
    moved = tmp_path / "moved"
    project.rename(moved)
    monkeypatch.chdir(tmp_path)   # elsewhere, and the tree moved: the paths still lead to the scans
    again = read_manifest(moved / "out" / "manifest" / "manifest.csv")
    assert again["image_path"].tolist() == [str(moved / "scans" / "a.nii.gz"), str(tmp_path / "b.nii.gz")]
    assert all(Path(p).is_file() for p in again["image_path"]) and again["case"].tolist() == ["a", "b"]


def test_an_image_whose_voxels_change_changes_the_manifest(tmp_path):
    """Geometry and landmarks alone do not say which voxels were read: a rescan, a corrected file or a
    re-rendered phantom with the same grid must change the manifest, so what was cut from it is redone."""
    from lmtransfer.io.volumes import content_hash

    images = tmp_path / "scans"
    images.mkdir()
    (tmp_path / "marks.csv").write_text("case,landmark,x,y,z\na,p,-18,37,-105\n")
    image = make_image()
    sitk.WriteImage(image, str(images / "a.nii.gz"))
    before, _ = build_manifest(images, [tmp_path / "marks.csv"], progress=False)
    changed = sitk.GetArrayFromImage(image)
    changed[3, 4, 5] += 1
    edited = sitk.GetImageFromArray(changed)
    edited.CopyInformation(image)
    sitk.WriteImage(edited, str(images / "a.nii.gz"))
    after, _ = build_manifest(images, [tmp_path / "marks.csv"], progress=False)
    same = ["image_path", "spacing_i_mm", "size_i", "landmark", "x_lps_mm", "i", "in_image"]
    pd.testing.assert_frame_equal(before[same], after[same])
    assert before["image_sha256"].iloc[0] != after["image_sha256"].iloc[0]
    assert after["image_sha256"].iloc[0] == content_hash(images / "a.nii.gz")
    write_outputs(after, build_manifest(images, [], progress=False)[1], tmp_path / "manifest")
    from lmtransfer.io.manifest import read_manifest
    assert read_manifest(tmp_path / "manifest" / "manifest.csv")["image_sha256"].tolist() == after["image_sha256"].tolist()
