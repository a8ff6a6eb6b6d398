"""Checkpoints: a round trip keeps the weights and card; a file from anywhere cannot run code when read."""

import pytest
import torch

from conftest import PicklePayload
from lmtransfer.cli import main
from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.sampling.cache import PatchCacheConfig
from lmtransfer.training.pretrain import CheckpointError, load_checkpoint, save_checkpoint
from lmtransfer.training.train import TrainConfig


def test_round_trip(tmp_path):
    model = MiniVGG(4, depth=2, width=8, feature_dim=16)
    save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c", "background"], PatchCacheConfig(), TrainConfig())
    loaded, card = load_checkpoint(tmp_path / "m.pt")
    assert card["class_names"][-1] == "background"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_malicious_checkpoint_runs_no_code(tmp_path):
    target = tmp_path / "written_by_payload"
    evil = tmp_path / "evil.pt"
    model = MiniVGG(2, depth=2, width=8, feature_dim=16)
    torch.save({"state_dict": model.state_dict(), "card": {"config": model.config, "x": PicklePayload(target)}}, evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(evil)
    assert not target.exists()


def test_cli_refuses_a_malicious_model(tmp_path, capsys):
    target = tmp_path / "written_by_payload"
    torch.save(PicklePayload(target), tmp_path / "evil.pt")
    volume = tmp_path / "missing_is_fine.nii.gz"
    assert main(["detect", str(volume), "--model", str(tmp_path / "evil.pt"), "--quiet"]) == 2
    assert "evil.pt" in capsys.readouterr().err
    assert not target.exists()


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04broken"])
def test_unreadable_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)
