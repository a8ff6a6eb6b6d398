"""`lmtransfer detect` on a volume file."""

from __future__ import annotations

import SimpleITK as sitk

from conftest import validate_markups
from lmtransfer.detection.cases import read_detections
from toy_detection import toy_ct, _tiny_checkpoint


def test_cli_detect_writes_markups_and_csv(tmp_path, capsys, monkeypatch):
    from lmtransfer.cli import main

    monkeypatch.chdir(tmp_path)   # no models/landmark_shape.json here, whatever the project's checkout holds

    volume = tmp_path / "toy.nrrd"
    sitk.WriteImage(toy_ct(), str(volume))
    model = _tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out" / "toy.mrk.json"
    assert main(["detect", str(volume), "--model", str(model), "--out", str(out), "--min-probability", "0",
                 "--params", str(tmp_path / "none.yaml")]) == 0
    printed = capsys.readouterr().out
    assert "2 of 2 landmark kinds found" in printed and "no landmark shape model" in printed
    assert "not looked for: 62 landmark kind(s) this model was not trained on: C7_body_centre, T1_body_centre" in printed
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



def test_cli_detect_votes_with_a_voter_and_names_one_that_lacks_a_kind(tmp_path, capsys, monkeypatch):
    import re
    from dataclasses import replace

    from lmtransfer.cli import main
    from lmtransfer.models.checkpoint import ModelCard, save_checkpoint
    from lmtransfer.models.mini_vgg import OffsetVoter

    monkeypatch.chdir(tmp_path)
    volume = tmp_path / "toy.nrrd"
    sitk.WriteImage(toy_ct(), str(volume))
    model = _tiny_checkpoint(tmp_path / "tiny.pt")
    voter = OffsetVoter(2, depth=1, width=2, convs_per_block=1, input_pixels=32, feature_dim=4)
    card = ModelCard("mini-VGG-voter", voter.config, ("carina", "heart_apex"), {"hu_window": [-1000.0, 1000.0]},
                     {"fov_mm": 96.0, "pixels": 32})
    save_checkpoint(tmp_path / "voter.pt", voter, card)
    patches = {}
    for flag in (["--voter", "voter.pt"], ["--no-voter"]):
        assert main(["detect", str(volume), "--model", str(model), "--min-probability", "0", "--quiet", *flag,
                     "--params", str(tmp_path / "none.yaml")]) == 0
        patches[flag[0]] = int(re.search(r"\((\d+) patches\)", capsys.readouterr().out).group(1))
    assert patches["--voter"] < patches["--no-voter"]
    save_checkpoint(tmp_path / "short.pt", OffsetVoter(1, depth=1, width=2, convs_per_block=1, input_pixels=32, feature_dim=4),
                    replace(card, class_names=("carina",), config={**voter.config, "n_landmarks": 1}))
    assert main(["detect", str(volume), "--model", str(model), "--voter", "short.pt", "--quiet",
                 "--params", str(tmp_path / "none.yaml")]) == 2
    assert "short.pt: the voting network knows no ['heart_apex']" in capsys.readouterr().err
