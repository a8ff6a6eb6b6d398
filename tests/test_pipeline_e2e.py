"""End to end on a tiny configuration: the CLI jobs, resuming, and `dvc repro` in a scratch copy of the project."""

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import validate_markups
from scratch import Project
from lmtransfer.cli import main

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

ROOT = Path(__file__).resolve().parents[1]
# the widest line `dvc metrics show` may print (it printed 1,173 characters when every metric was a column)
HEADLINE_WIDTH = 200
TINY = {
    "n_cases": 3, "spacing_inplane_mm": 3.0, "slice_mm_choices": [4.0], "slice_mm_weights": [1.0],
    "workers": 1, "preview_cases": [0],
}


def _tiny_params(path: Path, out_root: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["phantom_ct"].update(TINY)
    params["data"]["folder"] = str(out_root / "phantom_ct")
    params["ingest"].update(out_dir=str(out_root / "manifest"), workers=1)
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_cli_phantom_ingest_and_resume(tmp_path, capsys):
    params = _tiny_params(tmp_path / "params.yaml", tmp_path)
    assert main(["phantom-ct", "--params", str(params), "--preview", "--quiet"]) == 0
    phantom = tmp_path / "phantom_ct"
    assert (phantom / "previews" / "case_000.png").stat().st_size > 10_000
    cases = pd.read_csv(phantom / "cases.csv")
    assert list(cases["case"]) == ["case_000", "case_001", "case_002"]

    assert main(["ingest", "--params", str(params), "--quiet"]) == 0
    manifest = pd.read_csv(tmp_path / "manifest" / "manifest.csv")
    visible = sum(json.loads(p.read_text())["landmarks_in_image"] for p in sorted((phantom / "meta").glob("*.json")))
    assert len(manifest) == visible and manifest["in_image"].all()
    assert manifest["landmark"].nunique() >= 60

    # an interrupted run: one case lost its meta file (written last); only that case is redone
    before = {p.name: p.stat().st_mtime_ns for p in (phantom / "images").iterdir()}
    (phantom / "meta" / "case_001.json").unlink()
    assert main(["phantom-ct", "--params", str(params), "--quiet"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (phantom / "images").iterdir()}
    assert after["case_000.nii.gz"] == before["case_000.nii.gz"]
    assert after["case_002.nii.gz"] == before["case_002.nii.gz"]
    assert after["case_001.nii.gz"] != before["case_001.nii.gz"]
    # fewer cases asked: the extra ones go, so they cannot leak into the manifest
    assert main(["phantom-ct", "--params", str(params), "--n-cases", "2", "--quiet"]) == 0
    assert sorted(p.name for p in (phantom / "images").iterdir()) == ["case_000.nii.gz", "case_001.nii.gz"]


def test_cli_reports_bad_params(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("phantom_ct:\n  n_case: 3\n")
    assert main(["phantom-ct", "--params", str(bad)]) == 2
    assert "unknown key(s) ['n_case']" in capsys.readouterr().err


@pytest.mark.slow
def test_dvc_repro_in_a_scratch_project(tmp_path):
    scratch = Project(tmp_path / "project")
    project, run, dvc = scratch.folder, scratch.run, scratch.dvc
    first = run(*dvc, "repro")
    for stage in ("phantom_ct@torso", "ingest", "patches", "pretrain_20", "pretrain_40", "pretrain_60", "pretrain_60_direct",
                  "phantom_mra", "vessels", "lesion_patches", "nodule_patches", "cifar_pretrain", "transfer", "transfer_nodules",
                  "transfer_summary",
                  "finetune", "train_voter", "detect_eval"):
        assert f"Running stage '{stage}'" in first.stdout
    voter = json.loads((project / "reports" / "voter" / "metrics.json").read_text())
    assert voter["landmark_kinds"] == 64 and voter["test_offset_median_mm"] >= 0 and voter["epochs"] == 1
    assert (project / "models" / "lm_cnn_lm60.pt").is_file()
    assert (project / "data" / "phantom_mra" / "previews" / "case_000_mip.png").is_file()
    assert (project / "reports" / "transfer" / "artifacts" / "auc_vs_weak_learners.png").stat().st_size > 10_000
    curves = pd.read_csv(project / "reports" / "transfer" / "auc_vs_weak_learners.csv")
    assert len(curves) == 20 and {"lm_auc", "cifar_auc", "random_auc"} <= set(curves.columns)
    assert curves[["lm_auc", "cifar_auc", "random_auc"]].stack().between(0, 1).all()
    for task in ("transfer", "transfer_nodules"):   # both tasks summarised, every source in the table
        summary_md = (project / "reports" / task / "summary.md").read_text()
        assert all(f"| {source} |" in summary_md for source in ("lm", "cifar", "random", "handcrafted")), summary_md
    combined = (project / "reports" / "transfer_summary.md").read_text()
    assert "MRA aneurysm" in combined and "CT lung nodule" in combined
    nodules = pd.read_csv(project / "data" / "nodule_patches" / "index.csv")
    assert nodules["case"].str.startswith("lung_").all() and nodules["label"].sum() > 0
    finetuned = pd.read_csv(project / "reports" / "finetune" / "finetune.csv")
    assert finetuned["source"].tolist() == ["lm", "cifar", "scratch"] * 2   # the split's training set, then its 3-case subset
    assert finetuned["train_cases"].tolist()[3:] == [3, 3, 3] and (finetuned["train_cases"][:3] > 3).all()
    detection = json.loads((project / "reports" / "detection" / "metrics.json").read_text())
    assert detection["cases"] == 1 and detection["landmark_kinds"] == 60 and 0 <= detection["detection_rate"] <= 1
    assert detection["landmarks_present"] + detection["landmarks_absent"] == 60
    assert list((project / "reports" / "detection" / "artifacts").glob("overlay_case_*.png"))
    summary = json.loads((project / "data" / "manifest" / "ingest_summary.json").read_text())
    assert summary["cases"] == 5 and summary["errors"] == 0
    second = run(*dvc, "repro")
    assert "Running stage" not in second.stdout  # nothing changed, nothing re-run
    # `dvc metrics show` prints each stage's headline, one row per file and one column per distinct key:
    # a table a terminal can show, the headline figures present, the full metrics a --targets away
    table = run(*dvc, "metrics", "show").stdout
    header, *rows = table.splitlines()
    assert max(map(len, table.splitlines())) <= HEADLINE_WIDTH, table
    missing = {"top1", "epochs", "auc_lm", "auc_cifar", "auc_random", "auc_scratch", "lm-cifar", "dice", "found", "errors",
               "specificity"} - set(header.split())
    assert not missing, f"dvc metrics show lacks {missing}:\n{table}"
    assert len(rows) == 13 and all(row.split()[0].endswith("headline.json") for row in rows), table
    full = json.loads(run(*dvc, "metrics", "show", "--json", "reports/transfer/metrics.json").stdout)
    assert "lm_vs_cifar_p_at_5" in full[""]["data"]["reports/transfer/metrics.json"]["data"]

    # any phantom volume: a markups file that Slicer's schema accepts, and a CSV row per landmark kind
    # (the one-epoch model agrees with no shape, so the check is off to get every kind into the file)
    detected = run(sys.executable, "-m", "lmtransfer.cli", "detect", "data/phantom_ct/images/case_000.nii.gz",
                   "--out", "found/case_000.mrk.json", "--min-probability", "0", "--no-shape", "--quiet")
    assert "60 of 60 landmark kinds found" in detected.stdout
    assert "not looked for: 4 landmark kind(s)" in detected.stdout   # lm60 leaves out 4 of the phantom's 64
    markups = validate_markups(project / "found" / "case_000.mrk.json")
    assert len(markups["markups"][0]["controlPoints"]) == 60
    assert len(pd.read_csv(project / "found" / "case_000.csv")) == 60

    # the search writes its best setting into params.yaml, and DVC sees which stages it touches
    tuned = run(sys.executable, "-m", "lmtransfer.cli", "tune")
    counts = re.search(r"trials: (\d+) \((\d+) complete, (\d+) pruned, (\d+) failed\)", tuned.stdout)
    assert counts and int(counts[1]) == 2 and int(counts[2]) + int(counts[3]) == 2, tuned.stdout
    best = json.loads((project / "reports" / "tune" / "best.json").read_text())
    written = yaml.safe_load((project / "params.yaml").read_text())
    assert written["pretrain"]["lr"] == pytest.approx(best["params"]["lr"], rel=1e-5)
    assert written["patches"]["fov_mm"] == 32.0 and written["pretrain"]["width"] == 4
    status = run(*dvc, "status")
    assert "pretrain_20:" in status.stdout and "patches:" in status.stdout and "phantom_ct:" not in status.stdout


def test_debug_flag_keeps_the_traceback(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: folder\n  render: []\n  folder: " + str(tmp_path / "nowhere") + "\n")
    assert main(["ingest", "--params", str(params), "--quiet"]) == 2
    plain = capsys.readouterr().err
    assert "nowhere" in plain and "Traceback" not in plain
    assert main(["--debug", "ingest", "--params", str(params), "--quiet"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.slow
def test_dvc_repro_on_a_folder_of_your_own(tmp_path):
    """`data.source: folder`: `dvc repro` ingests, derives, trains and detects on a folder of scans
    (here rendered beforehand, as a stand-in for yours) without the phantom stage; the folder is
    versioned with `dvc add`. Three cases come with landmark files, all five with segmentations."""
    import SimpleITK as sitk

    from scratch import tiny_params
    from lmtransfer.phantoms.segmentation import totalsegmentator_map

    params = tiny_params()
    rendered = tmp_path / "rendered"
    (tmp_path / "render.yaml").write_text(yaml.safe_dump(params))
    assert main(["phantom-ct", "--params", str(tmp_path / "render.yaml"), "--out", str(rendered), "--quiet"]) == 0
    params["data"].update(source="folder", render=[], folder="data/my_ct")
    params["detect"]["truth"] = ""          # no table of every landmark: scored against the manifest
    scratch = Project(tmp_path / "project", params)
    mine = scratch.folder / "data" / "my_ct"
    for sub in ("images", "landmarks", "segmentations"):
        (mine / sub).mkdir(parents=True)
    for image in sorted((rendered / "images").glob("case_*.nii.gz")):
        case = image.name.removesuffix(".nii.gz")
        (mine / "images" / image.name).write_bytes(image.read_bytes())
        labels = sitk.ReadImage(str(rendered / "labels" / image.name))
        sitk.WriteImage(totalsegmentator_map(labels), str(mine / "segmentations" / image.name), True)
        if case <= "case_002":
            (mine / "landmarks" / f"{case}.mrk.json").write_bytes((rendered / "landmarks" / f"{case}.mrk.json").read_bytes())
    scratch.run(*scratch.dvc, "add", "data/my_ct")
    first = scratch.run(*scratch.dvc, "repro")
    assert "phantom_ct" not in first.stdout and not (scratch.folder / "data" / "phantom_ct").exists()
    for stage in ("ingest", "patches", "pretrain_60", "train_voter", "detect_eval"):
        assert f"Running stage '{stage}'" in first.stdout
    manifest = pd.read_csv(scratch.folder / "data" / "manifest" / "manifest.csv")
    derived = manifest[manifest["source"].str.startswith("data/manifest/derived/")]
    # the annotated cases give every kind themselves; the other two get their organs' kinds from their segmentations
    assert set(derived["case"]) == {"case_003", "case_004"} and derived.groupby("case").size().min() >= 8
    assert set(manifest.loc[manifest["case"] >= "case_003", "source"].str[:22]) == {"data/manifest/derived/"}
    detection = json.loads((scratch.folder / "reports" / "detection" / "metrics.json").read_text())
    assert detection["cases"] == 1 and detection["landmarks_absent"] == 0   # the manifest knows no landmark outside the image
    assert "Running stage" not in scratch.run(*scratch.dvc, "repro").stdout
    # a new scan in the folder: `dvc add` again, and the pipeline sees it
    (mine / "images" / "case_005.nii.gz").write_bytes((mine / "images" / "case_000.nii.gz").read_bytes())
    (mine / "segmentations" / "case_005.nii.gz").write_bytes((mine / "segmentations" / "case_000.nii.gz").read_bytes())
    scratch.run(*scratch.dvc, "add", "data/my_ct")
    assert "ingest:" in scratch.run(*scratch.dvc, "status").stdout
