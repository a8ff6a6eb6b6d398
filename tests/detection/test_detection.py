"""Landmark detection: body mask, the coarse-to-fine search, output files, and scoring."""

from __future__ import annotations

import json
from dataclasses import replace

import jsonschema
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from lmtransfer.detection.body import body_mask, grid_points
from lmtransfer.detection.detector import DetectConfig, LandmarkDetector, _best_per_owner, _neighbour_offsets, _separated_top
from lmtransfer.detection.evaluate import landmark_group, load_truth, score_case, summarise
from lmtransfer.detection.run import read_detections, write_detections
from lmtransfer.detection.shape import ShapeModel
from lmtransfer.io.coords import Geometry
from lmtransfer.io.landmarks import read_slicer_json

from conftest import validate_markups

def test_schema_rejects_a_malformed_markups_file(tmp_path):
    bad = tmp_path / "bad.mrk.json"
    bad.write_text(json.dumps({"@schema": "https://x/markups-schema-v1.0.3.json#",
                               "markups": [{"type": "Fiducial", "controlPoints": [{"position": [1.0, 2.0]}]}]}))
    with pytest.raises(jsonschema.ValidationError):
        validate_markups(bad)


# --- a toy CT and a stand-in network whose answers are known -------------------------------------

BLOBS_LPS = {"bright": np.array([12.0, -6.0, 20.0]), "dark": np.array([-18.0, 10.0, -14.0])}


def toy_ct(spacing=(1.5, 1.5, 2.5), direction=np.diag([1.0, -1.0, 1.0])) -> sitk.Image:
    """A soft-tissue box in air with a bright (+940 HU) and a dark (-460 HU) Gaussian blob (sigma 5 mm) and a table."""
    size = (64, 64, 40)
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(direction.ravel().tolist())
    centre_index = (np.asarray(size) - 1) / 2
    image.SetOrigin(tuple(-(direction * np.asarray(spacing)) @ centre_index))
    geometry = Geometry.from_sitk(image)
    ijk = np.stack(np.meshgrid(*(np.arange(s) for s in size), indexing="ij"), axis=-1)
    lps = geometry.index_to_lps(ijk.reshape(-1, 3)).reshape(*size, 3)
    volume = np.full(size, -1000.0)
    body = (np.abs(lps[..., 0]) < 38) & (np.abs(lps[..., 1]) < 30) & (np.abs(lps[..., 2]) < 40)
    volume[body] = 40.0
    volume[(lps[..., 1] > 36) & (lps[..., 1] < 40)] = 200.0  # the table: outside the body mask
    for amplitude, centre in ((900.0, BLOBS_LPS["bright"]), (-500.0, BLOBS_LPS["dark"])):
        volume += amplitude * np.exp(-((lps - centre) ** 2).sum(-1) / (2 * 5.0**2))
    out = sitk.GetImageFromArray(volume.T.astype(np.float32))
    out.CopyInformation(image)
    return out


