"""Checkpoints: a round trip keeps the weights and card; a file from anywhere cannot run code when read."""

import pytest
import torch

from conftest import PicklePayload
from lmtransfer.cli import main
from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.sampling.cache import PatchCacheConfig
from lmtransfer.models.checkpoint import ARCHITECTURES, CheckpointError, ModelCard, load_checkpoint, save_checkpoint
from lmtransfer.training.pretrain import model_card
from lmtransfer.training.train import TrainConfig


def test_round_trip(tmp_path):
    model = MiniVGG(4, depth=2, width=8, feature_dim=16)
    save_checkpoint(tmp_path / "m.pt", model, model_card(model, ["a", "b", "c", "background"], PatchCacheConfig(), TrainConfig(),
                                                         {"data_hash": "abc"}))
    loaded, card = load_checkpoint(tmp_path / "m.pt")
    assert card.class_names[-1] == "background" and card.fov_mm == 48.0 and card.pixels == 32
    assert card.hu_window == (-1000.0, 1000.0) and card.training_data == {"data_hash": "abc"}
    assert not list(tmp_path.glob(".tmp_*"))  # written through a temporary file
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


def test_architecture_comes_from_the_registry(tmp_path, monkeypatch):
    class Tiny(torch.nn.Module):
        def __init__(self, n_classes: int):
            super().__init__()
            self.linear = torch.nn.Linear(4, n_classes)

    card = ModelCard(architecture="tiny", config={"n_classes": 3}, class_names=("a", "b", "c"), normalisation={"input": "x"})
    save_checkpoint(tmp_path / "t.pt", Tiny(3), card)
    with pytest.raises(CheckpointError, match="t.pt: unknown architecture 'tiny'"):
        load_checkpoint(tmp_path / "t.pt")
    monkeypatch.setitem(ARCHITECTURES, "tiny", Tiny)  # one registry line adds a network
    model, loaded = load_checkpoint(tmp_path / "t.pt")
    assert isinstance(model, Tiny) and loaded == card
    with pytest.raises(CheckpointError, match="no patch fov_mm"):
        loaded.fov_mm  # noqa: B018 - not a CT patch model


def test_cards_of_earlier_checkpoints_still_load(tmp_path):
    """Checkpoints written before the typed card (a plain dict without training_data) keep working."""
    model = MiniVGG(2, depth=2, width=8, feature_dim=16)
    old_card = {"architecture": "mini-VGG", "config": model.config, "class_names": ["a", "background"],
                "patch": {"fov_mm": 48.0, "pixels": 32}, "normalisation": {"hu_window": [-1000.0, 1000.0], "maps_to": [-1, 1]},
                "features": "MiniVGG.features(x)"}
    torch.save({"state_dict": model.state_dict(), "card": old_card}, tmp_path / "old.pt")
    _, card = load_checkpoint(tmp_path / "old.pt")
    assert card.class_names == ("a", "background") and card.training_data == {}


def test_same_weights_same_bytes_whatever_the_file_name(tmp_path):
    """The archive inside a .pt is named after the file it is written to; saving goes through a temporary
    file, so the bytes must not depend on that name (DVC hashes them)."""
    model = MiniVGG(2, depth=2, width=8, feature_dim=16)
    card = model_card(model, ["a", "background"], PatchCacheConfig(), TrainConfig())
    save_checkpoint(tmp_path / "one.pt", model, card)
    save_checkpoint(tmp_path / "other_name.pt", model, card)
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes()
