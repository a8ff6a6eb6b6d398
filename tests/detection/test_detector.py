"""The coarse-to-fine search on a toy CT with a stand-in network, its helpers and its inference copy."""

from __future__ import annotations

from dataclasses import replace
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from lmtransfer.detection.detector import DetectConfig, LandmarkDetector, _best_per_owner, _neighbour_offsets, _separated_top
from lmtransfer.detection.shape import ShapeModel
from lmtransfer.io.coords import Geometry
from toy_detection import BLOBS_LPS, toy_ct, CentreIntensityNet, CARD


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


def test_screening_scores_a_fraction_of_the_grid_and_finds_the_same_landmarks():
    image = toy_ct()
    volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
    results = {factor: LandmarkDetector(CentreIntensityNet(), CARD, DetectConfig(coarse_step_mm=4.0, screen_factor=factor,
                                                                               threads=1, batch_size=100)).detect(volume, geometry, progress=False)
               for factor in (1, 2)}
    full, screened = results[1], results[2]
    pd.testing.assert_frame_equal(screened.table, full.table, atol=1e-6)
    refinement = 26 * 3 * 3 * 3
    # the screening lattice is an eighth of the grid; only the neighbourhoods of the two blobs are added
    assert screened.patches_scored - refinement < 0.5 * (full.patches_scored - refinement)


def test_detector_refuses_a_model_without_background(tmp_path):
    from lmtransfer.models.checkpoint import save_checkpoint
    from lmtransfer.models.mini_vgg import MiniVGG
    from lmtransfer.training.pretrain import model_card
    from lmtransfer.sampling.cache import PatchCacheConfig
    from lmtransfer.training.train import TrainConfig

    model = MiniVGG(2, depth=1, width=4, convs_per_block=1, in_channels=3, input_pixels=8, feature_dim=8)
    save_checkpoint(tmp_path / "m.pt", model, model_card(model, ["a", "b"], PatchCacheConfig(), TrainConfig()))
    with pytest.raises(ValueError, match="no background class"):
        LandmarkDetector.from_checkpoint(tmp_path / "m.pt")
    with pytest.raises(FileNotFoundError, match="not found"):
        LandmarkDetector.from_checkpoint(tmp_path / "missing.pt")


def test_inference_copy_of_the_cnn_gives_the_same_probabilities():
    from lmtransfer.models.mini_vgg import MiniVGG

    torch.manual_seed(0)
    model = MiniVGG(5, depth=2, width=8, input_pixels=16, feature_dim=16)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    card = replace(CARD, config=model.config, class_names=("a", "b", "c", "d", "background"), patch={"fov_mm": 24.0, "pixels": 16})
    fast = LandmarkDetector(model, card).model
    x = torch.randn(7, 3, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(fast(x.contiguous(memory_format=torch.channels_last)), model.eval()(x), atol=1e-4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the caller's model is left as it was


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



def test_a_few_mutually_consistent_kinds_anchor_the_shape_check_when_most_guesses_are_wrong():
    # six kinds on a known layout; the network's best guesses are right for a, b, c only, and d, e, f are
    # confidently wrong in three different ways. A first vote among all six finds every kind disagreeing
    # with the median of the others (nothing found, as on real CT); the consistent core a, b, c does not.
    layout = {"a": [0.0, 0.0, 0.0], "b": [0.0, 0.0, 30.0], "c": [20.0, 0.0, 15.0], "d": [-20.0, 0.0, 15.0],
              "e": [0.0, 15.0, 15.0], "f": [0.0, -15.0, 15.0]}
    rng = np.random.default_rng(0)
    cases = pd.DataFrame([{"case": f"k{i}", "landmark": n, "x_lps_mm": x + s[0] + rng.normal(0, 1), "y_lps_mm": y + s[1],
                           "z_lps_mm": z + s[2], "in_image": True}
                          for i, s in enumerate(rng.normal(0, 5, (8, 3))) for n, (x, y, z) in layout.items()])
    names = list(layout)
    card = replace(CARD, class_names=(*names, "background"))
    detector = LandmarkDetector(CentreIntensityNet(), card, DetectConfig(threads=1), ShapeModel.fit(cases, names))
    guesses = np.array([layout[n] for n in names])
    guesses[3:] += [[0, 0, 40.0], [30.0, 0, -20.0], [-25.0, 25.0, 0]]
    owners, peaks = np.arange(6), np.array([0.9, 0.92, 0.88, 0.99, 0.97, 0.98])
    _, _, _, found = detector._choose(owners, guesses, peaks, Geometry.from_sitk(toy_ct()))
    assert found.tolist() == [True, True, True, False, False, False]


def test_a_checkpoint_error_without_a_voter_is_not_blamed_on_one(tmp_path):
    from lmtransfer.models.checkpoint import save_checkpoint
    from lmtransfer.models.mini_vgg import MiniVGG
    from lmtransfer.sampling.cache import PatchCacheConfig
    from lmtransfer.training.pretrain import model_card
    from lmtransfer.training.train import TrainConfig

    model = MiniVGG(2, depth=1, width=4, convs_per_block=1, in_channels=3, input_pixels=8, feature_dim=8)
    card = replace(model_card(model, ["a", "background"], PatchCacheConfig(), TrainConfig()), patch=None)
    save_checkpoint(tmp_path / "m.pt", model, card)
    with pytest.raises(ValueError, match="^the model card has no patch fov_mm"):
        LandmarkDetector.from_checkpoint(tmp_path / "m.pt")


class PlateauNet(nn.Module):
    """"bright" with probability exactly 1.0 wherever the patch centre is above 600 HU (a ball of about 5 mm
    radius round the bright blob's centre), 0 elsewhere: the flat top a jitter-trained network answers with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x.shape[-1] // 2
        v = x[:, :, p - 1 : p + 1, p - 1 : p + 1].mean(dim=(1, 2, 3))
        bright = 60 * torch.sigmoid(200 * (v - 0.6)) - 30
        low = torch.full_like(v, -30.0)
        return torch.stack([bright, low, low, torch.zeros_like(v)], dim=1)


def test_the_centroid_step_finds_the_middle_of_a_flat_topped_answer():
    image = toy_ct()
    volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
    errors = {}
    for centroid_mm in (0.0, 6.0):
        config = DetectConfig(coarse_step_mm=8.0, candidates=1, centroid_mm=centroid_mm, threads=1, batch_size=100)
        table = LandmarkDetector(PlateauNet(), CARD, config).detect(volume, geometry, progress=False).table.set_index("landmark")
        assert table.loc["bright", "probability"] == 1.0
        errors[centroid_mm] = np.linalg.norm(table.loc["bright", ["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(float) - BLOBS_LPS["bright"])
    # the climb stops where it first reaches the plateau, near its edge; the centroid moves to its middle
    assert errors[0.0] >= 1.5 and errors[6.0] < 0.5, errors


def test_centroid_settings_are_checked():
    for bad in ({"centroid_mm": -1.0}, {"centroid_step_mm": 0.0}, {"centroid_fraction": 1.0}):
        with pytest.raises(ValueError, match="centroid"):
            DetectConfig(**bad)
