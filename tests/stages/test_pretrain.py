"""`lmtransfer pretrain --device cpu` with ``pretrain.loader: queue``: a step trained without a patch cache."""

import json

import pytest
import yaml

from lmtransfer.cli import main
from lmtransfer.io.manifest import build_manifest, write_outputs
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, generate_dataset
from lmtransfer.sampling.cache import split_cases


@pytest.mark.slow
def test_a_step_trains_from_the_queue(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generate_dataset(PhantomCTConfig(n_cases=4, spacing_inplane_mm=3.0, slice_mm_choices=(4.0,), slice_mm_weights=(1.0,)),
                     tmp_path / "phantom", progress=False)
    manifest, report = build_manifest(tmp_path / "phantom" / "images", [tmp_path / "phantom" / "landmarks"], progress=False)
    write_outputs(manifest, report, tmp_path / "manifest")
    (tmp_path / "splits.json").write_text(json.dumps(split_cases(sorted(manifest["case"].unique()), (0.5, 0.25, 0.25), 0)))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "ingest": {"out_dir": "manifest"}, "split": {"out": "splits.json"}, "patches": {"background_per_case": 6},
        "pretrain": {"loader": "queue", "samples_per_volume": 16, "depth": 2, "width": 4, "feature_dim": 8, "max_epochs": 1,
                     "step_epochs": {"lm5": 2}, "epoch_patches": 64, "batch_size": 32, "track": False},
        "compute": {"device": "auto", "threads": 1}}))
    assert main(["pretrain", "--landmarks", "5", "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "reports" / "pretrain" / "lm5" / "metrics.json").read_text())
    assert metrics["classes"] == 6 and 0 <= metrics["test_top1"] <= 1
    assert metrics["epochs"] == 2  # step_epochs names this step: its own schedule length, not max_epochs
    assert (tmp_path / "models" / "lm_cnn_lm5.pt").stat().st_size > 1000
    assert not (tmp_path / "data" / "patches").exists()  # no cache was cut


def test_step_epochs_set_the_named_steps_schedule_and_turn_off_early_stopping():
    from lmtransfer.stages.pretrain import PretrainParams
    from lmtransfer.training.train import TrainConfig

    params = PretrainParams(train=TrainConfig(max_epochs=25, patience=5), step_epochs={"lm20": 12})
    assert (params.step_train("lm20").max_epochs, params.step_train("lm20").patience) == (12, 12)
    assert params.step_train("lm60_direct") == params.train
    for bad in ({"lm20": 0}, {"lm20": 2.5}, ["lm20"]):
        with pytest.raises(ValueError, match="step_epochs"):
            PretrainParams(step_epochs=bad)