class CentreIntensityNet(nn.Module):
    """Logits from the mean of the patch centres: bright -> "bright", -460 HU inside tissue -> "dark", "absent" never."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.shape[-1] // 2
        v = x[:, :, p - 1 : p + 1, p - 1 : p + 1].mean(dim=(1, 2, 3))
        air = torch.relu(-0.2 - x.mean(dim=(1, 2, 3)))  # patches half in air: the body edge, not a blob
        return torch.stack([12 * v, 20 * (0.3 - (v + 0.46).abs()) - 40 * air, torch.full_like(v, -20.0), torch.full_like(v, 1.5)], dim=1)


CARD = {"class_names": ["bright", "dark", "absent", "background"], "patch": {"fov_mm": 24.0, "pixels": 8},
        "normalisation": {"hu_window": [-1000.0, 1000.0]}}


def test_body_mask_keeps_air_inside_the_body_and_drops_the_table():
    image = toy_ct()
    volume, geometry = sitk.GetArrayFromImage(image).T.copy(), Geometry.from_sitk(image)
    volume[(np.abs(geometry.index_to_lps(np.indices(volume.shape).reshape(3, -1).T)) < 8).all(1).reshape(volume.shape)] = -1000  # a "lung"
    lps = geometry.index_to_lps(np.indices(volume.shape).reshape(3, -1).T).reshape(*volume.shape, 3)
    mask = body_mask(volume, geometry, margin_mm=0.0)
    inside = mask.contains(np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 38.0, 0.0], [45.0, 0.0, 0.0], [0.0, 0.0, 200.0]]))
    assert inside.tolist() == [True, True, False, False, False]
    volume[(lps[..., 1] >= 29) & (lps[..., 1] < 36)] = 150.0  # the table touching the back: its sides go
    inside = body_mask(volume, geometry, margin_mm=0.0).contains(np.array([[0.0, 0.0, 0.0], [44.0, 32.0, 0.0], [44.0, 38.0, 0.0]]))
    assert inside.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="body threshold"):
        body_mask(np.full((8, 8, 8), -1000.0), geometry)


def test_grid_points_cover_the_image_with_the_step():
    geometry = Geometry.from_sitk(toy_ct())
    points = grid_points(geometry, 8.0)
    assert np.allclose(np.diff(np.unique(points[:, 0])), 8.0)
    assert geometry.contains_index(geometry.lps_to_index(points)).all()


def test_search_helpers():
    assert len(_neighbour_offsets()) == 26 and not (_neighbour_offsets() == 0).all(1).any()
    points = np.array([[0.0, 0, 0], [1.0, 0, 0], [30.0, 0, 0], [60.0, 0, 0]])
    assert _separated_top(points, np.array([0.9, 0.8, 0.7, 0.1]), 2, 16.0) == [0, 2]
    keep = _best_per_owner(np.array([1, 0, 1, 0]), np.array([0.2, 0.5, 0.7, 0.1]))
    assert keep.tolist() == [1, 2]


@pytest.mark.parametrize("direction", [np.diag([1.0, -1.0, 1.0]), np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])])
def test_detector_finds_known_blobs_and_reports_the_absent_kind(direction):
    image = toy_ct(direction=direction)
    detector = LandmarkDetector(CentreIntensityNet(), CARD, DetectConfig(coarse_step_mm=8.0, threads=1, batch_size=100))
    result = detector.detect(sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image), progress=False)
    table = result.table.set_index("landmark")
    assert list(table.index) == ["bright", "dark", "absent"]
    for name, centre in BLOBS_LPS.items():
        assert table.loc[name, "found"] and table.loc[name, "probability"] > 0.9
        assert np.linalg.norm(table.loc[name, ["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(float) - centre) <= 1.8
    assert not table.loc["absent", "found"] and np.isnan(table.loc["absent", "x_lps_mm"])
    assert result.patches_scored > 0 and result.seconds > 0


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


def test_detector_refuses_a_model_without_background(tmp_path):
    from lmtransfer.models.mini_vgg import MiniVGG
    from lmtransfer.training.pretrain import model_card
    from lmtransfer.sampling.cache import PatchCacheConfig
    from lmtransfer.training.train import TrainConfig

    model = MiniVGG(2, depth=1, width=4, convs_per_block=1, in_channels=3, input_pixels=8, feature_dim=8)
    torch.save({"state_dict": model.state_dict(), "card": model_card(model, ["a", "b"], PatchCacheConfig(), TrainConfig())}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="no background class"):
        LandmarkDetector.from_checkpoint(tmp_path / "m.pt")
    with pytest.raises(FileNotFoundError, match="not found"):
        LandmarkDetector.from_checkpoint(tmp_path / "missing.pt")


# --- scoring ---------------------------------------------------------------------------------------

def _truth() -> pd.DataFrame:
    return pd.DataFrame({
        "case": "c1", "landmark": ["T1_body_centre", "carina", "liver_dome", "pubic_symphysis"],
        "x_lps_mm": [0.0, 0.0, 0.0, 0.0], "y_lps_mm": [0.0, 0.0, 0.0, 0.0], "z_lps_mm": [0.0, 10.0, 20.0, 30.0],
        "in_image": [True, True, True, False],
    })


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


# --- the detect_eval stage: resume and restart ------------------------------------------------------

def test_detect_eval_scores_cases_and_resumes(tmp_path, monkeypatch):
    from lmtransfer.detection import run

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

    def stand_in(path, config, shape):
        made.append(shape)
        return LandmarkDetector(CentreIntensityNet(), CARD, config, shape)

    monkeypatch.setattr(LandmarkDetector, "from_checkpoint", staticmethod(stand_in))
    params = run.DetectEvalParams(detect=DetectConfig(threads=1), model=tmp_path / "model.pt", manifest=tmp_path / "manifest.csv",
                                  truth=tmp_path / "truth.csv", splits=tmp_path / "splits.json", out_dir=tmp_path / "report", track=False,
                                  shape_model=tmp_path / "shape.json")
    metrics = run.run_detect_eval(params, progress=False)
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
    again = run.run_detect_eval(params, progress=False)
    timing = ("seconds_per_volume", "seconds_per_volume_max", "volumes_timed")
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in metrics.items() if k not in timing}
    assert (report / "detections" / "c1.csv").stat().st_mtime_ns == kept
    # another setting: every case is redone
    run.run_detect_eval(replace(params, detect=DetectConfig(threads=1, min_probability=0.6)), progress=False)
    assert (report / "detections" / "c1.csv").stat().st_mtime_ns != kept


def test_detect_eval_names_a_case_without_truth(tmp_path):
    from lmtransfer.detection import run

    pd.DataFrame({"case": ["c1"], "image_path": ["x.nii.gz"], "landmark": ["a"]}).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame({"case": ["c9"], "landmark": ["a"], "x": [0.0], "y": [0.0], "z": [0.0], "space": ["LPS"]}).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "splits.json").write_text(json.dumps({"test": ["c1"]}))
    params = run.DetectEvalParams(manifest=tmp_path / "manifest.csv", truth=tmp_path / "t.csv", splits=tmp_path / "splits.json", track=False)
    with pytest.raises(ValueError, match=r"t.csv: no landmark truth for case\(s\) \['c1'\]"):
        run.run_detect_eval(params, progress=False)


def test_inference_copy_of_the_cnn_gives_the_same_probabilities():
    from lmtransfer.models.mini_vgg import MiniVGG

    torch.manual_seed(0)
    model = MiniVGG(5, depth=2, width=8, input_pixels=16, feature_dim=16)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    card = {"class_names": ["a", "b", "c", "d", "background"], "patch": {"fov_mm": 24.0, "pixels": 16},
            "normalisation": {"hu_window": [-1000.0, 1000.0]}}
    fast = LandmarkDetector(model, card).model
    x = torch.randn(7, 3, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(fast(x.contiguous(memory_format=torch.channels_last)), model.eval()(x), atol=1e-4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the caller's model is left as it was


def _tiny_checkpoint(path):
    from lmtransfer.models.mini_vgg import MiniVGG
    from lmtransfer.sampling.cache import PatchCacheConfig
    from lmtransfer.training.pretrain import save_checkpoint
    from lmtransfer.training.train import TrainConfig

    model = MiniVGG(3, depth=1, width=4, convs_per_block=1, input_pixels=32, feature_dim=8)
    save_checkpoint(path, model, ["carina", "heart_apex", "background"], PatchCacheConfig(), TrainConfig())
    return path


def test_cli_detect_writes_markups_and_csv(tmp_path, capsys):
    from lmtransfer.cli import main

    volume = tmp_path / "toy.nrrd"
    sitk.WriteImage(toy_ct(), str(volume))
    model = _tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out" / "toy.mrk.json"
    assert main(["detect", str(volume), "--model", str(model), "--out", str(out), "--min-probability", "0",
                 "--params", str(tmp_path / "none.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "2 of 2 landmark kinds found" in printed and "no landmark shape model" in printed
    listed = [line.split()[0] for line in printed.splitlines() if line.startswith("  ")]
    table = read_detections(tmp_path / "out" / "toy.csv")
    assert listed == table.sort_values("z_lps_mm", ascending=False)["landmark"].tolist()  # head to feet
    assert len(validate_markups(out)["markups"][0]["controlPoints"]) == 2
    assert read_detections(tmp_path / "out" / "toy.csv")["landmark"].tolist() == ["carina", "heart_apex"]


def test_cli_detect_names_a_corrupt_volume(tmp_path, capsys):
    from lmtransfer.cli import main

    good = tmp_path / "good.nii.gz"
    sitk.WriteImage(toy_ct(), str(good))
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[:5000])
    model = _tiny_checkpoint(tmp_path / "tiny.pt")
    assert main(["detect", str(bad), "--model", str(model), "--params", str(tmp_path / "none.yaml"), "--quiet"]) == 2
    assert str(bad) in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mrk.json"))


# --- the shape model ---------------------------------------------------------------------------------

def _shape_cases(n=8, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    layout = {"a": [0.0, 0.0, 0.0], "b": [0.0, 0.0, 40.0], "c": [30.0, 0.0, 20.0], "d": [0.0, 50.0, 0.0]}
    rows = []
    for case in range(n):
        shift = rng.normal(0, 30, 3)
        for name, xyz in layout.items():
            x, y, z = np.asarray(xyz) + shift + rng.normal(0, 1.0, 3)
            rows.append({"case": f"k{case}", "landmark": name, "x_lps_mm": x, "y_lps_mm": y, "z_lps_mm": z, "in_image": True})
    return pd.DataFrame(rows)


def test_shape_model_learns_offsets_and_flags_the_odd_one_out(tmp_path):
    shape = ShapeModel.fit(_shape_cases(), ["a", "b", "c", "d"])
    assert shape.offset_mm[0, 1] == pytest.approx([0.0, 0.0, 40.0], abs=1.5)
    assert (shape.spread_mm[~np.eye(4, dtype=bool)] >= 3.0).all()  # the floor
    positions = np.array([[100.0, 0, 0], [100.0, 0, 40], [130.0, 0, 20], [100.0, 50, 0]])
    everyone = np.ones(4, dtype=bool)
    good = shape.inconsistency(positions, np.arange(4), positions, everyone)
    assert (good < 1.0).all()
    moved = positions.copy()
    moved[2] += [0, 0, 45.0]  # "c" detected on the wrong structure
    scores = shape.inconsistency(moved, np.arange(4), moved, everyone)
    assert scores[2] > 5 and (np.delete(scores, 2) < 2).all()
    assert shape.predicted(moved, np.array([True, True, False, True]))[2] == pytest.approx([130.0, 0, 20], abs=2.0)
    shape.save(tmp_path / "shape.json")
    back = ShapeModel.load(tmp_path / "shape.json").subset(["d", "x", "a"])
    assert back.offset_mm[0, 2] == pytest.approx(-shape.offset_mm[0, 3], abs=0.01)
    assert np.isinf(back.spread_mm[1]).all()  # an unknown kind gets no constraints
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not a landmark shape model"):
        ShapeModel.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="at least 2 cases"):
        ShapeModel.fit(_shape_cases(n=1), ["a", "b"])


def test_detector_drops_detections_the_shape_model_contradicts():
    image = toy_ct()
    truth = pd.DataFrame([{"case": f"k{i}", "landmark": name, "x_lps_mm": xyz[0] + i, "y_lps_mm": xyz[1], "z_lps_mm": xyz[2], "in_image": True}
                          for i in range(6) for name, xyz in BLOBS_LPS.items()])
    volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
    agreeing = ShapeModel.fit(truth, ["bright", "dark"])
    result = LandmarkDetector(CentreIntensityNet(), CARD, DetectConfig(threads=1), agreeing).detect(volume, geometry, progress=False)
    assert result.table["found"].tolist() == [True, True, False]
    assert (result.table["inconsistency"].iloc[:2] < 1).all()
    # a model that puts "dark" 60 mm higher: now the two cannot both be right, neither is trusted
    far = truth.assign(z_lps_mm=np.where(truth["landmark"] == "dark", truth["z_lps_mm"] + 60, truth["z_lps_mm"]))
    result = LandmarkDetector(CentreIntensityNet(), CARD, DetectConfig(threads=1), ShapeModel.fit(far, ["bright", "dark"])).detect(
        volume, geometry, progress=False)
    assert not result.table["found"].any()
