"""`lmtransfer landmarks-from-seg`: files that ingest reads, a report for every kind, clear refusals."""

import json
from pathlib import Path

import pandas as pd

from lmtransfer.cli import main
from lmtransfer.io.landmarks import read_landmarks

ROOT = Path(__file__).resolve().parents[2]
ABDOMEN = ROOT.parent / "shared" / "data" / "real_abdomen_ct"


def test_derived_landmarks_go_through_ingest_with_their_ct(tmp_path, capsys):
    out = tmp_path / "landmarks"
    assert main(["landmarks-from-seg", str(ABDOMEN / "seg_totalsegmentator_v1.nii.gz"), "--labels",
                 str(ABDOMEN / "labels_totalsegmentator_v1.csv"), "--case", "abdomen", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "abdomen: 19 of 64 landmark kinds derived" in printed and "L3_body_centre" in printed
    assert sorted(p.name for p in out.iterdir()) == ["abdomen.mrk.json", "derivation"]
    report = pd.read_csv(out / "derivation" / "abdomen.csv")
    assert len(report) == 64 and report["derived"].sum() == 19
    assert json.loads((out / "derivation" / "abdomen.json").read_text())["inconsistencies"] == []
    assert len(read_landmarks(out / "abdomen.mrk.json")) == 19

    images = tmp_path / "images"
    images.mkdir()
    (images / "abdomen.nii.gz").symlink_to(ABDOMEN / "ct.nii.gz")
    assert main(["ingest", "--params", str(ROOT / "params.yaml"), "--images", str(images), "--landmarks", str(out),
                 "--out", str(tmp_path / "manifest"), "--workers", "1", "--quiet"]) == 0
    manifest = pd.read_csv(tmp_path / "manifest" / "manifest.csv")
    assert set(manifest["case"]) == {"abdomen"} and len(manifest) == 19
    assert json.loads((tmp_path / "manifest" / "ingest_summary.json").read_text())["errors"] == 0


def test_csv_output_is_one_row_per_derived_kind(tmp_path):
    assert main(["landmarks-from-seg", str(ABDOMEN / "seg_totalsegmentator_v1.nii.gz"), "--labels",
                 str(ABDOMEN / "labels_totalsegmentator_v1.csv"), "--case", "abdomen", "--out-dir", str(tmp_path),
                 "--format", "csv", "--quiet"]) == 0
    table = read_landmarks(tmp_path / "abdomen.csv")
    assert len(table) == 19 and set(table["space"]) == {"LPS"} and set(table["case"]) == {"abdomen"}


def test_a_label_table_that_does_not_fit_is_refused_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "landmarks"
    assert main(["landmarks-from-seg", str(ABDOMEN / "seg_totalsegmentator_v1.nii.gz"), "--out-dir", str(out)]) == 2
    error = capsys.readouterr().err
    assert "seg_totalsegmentator_v1.nii.gz" in error and "contradict anatomy" in error and "totalsegmentator_v2" in error
    assert not list(out.glob("*.mrk.json"))


def test_a_missing_label_map_or_table_is_named(tmp_path, capsys):
    assert main(["landmarks-from-seg", str(tmp_path / "nothing.nii.gz")]) == 2
    assert "nothing.nii.gz" in capsys.readouterr().err
    assert main(["landmarks-from-seg", str(ABDOMEN / "seg_totalsegmentator_v1.nii.gz"), "--labels", str(tmp_path / "t.csv")]) == 2
    assert "t.csv" in capsys.readouterr().err
