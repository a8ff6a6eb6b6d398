"""The device setting: names checked, a missing GPU named clearly, the CPU path unchanged."""

import numpy as np
import pytest
import torch

from lmtransfer.cli import main
from lmtransfer.config import ConfigError, load_params
from lmtransfer.devices import autocast, grad_scaler, resolve_device
from lmtransfer.training.data import PatchSet
from lmtransfer.training.train import TrainConfig, predict, train_model


def test_auto_picks_what_the_machine_has():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_names_are_refused(name):
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(name)


def test_a_missing_gpu_is_named():
    if torch.cuda.is_available():
        assert resolve_device("cuda:0").type == "cuda"
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="sees no CUDA device"):
            resolve_device("cuda")


def test_cpu_gets_no_mixed_precision():
    cpu = torch.device("cpu")
    assert grad_scaler(cpu) is None
    with autocast(cpu):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


def test_config_checks_the_device(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("compute:\n  device: gpu\n")
    with pytest.raises(ConfigError, match="compute.device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'"):
        load_params(path)
    path.write_text("compute:\n  device: cuda:1\n")
    assert load_params(path).compute.device == "cuda:1"


def test_training_returns_a_cpu_model_and_the_same_numbers_on_the_cpu():
    rng = np.random.default_rng(0)
    x = rng.integers(-1000, 1000, (60, 3, 16, 16)).astype(np.int16)
    y = np.repeat([0, 1, 2], 20)
    data = PatchSet(x, y, None, ["a", "b", "background"])
    cfg = TrainConfig(depth=2, width=4, feature_dim=8, max_epochs=2, epoch_patches=64, batch_size=16, threads=1)
    first, history = train_model(data, data, cfg, progress=None)
    again, history_again = train_model(data, data, cfg, progress=None, device=resolve_device("cpu"))
    assert all(p.device.type == "cpu" for p in again.parameters())
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])
    np.testing.assert_array_equal(predict(first, x, cfg.normaliser), predict(again, x, cfg.normaliser, device="cpu"))


def test_cli_device_option_is_resolved_before_any_work(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(f"patches:\n  out_dir: {tmp_path / 'no_cache'}\n")
    wanted = "cuda:99" if torch.cuda.is_available() else "cuda"  # a device this machine does not have
    assert main(["pretrain", "--params", str(params), "--landmarks", "3", "--device", wanted]) == 2
    assert "CUDA device" in capsys.readouterr().err  # not the missing patch cache
