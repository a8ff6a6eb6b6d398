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
                     "epoch_patches": 64, "batch_size": 32, "track": False},
        "compute": {"device": "auto", "threads": 1}}))
    assert main(["pretrain", "--landmarks", "5", "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "reports" / "pretrain" / "lm5" / "metrics.json").read_text())
    assert metrics["classes"] == 6 and 0 <= metrics["test_top1"] <= 1
    assert (tmp_path / "models" / "lm_cnn_lm5.pt").stat().st_size > 1000
    assert not (tmp_path / "data" / "patches").exists()  # no cache was cut
