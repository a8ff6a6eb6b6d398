"""Offset voting: targets, vote clusters, training patches, a network that learns offsets, and the
detector's voting coarse pass on the toy CT with a stand-in voter."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from lmtransfer.detection.detector import DetectConfig, LandmarkDetector
from lmtransfer.detection.voting import VoterConfig, case_patches, cluster_votes, evaluate_voter, landmark_matrix, targets, train_voter
from lmtransfer.io.coords import Geometry
from lmtransfer.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from lmtransfer.models.mini_vgg import OffsetVoter
from lmtransfer.sampling.planes import PatchSpec
from toy_detection import BLOBS_LPS, CARD, CentreIntensityNet, toy_ct

TINY = VoterConfig(fov_mm=48.0, pixels=16, reach_mm=20.0, sample_radius_mm=28.0, per_landmark=40, background_per_case=20,
                   depth=2, width=8, feature_dim=32, max_epochs=8, patience=8, epoch_patches=2048, batch_size=64, lr=0.003,
                   threads=1)


def test_targets_mark_the_landmarks_within_reach_and_their_offsets():
    centres = np.array([[0.0, 0, 0], [100.0, 0, 0]])
    marks = np.array([[10.0, 0, 0], [np.nan, np.nan, np.nan], [0.0, 0, 45.0]])
    present, offsets = targets(centres, marks, reach_mm=40.0)
    assert present.tolist() == [[True, False, False], [False, False, False]]
    np.testing.assert_allclose(offsets[0, 0], [10.0, 0, 0])
    assert not offsets[~present].any()


def test_vote_clusters_come_densest_first_and_spend_their_votes():
    rng = np.random.default_rng(0)
    strong = np.array([10.0, 20.0, 30.0]) + rng.normal(0, 1.0, (30, 3))
    weak = np.array([-40.0, 0.0, 0.0]) + rng.normal(0, 1.0, (10, 3))
    centres, support = cluster_votes(np.concatenate([weak, strong]), np.ones(40), radius_mm=6.0, count=3)
    assert len(centres) == 2 and support[0] > support[1]
    assert np.linalg.norm(centres[0] - [10, 20, 30]) < 1.0 and np.linalg.norm(centres[1] - [-40, 0, 0]) < 1.5


def test_case_patches_are_seeded_and_lie_in_the_image():
    image = toy_ct()
    volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
    marks = np.array([BLOBS_LPS["bright"], [np.nan] * 3])
    one = case_patches(volume, geometry, marks, ["bright", "gone"], "c0", TINY, np.random.default_rng(3))
    two = case_patches(volume, geometry, marks, ["bright", "gone"], "c0", TINY, np.random.default_rng(3))
    np.testing.assert_array_equal(one.x, two.x)
    assert one.x.dtype == np.int16 and one.x.shape[1:] == (3, 16, 16)
    assert geometry.contains_index(geometry.lps_to_index(one.centres_lps_mm)).all()
    assert one.present[:, 0].any() and not one.present[:, 1].any()
    assert landmark_matrix(pd.DataFrame({"landmark": ["b"], "x_lps_mm": [1.0], "y_lps_mm": [2.0], "z_lps_mm": [3.0]}),
                           ["a", "b"])[1].tolist() == [1.0, 2.0, 3.0]


def _blob_case(seed: int):
    """A toy CT whose bright blob sits at a random place (and the dark one where it always is)."""
    rng = np.random.default_rng(seed)
    shift = rng.uniform(-8, 8, 3)
    image = toy_ct()
    geometry = Geometry.from_sitk(image)
    volume = sitk.GetArrayFromImage(image).T.astype(np.float32)
    ijk = np.stack(np.meshgrid(*(np.arange(s) for s in volume.shape), indexing="ij"), axis=-1)
    lps = geometry.index_to_lps(ijk.reshape(-1, 3)).reshape(*volume.shape, 3)
    centre = BLOBS_LPS["bright"] + shift
    volume += 900.0 * (np.exp(-((lps - centre) ** 2).sum(-1) / 50.0) - np.exp(-((lps - BLOBS_LPS["bright"]) ** 2).sum(-1) / 50.0))
    return volume, geometry, np.array([centre, BLOBS_LPS["dark"]])


@pytest.mark.slow
def test_the_voting_network_learns_where_the_landmark_is():
    from lmtransfer.detection.voting import VoterSet

    parts = {split: VoterSet.concat([case_patches(*_blob_case(s)[:2], _blob_case(s)[2], ["bright", "dark"], f"c{s}", TINY,
                                                  np.random.default_rng(s)) for s in seeds])
             for split, seeds in (("train", range(6)), ("val", (10, 11)))}
    model, history = train_voter(parts["train"], parts["val"], TINY, progress=None)
    scores = evaluate_voter(model, parts["val"], TINY)
    truth = np.linalg.norm(parts["val"].offsets_mm, axis=2)[parts["val"].present]
    # a network that never moves its vote would be off by the median distance (~ 0.8 reach); the trained one by far less
    assert scores["val_offset_median_mm"] < 0.5 * np.median(truth)
    prevalence = parts["val"].present.mean()
    assert scores["val_presence_f1"] > 2 * prevalence / (1 + prevalence) + 0.1  # better than always saying "near"
    assert history["best"].sum() == 1


class CentroidVoter(OffsetVoter):
    """Stand-in voter: presence and offset of the bright blob from the centroid of its bright pixels
    (axial plane for L and P, coronal for S); the dark blob and "absent" are never near."""

    def __init__(self):
        super().__init__(3, reach_mm=40.0, depth=1, width=2, convs_per_block=1, input_pixels=16, feature_dim=4)
        self.offsets = torch.from_numpy(PatchSpec(48.0, 16).offsets_mm()).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.relu(x - 0.5)
        axial, coronal = weight[:, 0], weight[:, 1]
        total = axial.sum(dim=(1, 2)).clamp_min(1e-6)
        left = (axial.sum(dim=1) * self.offsets).sum(1) / total
        posterior = (axial.sum(dim=2) * self.offsets).sum(1) / total
        superior = -(coronal.sum(dim=2) * self.offsets).sum(1) / coronal.sum(dim=(1, 2)).clamp_min(1e-6)
        seen = torch.where(total > 0.2, 10.0, -10.0)
        never = torch.full_like(seen, -10.0)
        offsets = torch.zeros(len(x), 3, 3)
        offsets[:, 0] = torch.stack([left, posterior, superior], dim=1) / self.reach_mm
        return torch.cat([torch.stack([seen, never, never], dim=1), offsets.reshape(len(x), -1)], dim=1)


VOTER_CARD = ModelCard(architecture="stand-in", config={}, class_names=("bright", "dark", "absent"),
                       patch={"fov_mm": 48.0, "pixels": 16}, normalisation={"hu_window": [-1000.0, 1000.0]})


def test_voting_finds_the_blob_with_a_fraction_of_the_grid_patches():
    image = toy_ct()
    volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
    cfg = DetectConfig(coarse_step_mm=4.0, vote_step_mm=12.0, threads=1, batch_size=100)
    grid = LandmarkDetector(CentreIntensityNet(), CARD, cfg).detect(volume, geometry, progress=False)
    voted = LandmarkDetector(CentreIntensityNet(), CARD, cfg, voter=(CentroidVoter(), VOTER_CARD)).detect(volume, geometry, progress=False)
    table = voted.table.set_index("landmark")
    found = table.loc["bright", ["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(float)
    assert table.loc["bright", "found"] and np.linalg.norm(found - BLOBS_LPS["bright"]) <= 1.8
    assert not table.loc["absent", "found"]
    assert voted.patches_scored < 0.25 * grid.patches_scored


def test_the_detector_names_kinds_its_voter_does_not_know(tmp_path):
    card = replace(VOTER_CARD, class_names=("bright", "dark"))
    model = OffsetVoter(2, depth=1, width=2, convs_per_block=1, input_pixels=16, feature_dim=4)
    with pytest.raises(ValueError, match="knows no \\['absent'\\]"):
        LandmarkDetector(CentreIntensityNet(), CARD, voter=(model, card))
    save_checkpoint(tmp_path / "v.pt", model, replace(card, architecture="mini-VGG-voter", config=model.config))
    loaded, loaded_card = load_checkpoint(tmp_path / "v.pt")
    assert isinstance(loaded, OffsetVoter) and loaded.n_landmarks == 2 and loaded_card.class_names == ("bright", "dark")
    assert loaded.split(loaded(torch.zeros(1, 3, 16, 16)))[1].shape == (1, 2, 3)


def test_cut_cases_give_the_same_patches_with_one_or_two_workers(tmp_path):
    from lmtransfer.detection.voting import cut_cases

    rows = []
    for case in ("a", "b"):
        path = tmp_path / f"{case}.nii.gz"
        sitk.WriteImage(toy_ct(), str(path))
        for name, centre in BLOBS_LPS.items():
            rows.append({"case": case, "image_path": str(path), "landmark": name,
                         "x_lps_mm": centre[0], "y_lps_mm": centre[1], "z_lps_mm": centre[2]})
    manifest = pd.DataFrame(rows)
    cfg = replace(TINY, per_landmark=5, background_per_case=4)
    one = cut_cases(manifest, ["a", "b"], ["bright", "dark"], cfg, workers=1)
    two = cut_cases(manifest, ["a", "b"], ["bright", "dark"], cfg, workers=2)
    np.testing.assert_array_equal(one.x, two.x)
    assert one.case.tolist() == two.case.tolist() and set(one.case) == {"a", "b"}
    assert not np.array_equal(one.x[one.case == "a"], one.x[one.case == "b"])  # each case draws its own centres
    with pytest.raises(ValueError, match="'c' of the split is not in the manifest"):
        cut_cases(manifest, ["c"], ["bright"], cfg)


class FarVoter(CentroidVoter):
    """Votes for every kind 1 m to the left of each patch: far outside the toy CT."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), 12)
        out[:, :3] = 10.0
        out[:, 3::3] = 1000.0 / self.reach_mm
        return out


