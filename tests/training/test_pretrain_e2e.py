"""Pre-training steps end to end on a tiny phantom: reports, checkpoints, class expansion, MLflow runs."""

import json

import mlflow
import pytest
import torch

from lmtransfer.io.manifest import build_manifest
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, generate_dataset
from lmtransfer.sampling.cache import PatchCacheConfig, build_patch_cache, split_cases
from lmtransfer.models.checkpoint import load_checkpoint
from lmtransfer.tracking import MlflowTracker
from lmtransfer.training.pretrain import run_step
from lmtransfer.training.train import TrainConfig


def few_card_names(path):
    return load_checkpoint(path)[1].class_names


@pytest.mark.slow
def test_expansion_steps_are_tracked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    phantom = PhantomCTConfig(n_cases=4, spacing_inplane_mm=3.0, slice_mm_choices=(4.0,), slice_mm_weights=(1.0,))
    generate_dataset(phantom, tmp_path / "phantom", progress=False)
    manifest, _ = build_manifest(tmp_path / "phantom" / "images", [tmp_path / "phantom" / "landmarks"], progress=False)
    patch = PatchCacheConfig(background_per_case=12, augmented_copies=1)
    cache = build_patch_cache(manifest, "hash", patch, tmp_path / "patches", progress=False)
    splits = split_cases(sorted(manifest["case"].unique()), (0.5, 0.25, 0.25), 0)
    cfg = TrainConfig(depth=2, width=8, feature_dim=32, max_epochs=2, epoch_patches=640, batch_size=32, threads=1)
    tracker = MlflowTracker()

    first = run_step("lm10", 10, cache, splits, patch, cfg, 0, tmp_path / "reports" / "lm10", tmp_path / "models" / "lm10.pt",
                     tracker=tracker, tags={"data_hash": "hash"})
    second = run_step("lm20", 20, cache, splits, patch, cfg, 0, tmp_path / "reports" / "lm20", tmp_path / "models" / "lm20.pt",
                      init_path=tmp_path / "models" / "lm10.pt", tracker=tracker)
    # the expansion step again, same seed: the same weights to the last bit (the widened classifier
    # rows come from a seeded generator, not from whatever the global RNG holds)
    torch.manual_seed(12345)
    run_step("lm20", 20, cache, splits, patch, cfg, 0, tmp_path / "again", tmp_path / "models" / "lm20_again.pt",
             init_path=tmp_path / "models" / "lm10.pt")
    once, twice = load_checkpoint(tmp_path / "models" / "lm20.pt")[0], load_checkpoint(tmp_path / "models" / "lm20_again.pt")[0]
    for key, value in once.state_dict().items():
        assert torch.equal(value, twice.state_dict()[key]), key
    for result, n in ((first, 10), (second, 20)):
        metrics = json.loads((tmp_path / "reports" / result.name / "metrics.json").read_text())
        assert metrics["classes"] == n + 1 and 0.0 <= metrics["test_top1"] <= 1.0
        assert (tmp_path / "reports" / result.name / "artifacts" / "gallery.png").stat().st_size > 5000
    model, card = load_checkpoint(tmp_path / "models" / "lm20.pt")
    _, card10 = load_checkpoint(tmp_path / "models" / "lm10.pt")
    assert card.class_names[:10] == card10.class_names[:10] and card.class_names[-1] == "background"
    assert card.fov_mm == 48.0 and card.hu_window == (-1000.0, 1000.0)
    assert card.training_data == {} and card10.training_data == {"data_hash": "hash"}  # lm10 was given its data hash

    # the recipe for a collection with fewer kinds: start from a model whose classes it lacks in part
    # (the phantom's lm60 on a segmented folder); asked for more kinds than the data has, a step takes them all
    few = run_step("few", 10, cache, splits, patch, cfg, 7, tmp_path / "reports" / "few", tmp_path / "models" / "few.pt",
                   init_path=tmp_path / "models" / "lm20.pt")
    kept = [c for c in card.class_names if c in few_card_names(tmp_path / "models" / "few.pt")]
    assert 0 < len(kept) < 21 and few.test["top1"] >= 0
    every = run_step("all", 500, cache, splits, patch, cfg, 0, tmp_path / "reports" / "all", tmp_path / "models" / "all.pt")
    trained = manifest.loc[manifest["case"].isin(splits["train"]) & manifest["in_image"], "landmark"].nunique()
    assert json.loads((tmp_path / "reports" / "all" / "metrics.json").read_text())["classes"] == trained + 1 < 65
    assert every.test["top1"] >= 0
    with pytest.raises(ValueError, match="trained on 48 mm patches of 32 pixels, this step cuts 40 mm"):
        run_step("other_fov", 10, cache, splits, PatchCacheConfig(fov_mm=40.0), cfg, 0, tmp_path / "x", tmp_path / "x.pt",
                 init_path=tmp_path / "models" / "lm20.pt")

    client = mlflow.MlflowClient()
    runs = client.search_runs([mlflow.get_experiment_by_name("landmark-pretraining").experiment_id])
    assert {r.info.run_name for r in runs} == {"lm10", "lm20"}
    lm20 = next(r for r in runs if r.info.run_name == "lm20")
    assert lm20.data.params["init_from"].endswith("lm10.pt") and lm20.data.tags["route"] == "expansion"
    assert "git_commit" in lm20.data.tags and lm20.data.tags["seed"] == "0"
    assert "val_top1" in lm20.data.metrics and "test_top1" in lm20.data.metrics
    assert len(client.get_metric_history(lm20.info.run_id, "val_top1")) == 2
    versions = client.search_model_versions("name='lm-cnn'")
    assert len(versions) == 2
