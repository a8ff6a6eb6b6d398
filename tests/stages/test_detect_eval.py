"""The detect_eval stage: scoring over cases, reports, resume after an interruption."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import validate_markups
from lmtransfer.detection.detector import DetectConfig, LandmarkDetector
from lmtransfer.stages.detect_eval import DetectEvalParams, Paths, evaluate
from toy_detection import BLOBS_LPS, toy_ct, CentreIntensityNet, CARD


def test_detect_eval_scores_cases_and_resumes(tmp_path, monkeypatch):
    cases, training = ["c1", "c2"], [f"t{i}" for i in range(6)]
    rows = []
    for number, case in enumerate(cases + training):
        if case in cases:
            sitk.WriteImage(toy_ct(), str(tmp_path / f"{case}.nii.gz"))
        for name, xyz in BLOBS_LPS.items():  # the training cases: the blobs a few mm apart from case to case
            x, y, z = xyz + (0 if case in cases else np.sin([number, 2 * number, 3 * number]) * 3)
            rows.append({"case": case, "image_path": str(tmp_path / f"{case}.nii.gz"), "landmark": name,
                         "x_lps_mm": x, "y_lps_mm": y, "z_lps_mm": z, "in_image": True})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    truth = [{"case": c, "landmark": name, "x_lps_mm": xyz[0], "y_lps_mm": xyz[1], "z_lps_mm": xyz[2], "in_image": True}
             for c in cases for name, xyz in BLOBS_LPS.items()]
    truth += [{"case": c, "landmark": "absent", "x_lps_mm": 0.0, "y_lps_mm": 0.0, "z_lps_mm": 500.0, "in_image": False} for c in cases]
    pd.DataFrame(truth).to_csv(tmp_path / "truth.csv", index=False)
    (tmp_path / "splits.json").write_text(json.dumps({"train": training, "val": [], "test": cases}))
    (tmp_path / "model.pt").write_bytes(b"weights")
    made = []

    def stand_in(path, config, shape, device="cpu", voter=None):
        made.append(shape)
        return LandmarkDetector(CentreIntensityNet(), CARD, config, shape)

    monkeypatch.setattr(LandmarkDetector, "from_checkpoint", staticmethod(stand_in))
    params = DetectEvalParams(detect=DetectConfig(threads=1), track=False)
    where = Paths(model=tmp_path / "model.pt", voter=None, manifest=tmp_path / "manifest.csv", images=tmp_path, truth=tmp_path / "truth.csv",
                  splits=tmp_path / "splits.json", shape_model=tmp_path / "shape.json", out_dir=tmp_path / "report")
    metrics = evaluate(params, where, progress=False)
    assert metrics["cases"] == 2 and metrics["detection_rate"] == 1.0 and metrics["false_detections"] == 0
    assert metrics["p90_error_mm"] < 2.0 and metrics["seconds_per_volume"] > 0 and metrics["volumes_timed"] == 2
    assert "seconds_per_volume" not in json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(metrics["worst_five"]) == {"bright", "dark"}
    assert made[0].names == ["bright", "dark"] and (tmp_path / "shape.json").is_file()  # fitted on the training cases
    report = tmp_path / "report"
    assert (report / "artifacts" / "error_by_group.png").stat().st_size > 5_000
    assert (report / "artifacts" / "overlay_c1.png").stat().st_size > 10_000
    validate_markups(report / "detections" / "c1.mrk.json")

    # interrupted: c2 never finished; c1 is kept, c2 redone
    kept = (report / "detections" / "c1.csv").stat().st_mtime_ns
    (report / "detections" / "c2.csv").unlink()
    again = evaluate(params, where, progress=False)
    timing = ("seconds_per_volume", "seconds_per_volume_max", "volumes_timed")
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in metrics.items() if k not in timing}
    assert (report / "detections" / "c1.csv").stat().st_mtime_ns == kept
    # another setting: every case is redone
    evaluate(replace(params, detect=DetectConfig(threads=1, min_probability=0.6)), where, progress=False)
    assert (report / "detections" / "c1.csv").stat().st_mtime_ns != kept


def test_detect_eval_names_a_case_without_truth(tmp_path):
    pd.DataFrame({"case": ["c1"], "image_path": ["x.nii.gz"], "landmark": ["a"]}).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame({"case": ["c9"], "landmark": ["a"], "x": [0.0], "y": [0.0], "z": [0.0], "space": ["LPS"]}).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "splits.json").write_text(json.dumps({"test": ["c1"]}))
    where = Paths(model=tmp_path / "model.pt", voter=None, manifest=tmp_path / "manifest.csv", images=tmp_path, truth=tmp_path / "t.csv",
                  splits=tmp_path / "splits.json", shape_model=tmp_path / "shape.json", out_dir=tmp_path / "report")
    with pytest.raises(ValueError, match=r"t.csv: no landmark truth for case\(s\) \['c1'\]"):
        evaluate(DetectEvalParams(track=False), where, progress=False)

