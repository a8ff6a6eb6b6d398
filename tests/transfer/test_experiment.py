"""The transfer experiment on a synthetic lesion set: splits by case, outputs, and the same numbers twice."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.transfer.boosting import BoostConfig
from lmtransfer.transfer import experiment
from lmtransfer.transfer.boosting import bootstrap_interval, case_bootstrap, weighted_auc
from lmtransfer.transfer.experiment import case_splits, few_label_subsets, repeat_splits, run_transfer
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


def test_random_splits_are_by_case_disjoint_and_seeded():
    cfg = BoostConfig(folds=0, train_cases=10, test_cases=4, repeats=3)
    splits = repeat_splits(_lesions(), cfg)
    assert len(splits) == 3 and splits == repeat_splits(_lesions(), cfg)
    for train, test in splits:
        assert len(train) == 10 and len(test) == 4 and not set(train) & set(test)
    assert splits[0] != splits[1]
    official = repeat_splits(_lesions(fixed=True), cfg)[0]  # a set's own split comes first
    assert official == ([f"case_{c:02d}" for c in range(12)], [f"case_{c:02d}" for c in range(12, 16)])


def test_cross_validation_tests_every_case_once_per_repeat_and_is_stratified():
    lesions = _lesions(n_cases=30)
    lesions.index.loc[lesions.index["case"].isin([f"case_{c:02d}" for c in range(20, 30)]), "label"] = 0  # 10 cases without lesions
    splits = case_splits(lesions, BoostConfig(folds=3, repeats=2))
    assert [s.name for s in splits] == ["r0f0", "r0f1", "r0f2", "r1f0", "r1f1", "r1f2"]
    for r in range(2):
        tested = [c for s in splits[3 * r : 3 * r + 3] for c in s.test]
        assert sorted(tested) == sorted(lesions.cases)                     # a partition: every case once
        for s in splits[3 * r : 3 * r + 3]:
            assert not set(s.train) & set(s.test) and len(s.train) + len(s.test) == 30
            assert sum(c >= "case_20" for c in s.test) in (3, 4)          # a third of the lesion-free cases each
    assert splits[0].test != splits[3].test                               # repeats differ
    assert case_splits(lesions, BoostConfig(folds=3, repeats=2)) == splits
    with pytest.raises(ValueError, match="folds"):
        BoostConfig(folds=1)


def test_few_label_subsets_are_nested_stratified_and_smaller_than_the_training_set():
    train = [f"c{i:02d}" for i in range(40)]
    lesion_cases = set(train[:30])
    subsets = few_label_subsets(train, lesion_cases, (4, 10, 20, 40, 80), seed=3)
    assert sorted(subsets) == [4, 10, 20]
    assert set(subsets[4]) <= set(subsets[10]) <= set(subsets[20])
    for n, cases in subsets.items():
        assert len(cases) == n and 0 < len(set(cases) - lesion_cases) < n
    assert sum(c in lesion_cases for c in subsets[20]) == 15
    every = few_label_subsets(train, set(train), (4, 10), seed=3)           # every case has a lesion: plain nested subsets
    assert [len(c) for c in every.values()] == [4, 10] and set(every[4]) <= set(every[10])
    assert few_label_subsets(train, set(), (4,), seed=3) == {}              # no lesion to learn from: no subset


def test_run_transfer_writes_its_tables_and_repeats_itself(tmp_path):
    torch.manual_seed(0)
    models = {name: MiniVGG(2, depth=2, width=4, input_pixels=16, feature_dim=8) for name in ("lm", "cifar")}
    lesions = _lesions(n_cases=18)
    lesions.index.loc[lesions.index["case"].isin(["case_15", "case_16", "case_17"]), "label"] = 0
    cfg = BoostConfig(n_weak_learners=10, folds=3, repeats=2, few_label_cases=(4,), bootstrap=50)
    first = run_transfer(lesions, models, cfg, tmp_path / "a", threads=1, progress=lambda _: None)
    again = run_transfer(lesions, models, cfg, tmp_path / "b", threads=1, progress=lambda _: None)
    assert first == again
    for name in ("auc_vs_weak_learners.csv", "lm_vs_cifar.csv", "few_label.csv", "summary.md", "metrics.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    table = pd.read_csv(tmp_path / "a" / "auc_vs_weak_learners.csv")
    assert len(table) == 10 and table[["lm_auc", "cifar_auc"]].stack().between(0, 1).all()
    banded = table.dropna(subset=["lm_auc_lo"])
    assert banded["weak_learners"].tolist() == experiment.tested_sizes(10)
    assert (banded["lm_auc_lo"] <= banded["lm_auc"] + 1e-9).all() and (banded["lm_auc"] <= banded["lm_auc_hi"] + 1e-9).all()
    tests = pd.read_csv(tmp_path / "a" / "lm_vs_cifar.csv")
    assert tests["weak_learners"].tolist() == experiment.tested_sizes(10)
    assert (tests["mdd"] > 0).all() and {"cifar_auc", "delta_lo", "p_value"} <= set(tests.columns)
    few = pd.read_csv(tmp_path / "a" / "few_label.csv")
    assert sorted(few["train_cases"].unique()) == [4, 12] and set(few["weak_learners"]) == {10}
    weighting = pd.read_csv(tmp_path / "a" / "artifacts" / "weighting.csv")
    assert set(weighting["weighting"]) == {"balanced", "equal"}
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["dataset"] == "synthetic" and metrics["test_cases"] == 6 and metrics["splits"] == 6 and "seconds" not in metrics
    assert "lm_auc_4cases_at_all" in metrics and "lm_auc_equal_weights_at_all" in metrics
    assert metrics["verdict"].startswith("landmark pre-training") and "minimal detectable difference" in metrics["power_statement"]
    difficulty = pd.read_csv(tmp_path / "a" / "difficulty.csv")
    assert set(difficulty["side"]) == {"lesion", "look-alike"} and set(difficulty["kind"]) == {"lesion", "vessel"}
    assert difficulty["auc"].between(0, 1).all()
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "| lm |" in summary and "| cifar |" in summary and "Few labels" in summary and "Initial sample weights" in summary and "Difficulty" in summary
    for name in ("auc_vs_weak_learners.png", "few_label.png"):
        assert (tmp_path / "a" / "artifacts" / name).stat().st_size > 10_000


def test_the_shared_case_resample_is_wider_than_independent_ones():
    """Repeated splits test overlapping cases: resampling each split's test cases on its own treats
    them as new data and narrows the interval; one resample of the whole set does not."""
    rng = np.random.default_rng(0)
    cases = np.repeat(np.arange(40), 10)
    y = (np.arange(400) % 10 == 0).astype(int)
    case_effect = rng.normal(0, 1.0, 40)[cases]        # the cases themselves are easy or hard
    splits = [rng.permutation(40)[:20] for _ in range(6)]
    shared = case_bootstrap(cases, 400, np.random.default_rng(1))
    boot_shared, boot_own = [], []
    for k, test_cases in enumerate(splits):
        test = np.isin(cases, test_cases)
        scores = y[test] * 1.0 + case_effect[test] + rng.normal(0, 0.1, test.sum())
        boot_shared.append(weighted_auc(scores, y[test], shared[:, test]))
        boot_own.append(weighted_auc(scores, y[test], case_bootstrap(cases[test], 400, np.random.default_rng(10 + k))))
    lo, hi = bootstrap_interval(np.array(boot_shared))
    lo_own, hi_own = bootstrap_interval(np.array(boot_own))
    assert hi - lo > 1.3 * (hi_own - lo_own)


def test_a_test_split_with_one_class_is_an_error(tmp_path):
    lesions = _lesions()
    lesions.index["label"] = 0
    model = MiniVGG(2, depth=2, width=4, input_pixels=16, feature_dim=8)
    with pytest.raises(ValueError, match="only one class"):
        run_transfer(lesions, {"lm": model}, BoostConfig(n_weak_learners=3, folds=0, train_cases=10, test_cases=6, repeats=1, bootstrap=10),
                     tmp_path, threads=1, progress=lambda _: None)


def test_the_difficulty_table_finds_the_look_alike_that_resembles_the_lesion(tmp_path):
    lesions = _lesions(n_cases=18, per_case=8)
    rng = np.random.default_rng(3)
    hard = (lesions.index["label"] == 0).to_numpy() & (rng.random(len(lesions.index)) < 0.3)
    lesions.index.loc[hard, "kind"] = "mimic"
    lesions.x[hard, :, 6:10, 6:10] += 1.2                    # a bright centre, as the lesions have
    torch.manual_seed(0)
    models = {"lm": MiniVGG(2, depth=2, width=4, input_pixels=16, feature_dim=8)}
    cfg = BoostConfig(n_weak_learners=10, folds=3, repeats=1, few_label_cases=(), weighting_ablation=False, bootstrap=20)
    run_transfer(lesions, models, cfg, tmp_path, threads=1, progress=lambda _: None)
    table = pd.read_csv(tmp_path / "difficulty.csv").query("side == 'look-alike' and weak_learners == 10").set_index("kind")
    assert table.loc["mimic", "auc"] < table.loc["vessel", "auc"] - 0.1


def test_size_bins_name_each_diameter_and_leave_unknown_sizes_out():
    bins = experiment.size_bins(np.array([2.0, 3.0, 4.9, 7.0, 12.0, 25.0, np.nan]))
    assert bins.tolist() == ["<3 mm", "3-5 mm", "3-5 mm", "7-10 mm", "10-20 mm", ">=20 mm", ""]


def test_the_difficulty_table_has_a_row_per_lesion_size_bin_and_small_lesions_come_out_harder(tmp_path):
    lesions = _lesions(n_cases=18, per_case=8)
    lesion = (lesions.index["label"] == 1).to_numpy()
    small = lesion & (np.arange(len(lesion)) % 16 == 0)      # every other case's lesion is small and faint
    lesions.index["size_mm"] = np.where(lesion, np.where(small, 2.5, 8.0), np.nan)
    lesions.x[small, :, 6:10, 6:10] -= 1.2
    torch.manual_seed(0)
    models = {"lm": MiniVGG(2, depth=2, width=4, input_pixels=16, feature_dim=8)}
    cfg = BoostConfig(n_weak_learners=10, folds=3, repeats=1, few_label_cases=(), weighting_ablation=False, bootstrap=20)
    run_transfer(lesions, models, cfg, tmp_path, threads=1, progress=lambda _: None)
    table = pd.read_csv(tmp_path / "difficulty.csv").query("side == 'lesion size' and weak_learners == 10").set_index("kind")
    assert list(table.index) == ["<3 mm", "7-10 mm"]
    assert table.loc["<3 mm", "auc"] < table.loc["7-10 mm", "auc"] - 0.1
    assert "| lesion size | <3 mm |" in (tmp_path / "summary.md").read_text()
