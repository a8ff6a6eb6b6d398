"""Scoring detections against truth: errors, misses, false detections, truth layouts, groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmtransfer.detection.evaluate import landmark_group, load_truth, score_case, summarise
from toy_detection import _truth


def test_scoring_counts_errors_misses_and_false_detections():
    detections = pd.DataFrame({
        "landmark": ["T1_body_centre", "carina", "liver_dome", "pubic_symphysis", "heart_apex"],
        "found": [True, True, False, True, True], "probability": [0.9, 0.8, 0.2, 0.7, 0.9],
        "x_lps_mm": [3.0, 0.0, np.nan, 5.0, 1.0], "y_lps_mm": [4.0, 0.0, np.nan, 5.0, 1.0], "z_lps_mm": [0.0, 40.0, np.nan, 5.0, 1.0],
    })
    scored = score_case("c1", detections, _truth())
    assert "heart_apex" not in scored["landmark"].tolist()  # unknown in this case: not counted
    errors = scored.set_index("landmark")["error_mm"]
    assert errors["T1_body_centre"] == pytest.approx(5.0) and errors["carina"] == pytest.approx(30.0)
    assert np.isnan(errors["liver_dome"]) and np.isnan(errors["pubic_symphysis"])
    metrics, table = summarise(scored, hit_radius_mm=10.0)
    assert metrics["median_error_mm"] == pytest.approx(17.5)
    assert metrics["detection_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert metrics["detection_rate_within_10mm"] == pytest.approx(1 / 3, abs=1e-4)
    assert metrics["false_detections"] == 1 and metrics["false_detection_rate"] == 1.0
    assert table["landmark"].iloc[0] == "carina"  # worst first
    assert table.set_index("landmark").loc["pubic_symphysis", "false_detections"] == 1


def test_truth_tables_in_both_layouts_and_bad_ones(tmp_path):
    truth = _truth()
    truth.to_csv(tmp_path / "manifest.csv", index=False)
    assert load_truth(tmp_path / "manifest.csv")["in_image"].tolist() == [True, True, True, False]
    phantom = truth.rename(columns={"x_lps_mm": "x", "y_lps_mm": "y", "z_lps_mm": "z"}).assign(space="LPS")
    phantom.to_csv(tmp_path / "truth.csv", index=False)
    assert load_truth(tmp_path / "truth.csv")[["x_lps_mm", "z_lps_mm"]].shape == (4, 2)
    phantom.assign(space="RAS").to_csv(tmp_path / "ras.csv", index=False)
    with pytest.raises(ValueError, match="ras.csv: truth positions must be in LPS"):
        load_truth(tmp_path / "ras.csv")
    with pytest.raises(FileNotFoundError):
        load_truth(tmp_path / "nope.csv")


def test_landmark_groups():
    assert landmark_group("L3_body_centre") == "vertebrae"
    assert landmark_group("common_iliac_bifurcation_L") == "vessels"
    assert landmark_group("iliac_crest_top_R") == "skeleton"
    assert landmark_group("kidney_hilum_L") == "organs"
    assert landmark_group("carina") == "airways and lungs"
    assert landmark_group("my_own_point") == "other"