def test_a_vote_beyond_the_image_edge_is_scored_at_the_edge():
    image = toy_ct()
    volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
    cfg = DetectConfig(vote_step_mm=12.0, min_probability=0.0, threads=1, batch_size=100)
    table = LandmarkDetector(CentreIntensityNet(), CARD, cfg, voter=(FarVoter(), VOTER_CARD)).detect(volume, geometry, progress=False).table
    assert table["found"].all() and (table["probability"] >= 0).all()   # min_probability 0: every kind gets a position
    positions = table[["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(float)
    assert geometry.contains_index(geometry.lps_to_index(positions)).all()


def _tiny_set(n: int):
    from lmtransfer.detection.voting import VoterSet

    rng = np.random.default_rng(0)
    return VoterSet(rng.integers(-1000, 1000, (n, 3, 16, 16)).astype(np.int16), rng.normal(size=(n, 3)), np.array([f"c{i % 3}" for i in range(n)], dtype=object),
                    rng.random((n, 2)) < 0.5, rng.normal(size=(n, 2, 3)).astype(np.float32), ["a", "b"])


def test_a_validation_subset_is_seeded_in_order_and_all_when_asked_for_all():
    data = _tiny_set(50)
    one, two = data.subset(20, seed=1), data.subset(20, seed=1)
    np.testing.assert_array_equal(one.x, two.x)
    rows = [int(np.flatnonzero((data.centres_lps_mm == c).all(axis=1))[0]) for c in one.centres_lps_mm]
    assert len(one) == 20 and rows == sorted(rows) and len(set(rows)) == 20
    np.testing.assert_array_equal(one.offsets_mm, data.offsets_mm[rows])
    assert data.subset(0, seed=1) is data and data.subset(80, seed=1) is data
    with pytest.raises(ValueError, match="val_patches"):
        VoterConfig(val_patches=-1)


def test_each_epoch_validates_on_the_subset(monkeypatch):
    import lmtransfer.detection.voting as voting

    seen = []
    real = voting.evaluate_voter
    monkeypatch.setattr(voting, "evaluate_voter", lambda model, data, *a, **k: (seen.append(len(data)), real(model, data, *a, **k))[1])
    cfg = replace(TINY, max_epochs=2, patience=2, epoch_patches=64, val_patches=12)
    train_voter(_tiny_set(40), _tiny_set(30), cfg, progress=None)
    assert seen == [12, 12]
