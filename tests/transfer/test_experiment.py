"""The transfer experiment on a synthetic lesion set: splits by case, outputs, and the same numbers twice."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.transfer.boosting import BoostConfig
from lmtransfer.transfer import experiment
from lmtransfer.transfer.experiment import repeat_splits, run_transfer
from lmtransfer.transfer.lesions import INDEX_COLUMNS, LesionSet


def _lesions(n_cases=16, per_case=6, fixed=False) -> LesionSet:
    """Lesion patches hold a bright centre, normal ones do not; one lesion per case."""
    rng = np.random.default_rng(0)
    rows, x = [], []
    for c in range(n_cases):
        for k in range(per_case):
            label = int(k == 0)
            patch = rng.normal(0, 0.3, (3, 16, 16)).astype(np.float32)
            patch[:, 6:10, 6:10] += 1.5 * label
            x.append(np.clip(patch, -1, 1))
            split = ("train" if c < n_cases * 3 // 4 else "test") if fixed else ""
            rows.append([f"case_{c:02d}", label, 0, "lesion" if label else "vessel", 0.0, 0.0, 0.0, split])
    return LesionSet(np.stack(x), pd.DataFrame(rows, columns=INDEX_COLUMNS), {"source": "synthetic"})


def test_tested_sizes():
    assert experiment.tested_sizes(20) == [1, 2, 3, 5, 7, 10, 15, 20]
    assert experiment.tested_sizes(12)[-1] == 12


def test_splits_are_by_case_disjoint_and_seeded():
    cfg = BoostConfig(train_cases=10, test_cases=4, repeats=3)
    splits = repeat_splits(_lesions(), cfg)
    assert len(splits) == 3 and splits == repeat_splits(_lesions(), cfg)
    for train, test in splits:
        assert len(train) == 10 and len(test) == 4 and not set(train) & set(test)
    assert splits[0] != splits[1]
    official = repeat_splits(_lesions(fixed=True), cfg)[0]  # a set's own split comes first
    assert official == ([f"case_{c:02d}" for c in range(12)], [f"case_{c:02d}" for c in range(12, 16)])


def test_run_transfer_writes_its_tables_and_repeats_itself(tmp_path):
    torch.manual_seed(0)
    models = {name: MiniVGG(2, depth=2, width=4, input_pixels=16, feature_dim=8) for name in ("lm", "cifar")}
    cfg = BoostConfig(n_weak_learners=10, train_cases=10, test_cases=6, repeats=2, bootstrap=50)
    first = run_transfer(_lesions(), models, cfg, tmp_path / "a", threads=1, progress=lambda _: None)
    again = run_transfer(_lesions(), models, cfg, tmp_path / "b", threads=1, progress=lambda _: None)
    assert first == again
    for name in ("auc_vs_weak_learners.csv", "lm_vs_cifar.csv", "metrics.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    table = pd.read_csv(tmp_path / "a" / "auc_vs_weak_learners.csv")
    assert len(table) == 10 and table[["lm_auc", "cifar_auc"]].stack().between(0, 1).all()
    assert (table["lm_auc_lo"] <= table["lm_auc"]).all() and (table["lm_auc"] <= table["lm_auc_hi"]).all()
    tests = pd.read_csv(tmp_path / "a" / "lm_vs_cifar.csv")
    assert tests["weak_learners"].tolist() == experiment.tested_sizes(10)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["dataset"] == "synthetic" and metrics["test_cases"] == 6 and "seconds" not in metrics
    assert (tmp_path / "a" / "artifacts" / "auc_vs_weak_learners.png").stat().st_size > 10_000


def test_a_test_split_with_one_class_is_an_error(tmp_path):
    lesions = _lesions()
    lesions.index["label"] = 0
    model = MiniVGG(2, depth=2, width=4, input_pixels=16, feature_dim=8)
    with pytest.raises(ValueError, match="only one class"):
        run_transfer(lesions, {"lm": model}, BoostConfig(n_weak_learners=3, train_cases=10, test_cases=6, repeats=1, bootstrap=10),
                     tmp_path, threads=1, progress=lambda _: None)
