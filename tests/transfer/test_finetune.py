"""Fine-tuning: the starting networks (pre-trained layers kept, a new seeded head) and one short run."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from lmtransfer.config import FinetuneParams
from lmtransfer.models.checkpoint import ModelCard, save_checkpoint
from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.transfer.boosting import BoostConfig
from lmtransfer.transfer.finetune import initial_model, run_finetune
from test_experiment import _lesions


@pytest.fixture
def checkpoints(tmp_path):
    torch.manual_seed(7)  # not the fine-tuning seed: scratch must not start where these did
    paths = {}
    for name, classes in (("lm", 4), ("cifar", 10)):
        model = MiniVGG(classes, depth=2, width=4, input_pixels=16, feature_dim=8)
        card = ModelCard("mini-VGG", dict(model.config), tuple(f"c{i}" for i in range(classes)), {"hu_window": [-1, 1]})
        paths[name] = tmp_path / f"{name}.pt"
        save_checkpoint(paths[name], model, card)
    return paths


def test_starting_networks(checkpoints):
    lm = initial_model("lm", checkpoints["lm"], checkpoints["cifar"], seed=0)
    again = initial_model("lm", checkpoints["lm"], checkpoints["cifar"], seed=0)
    pretrained = torch.load(checkpoints["lm"], weights_only=True)["state_dict"]
    assert lm.classifier.out_features == 2
    assert torch.equal(lm.blocks[0].weight, pretrained["blocks.0.weight"])  # the pre-trained layers are kept
    assert torch.equal(lm.classifier.weight, again.classifier.weight)  # the new head is seeded
    scratch = initial_model("scratch", checkpoints["lm"], checkpoints["cifar"], seed=0)
    assert scratch.config == {**lm.config, "n_classes": 2}  # the landmark CNN's architecture, random weights
    assert not torch.equal(scratch.blocks[0].weight, lm.blocks[0].weight)
    with pytest.raises(ValueError, match="unknown fine-tuning source 'imagenet'"):
        initial_model("imagenet", checkpoints["lm"], checkpoints["cifar"], seed=0)


def test_a_short_run_scores_every_source(checkpoints, tmp_path):
    params = replace(FinetuneParams(), max_epochs=1, epoch_patches=64, batch_size=16, track=False, few_label_cases=(6, 40))
    boost = BoostConfig(folds=4, repeats=1, bootstrap=20)   # the first of 4 folds of 16 cases: 12 training, 4 test
    metrics = run_finetune(_lesions(), params, boost, checkpoints["lm"], checkpoints["cifar"], tmp_path / "out", threads=1,
                           progress=lambda _: None)
    table = pd.read_csv(tmp_path / "out" / "finetune.csv")
    # the whole training set, then the few-label subset (40 is more than the split has: skipped)
    assert table["source"].tolist() == ["lm", "cifar", "scratch"] * 2 and "seconds" not in table
    assert table["train_cases"].tolist() == [12] * 3 + [6] * 3
    assert {"lm_test_auc", "lm_test_auc_at_6_cases", "scratch_test_auc_at_6_cases_ci"} <= set(metrics)
    assert table["test_auc"].between(0, 1).all() and (table["test_auc_lo"] <= table["test_auc_hi"]).all()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == metrics
    assert metrics["test_cases"] == 4 and metrics["fit_cases"] + metrics["val_cases"] == 12


def test_validation_cases_are_the_sets_own_or_a_stratified_share():
    from lmtransfer.transfer.finetune import validation_cases

    lesions = _lesions(n_cases=20)
    lesions.index.loc[lesions.index["case"] >= "case_10", "label"] = 0      # cases 10-19 without lesions
    train = [f"case_{c:02d}" for c in range(20)]
    val, fit = validation_cases(lesions, train, 0.2, seed=0)
    assert len(val) == 4 and sorted(val + fit) == train
    assert sum(c < "case_10" for c in val) == 2                                # two of each stratum
    assert validation_cases(lesions, train, 0.2, seed=0) == (val, fit)
    lesions.index.loc[lesions.index["case"].isin(["case_03", "case_15"]), "fixed_split"] = "val"
    assert validation_cases(lesions, train, 0.2, seed=0)[0] == ["case_03", "case_15"]   # the set's own validation split
