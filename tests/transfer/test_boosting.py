"""AdaBoost AUC curves, case splits and the paired case bootstrap, on tiny data."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lmtransfer.transfer.boosting import (
    BoostConfig, auc_by_size, bootstrap_interval, case_bootstrap, paired_difference, split_by_case, staged_scores, weighted_auc,
)


def test_weighted_auc_equals_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + y, 1)  # many ties
    assert weighted_auc(scores, y, np.ones((1, 300)))[0] == pytest.approx(roc_auc_score(y, scores))
    w = rng.integers(0, 3, 300).astype(float)
    assert weighted_auc(scores, y, w[None])[0] == pytest.approx(roc_auc_score(y, scores, sample_weight=w))


def test_split_by_case_is_disjoint_and_seeded():
    cases = [f"c{i}" for i in range(20)]
    train, test = split_by_case(cases, 12, 6, seed=1)
    assert len(train) == 12 and len(test) == 6 and not set(train) & set(test)
    assert split_by_case(cases, 12, 6, seed=1) == (train, test) != split_by_case(cases, 12, 6, seed=2)
    with pytest.raises(ValueError, match="20 cases"):
        split_by_case(cases, 15, 6, seed=0)


def test_staged_scores_give_every_ensemble_size_and_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=400) > 0).astype(int)
    cfg = BoostConfig(n_weak_learners=40)
    staged = staged_scores(x[:300], y[:300], x[300:], cfg, seed=0)
    assert staged.shape == (40, 100)
    auc = auc_by_size(staged, y[300:])
    assert auc[-1] > 0.9 and auc[-1] >= auc[0]
    with pytest.raises(ValueError, match="one class"):
        staged_scores(x[:10], np.zeros(10, int), x[:5], cfg, seed=0)


def test_case_bootstrap_resamples_whole_cases():
    cases = np.array(["a", "a", "b", "c", "c", "c"])
    w = case_bootstrap(cases, 50, np.random.default_rng(0))
    assert w.shape == (50, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()
    assert np.allclose(w[:, [0, 2, 3]].sum(axis=1), 3)  # three cases drawn per resample


def test_paired_difference_interval_and_minimal_detectable_difference():
    rng = np.random.default_rng(0)
    better = paired_difference(0.8 + 0.01 * rng.normal(size=(3, 500)), 0.7 + 0.01 * rng.normal(size=(3, 500)))
    assert better["delta_mean"] == pytest.approx(0.1, abs=0.01) and better["p_value"] < 0.01
    same = paired_difference(0.7 + 0.05 * rng.normal(size=(3, 500)), 0.7 + 0.05 * rng.normal(size=(3, 500)))
    assert same["p_value"] > 0.05
    # the mdd is (1.96 + 0.84) standard errors of the mean difference over 3 splits of sd 0.05 * sqrt(2)
    assert same["mdd"] == pytest.approx(2.80 * 0.05 * np.sqrt(2) / np.sqrt(3), rel=0.1)
    assert same["delta_lo"] < same["delta_mean"] < same["delta_hi"]
    lo, hi = bootstrap_interval(0.75 + 0.02 * rng.normal(size=(4, 2000)))
    assert lo == pytest.approx(0.75 - 1.96 * 0.01, abs=0.003) and hi == pytest.approx(0.75 + 1.96 * 0.01, abs=0.003)
