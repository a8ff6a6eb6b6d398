"""Detections over cases: files that open in 3D Slicer and CSV read back."""

from __future__ import annotations

import json

import jsonschema
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import validate_markups
from lmtransfer.detection.detector import DetectConfig, LandmarkDetector
from lmtransfer.detection.cases import read_detections, write_detections
from lmtransfer.io.landmarks import read_slicer_json
from toy_detection import toy_ct, CentreIntensityNet, CARD


def test_schema_rejects_a_malformed_markups_file(tmp_path):
    bad = tmp_path / "bad.mrk.json"
    bad.write_text(json.dumps({"@schema": "https://x/markups-schema-v1.0.3.json#",
                               "markups": [{"type": "Fiducial", "controlPoints": [{"position": [1.0, 2.0]}]}]}))
    with pytest.raises(jsonschema.ValidationError):
        validate_markups(bad)


def test_detection_files_open_as_slicer_markups_and_csv(tmp_path):
    image = toy_ct()
    path = tmp_path / "toy.nii.gz"
    sitk.WriteImage(image, str(path))
    result = LandmarkDetector(CentreIntensityNet(), CARD, DetectConfig(threads=1)).detect_file(path, progress=False)
    write_detections(result, tmp_path / "toy.mrk.json", tmp_path / "toy.csv")
    document = validate_markups(tmp_path / "toy.mrk.json")
    assert document["markups"][0]["coordinateSystem"] == "LPS"
    back = read_slicer_json(tmp_path / "toy.mrk.json")
    assert sorted(back["landmark"]) == ["bright", "dark"] and set(back["space"]) == {"LPS"}
    table = read_detections(tmp_path / "toy.csv")
    assert table["found"].tolist() == [True, True, False]
    assert pd.read_csv(tmp_path / "toy.csv")["status"].tolist() == ["found", "found", "not found"]


def test_kept_detections_are_dropped_when_the_detector_code_changes(tmp_path, monkeypatch):
    import lmtransfer.detection.cases as cases

    model, shape = tmp_path / "model.pt", tmp_path / "shape.json"
    model.write_bytes(b"weights")
    shape.write_text("{}")
    folder = cases.detections_folder(tmp_path / "detections", model, shape, DetectConfig())
    (folder / "case_000.json").write_text("{}")
    assert (cases.detections_folder(folder, model, shape, DetectConfig()) / "case_000.json").exists()   # nothing changed: kept
    monkeypatch.setattr(cases, "source_digest", lambda module: "edited")
    assert not (cases.detections_folder(folder, model, shape, DetectConfig()) / "case_000.json").exists()


def test_a_resumed_case_scores_the_same_as_a_fresh_one(tmp_path):
    from lmtransfer.detection.cases import detect_cases
    from toy_detection import BLOBS_LPS

    path = tmp_path / "toy.nii.gz"
    sitk.WriteImage(toy_ct(), str(path))
    truth = pd.DataFrame([{"case": "toy", "landmark": name, "x_lps_mm": x + 0.00049, "y_lps_mm": y, "z_lps_mm": z, "in_image": True}
                          for name, (x, y, z) in BLOBS_LPS.items()])
    detector = LandmarkDetector(CentreIntensityNet(), CARD, DetectConfig(threads=1))
    folder = tmp_path / "detections"
    folder.mkdir()
    fresh, seconds = detect_cases(detector, {"toy": path}, truth, folder)
    kept, again = detect_cases(detector, {"toy": path}, truth, folder)
    assert len(seconds) == 1 and again == []          # the second call read the case back
    pd.testing.assert_frame_equal(fresh, kept, check_exact=True)


def test_a_kept_case_is_detected_again_when_its_image_changed(tmp_path):
    """A case kept from an interrupted run is reused only for the image it was detected on."""
    import numpy as np

    from lmtransfer.detection.cases import detect_cases
    from toy_detection import BLOBS_LPS

    path = tmp_path / "toy.nii.gz"
    image = toy_ct()
    sitk.WriteImage(image, str(path))
    truth = pd.DataFrame([{"case": "toy", "landmark": name, "x_lps_mm": x, "y_lps_mm": y, "z_lps_mm": z, "in_image": True}
                          for name, (x, y, z) in BLOBS_LPS.items()])
    detector = LandmarkDetector(CentreIntensityNet(), CARD, DetectConfig(threads=1))
    folder = tmp_path / "detections"
    folder.mkdir()
    detect_cases(detector, {"toy": path}, truth, folder)
    shifted = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(image), 3, axis=2))     # the same grid, other voxels
    shifted.CopyInformation(image)
    sitk.WriteImage(shifted, str(path))
    _, seconds = detect_cases(detector, {"toy": path}, truth, folder)
    assert len(seconds) == 1                       # detected again, not read back
    _, seconds = detect_cases(detector, {"toy": path}, truth, folder)
    assert seconds == []                           # and kept while the image stays
