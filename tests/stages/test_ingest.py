"""`lmtransfer ingest` on a folder of your own: landmarks derived from label maps where the landmark
files do not give them, resumed derivation, bad tables reported; no params.yaml needed."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lmtransfer.cli import main
from lmtransfer.io.landmarks import write_slicer_json

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real_abdomen_ct"


@pytest.fixture
def collection(tmp_path, monkeypatch):
    """The real abdomen-pelvis CT as a one-case collection: images/, segmentations/ and its v1 label table."""
    folder = tmp_path / "my_ct"
    for sub, name in (("images", "ct.nii.gz"), ("segmentations", "seg_totalsegmentator_v1.nii.gz")):
        (folder / sub).mkdir(parents=True)
        shutil.copy(SHARED / name, folder / sub / "abdomen.nii.gz")
    shutil.copy(SHARED / "labels_totalsegmentator_v1.csv", folder / "labels.csv")
    monkeypatch.chdir(tmp_path)   # no params.yaml here: the command line says everything
    return folder


def _ingest(folder: Path, *more: str) -> pd.DataFrame:
    assert main(["ingest", "--images", str(folder / "images"), "--segmentations", str(folder / "segmentations"),
                 "--labels", str(folder / "labels.csv"), "--out", "manifest", "--workers", "1", "--quiet", *more]) == 0
    return pd.read_csv("manifest/manifest.csv")


def test_landmarks_are_derived_from_the_segmentation(collection, capsys):
    manifest = _ingest(collection)
    derived = pd.read_csv("manifest/derived/abdomen.csv")
    assert len(manifest) == len(derived) >= 15 and manifest["in_image"].all()
    assert {"L3_body_centre", "aortic_bifurcation", "femoral_head_centre_L"} <= set(manifest["landmark"])
    assert manifest["source"].str.startswith("manifest/derived/abdomen.csv:").all()
    assert json.loads(Path("manifest/ingest_summary.json").read_text())["derived_landmarks"] == len(manifest)
    assert f"{len(manifest)} derived from label maps" in capsys.readouterr().out


def test_an_annotated_landmark_wins_over_the_derived_one(collection):
    (collection / "landmarks").mkdir()
    write_slicer_json(collection / "landmarks" / "abdomen.mrk.json", ["L3_body_centre"], [[1.0, 2.0, 3.0]])
    manifest = _ingest(collection, "--landmarks", str(collection / "landmarks")).set_index("landmark")
    assert tuple(manifest.loc["L3_body_centre", ["x_lps_mm", "y_lps_mm", "z_lps_mm"]]) == (1.0, 2.0, 3.0)
    assert manifest.loc["L3_body_centre", "source"].startswith(str(collection / "landmarks"))
    assert manifest.loc["L4_body_centre", "source"].startswith("manifest/derived/")
    report = pd.read_csv("manifest/ingest_report.csv")
    assert not report["problem"].str.contains("duplicate").any()   # the derived L3 is not offered at all


def test_a_resumed_ingest_keeps_the_cases_it_derived(collection):
    _ingest(collection)
    done = Path("manifest/derived/abdomen.csv")
    before = done.stat().st_mtime_ns
    _ingest(collection)
    assert done.stat().st_mtime_ns == before
    (collection / "labels.csv").write_text((collection / "labels.csv").read_text().replace("spleen", "splean"))
    _ingest(collection)   # another table: derived again
    assert done.stat().st_mtime_ns != before


def test_a_table_that_does_not_fit_the_map_is_reported_and_its_points_not_used(collection):
    assert main(["ingest", "--images", str(collection / "images"), "--segmentations", str(collection / "segmentations"),
                 "--labels", "totalsegmentator_v2", "--out", "manifest", "--workers", "1", "--quiet"]) == 0
    report = pd.read_csv("manifest/ingest_report.csv")
    wrong = report[report["problem"].str.contains("contradict anatomy")]
    assert list(wrong["severity"]) == ["error"] and wrong["file"].iloc[0].endswith("segmentations/abdomen.nii.gz")
    assert "totalsegmentator_v2" in wrong["problem"].iloc[0]
    assert len(pd.read_csv("manifest/manifest.csv")) == 0


def test_a_folder_without_landmarks_or_segmentations_is_named(collection, capsys):
    assert main(["ingest", "--images", str(collection / "images"), "--out", "manifest", "--quiet"]) == 2
    assert "no landmarks/ or segmentations/ folder" in capsys.readouterr().err
