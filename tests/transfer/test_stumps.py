"""The stump booster builds scikit-learn's AdaBoost ensembles: decision functions equal to 1e-9."""

import numpy as np
import pytest
from sklearn.ensemble import AdaBoostClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.class_weight import compute_sample_weight

from lmtransfer.transfer.boosting import BoostConfig, auc_by_size, staged_scores
from lmtransfer.transfer.stumps import StumpBoost, visiting_order


def _sklearn(x, y, x_test, n, seed, sample_weight=None):
    model = AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=n, random_state=seed)
    model.fit(x, y, sample_weight=sample_weight)
    return model, np.array(list(model.staged_decision_function(x_test)))


def _ours(x, y, x_test, n, seed, sample_weight=None):
    model = StumpBoost(n, 1.0, seed).fit(x, y, sample_weight)
    return model, np.array(list(model.staged_decision_function(x_test)))


def _data(kind: str, seed: int, n: int = 800, d: int = 24):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 300, d)).astype(np.float32)
    y = (rng.random(n + 300) < 0.2).astype(int)
    x[y == 1, :4] += 0.5
    if kind == "relu":              # like CNN features after a ReLU: most values tie at zero
        x = np.maximum(x - 0.3, 0)
    elif kind == "duplicated":      # copies of columns and constant columns: exact ties between features
        x[:, 10:14] = x[:, 0:4]
        x[:, 20:] = 1.5
    elif kind == "coarse":          # few distinct values: ties inside every feature
        x = np.round(x * 2) / 2
    return x[:n], y[:n], x[n:]


@pytest.mark.parametrize("kind", ["continuous", "relu", "duplicated", "coarse"])
@pytest.mark.parametrize("seed", [0, 7])
def test_the_staged_decision_functions_equal_scikit_learns(kind, seed):
    x, y, x_test = _data(kind, seed)
    reference, expected = _sklearn(x, y, x_test, 60, seed)
    model, got = _ours(x, y, x_test, 60, seed)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-9
    assert [s[0] for s in model.stumps_] == [int(e.tree_.feature[0]) for e in reference.estimators_]
    assert np.allclose(model.estimator_weights_, reference.estimator_weights_, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["continuous", "relu", "coarse"])
def test_class_balanced_initial_weights_give_scikit_learns_ensembles(kind):
    x, y, x_test = _data(kind, 3)
    balanced = compute_sample_weight("balanced", y)
    reference, expected = _sklearn(x, y, x_test, 60, 5, balanced)
    model, got = _ours(x, y, x_test, 60, 5, balanced)
    assert np.abs(got - expected).max() < 1e-9
    # the balanced start changes the ensemble: the test would pass for a booster that ignored the weights otherwise
    _, unweighted = _ours(x, y, x_test, 60, 5)
    assert np.abs(unweighted - got).max() > 1e-3


def test_bad_sample_weights_are_refused():
    x, y, _ = _data("continuous", 0, n=50)
    for bad in (np.ones(49), np.full(50, np.nan), -np.ones(50), np.zeros(50)):
        with pytest.raises(ValueError, match="sample_weight"):
            StumpBoost(5).fit(x, y, bad)


def test_a_perfect_stump_ends_boosting_as_in_scikit_learn():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = (x[:, 2] > 0.1).astype(int)
    _, expected = _sklearn(x, y, x, 50, 3)
    model, got = _ours(x, y, x, 50, 3)
    assert len(model.stumps_) == len(expected) == 1 and np.abs(got - expected).max() < 1e-12


def test_the_visiting_order_is_a_permutation_of_the_varying_features():
    constant = np.zeros(30, bool)
    constant[[3, 17]] = True
    order = visiting_order(30, constant, tree_seed=12345)
    assert sorted(order) == [f for f in range(30) if f not in (3, 17)]
    assert order != sorted(order)


def test_staged_scores_give_the_same_aucs_with_either_booster():
    x, y, x_test = _data("relu", 3, n=600)
    y_test = (np.random.default_rng(4).random(len(x_test)) < 0.3).astype(int)
    ours = staged_scores(x, y, x_test, BoostConfig(n_weak_learners=80, booster="stumps"), seed=5)
    theirs = staged_scores(x, y, x_test, BoostConfig(n_weak_learners=80, booster="sklearn"), seed=5)
    assert np.abs(ours - theirs).max() < 1e-9
    assert np.array_equal(auc_by_size(ours, y_test), auc_by_size(theirs, y_test))


def test_an_unknown_booster_is_refused():
    x, y, x_test = _data("continuous", 0, n=100)
    with pytest.raises(ValueError, match="booster"):
        staged_scores(x, y, x_test, BoostConfig(n_weak_learners=5, booster="xgboost"), seed=0)


def test_values_1e7_apart_are_one_value_in_float32_as_in_scikit_learn():
    # 0.03547847 and 0.03547857 differ by 1.006e-7 in float64, but not by more than scikit-learn's float32
    # FEATURE_THRESHOLD in float32 arithmetic: the tree treats them as one value and cannot split between them
    low, high = np.float32(0.03547847), np.float32(0.03547857)
    rng = np.random.default_rng(2)
    values = np.r_[np.full(40, low), np.full(40, high), rng.uniform(0.04, 0.05, 40).astype(np.float32)]
    y = np.r_[np.zeros(40, int), np.ones(80, int)]
    x = np.c_[values, rng.normal(size=(120, 3)).astype(np.float32)]
    x_test = np.c_[np.r_[np.full(5, low), np.full(5, high)], rng.normal(size=(10, 3))].astype(np.float32)
    reference, expected = _sklearn(x, y, x_test, 5, 0)
    model, got = _ours(x, y, x_test, 5, 0)
    assert np.abs(got - expected).max() < 1e-9
    assert model.stumps_[0][1] != (float(low) + float(high)) / 2   # no split between the two


@pytest.mark.parametrize("kind", ["continuous", "relu", "duplicated", "coarse"])
def test_the_compiled_search_gives_the_bits_of_the_array_expressions(kind, monkeypatch):
    """The numba pass (running sums and Gini proxy position by position) against the NumPy array
    expressions it replaces: the same stumps, weights and decision functions to the last bit."""
    from lmtransfer.transfer import stumps

    assert stumps._best_positions is not None, "numba is a dependency: the compiled search must be there"
    x, y, x_test = _data(kind, 11)
    balanced = compute_sample_weight("balanced", y)
    compiled, got = _ours(x, y, x_test, 80, 3, balanced)
    monkeypatch.setattr(stumps, "_best_positions", None)
    arrays, expected = _ours(x, y, x_test, 80, 3, balanced)
    assert compiled.stumps_ == arrays.stumps_
    assert np.array_equal(compiled.estimator_weights_, arrays.estimator_weights_)
    assert np.array_equal(got, expected)


def test_samples_of_zero_weight_divide_by_zero_as_numpy_does():
    """A side that holds only samples of zero weight makes the Gini proxy 0/0 (AdaBoost's weights
    underflow to 0 on long runs; the transfer stage met it): NaN as in NumPy and scikit-learn, not
    Python's ZeroDivisionError from the compiled search."""
    from lmtransfer.transfer import stumps

    x, y, x_test = _data("continuous", 5)
    weight = compute_sample_weight("balanced", y)
    weight[np.argsort(x[:, 0])[:50]] = 0.0          # the lowest values of a feature weigh nothing
    search = stumps._SortedFeatures(x, y)
    assert search.best_stump(weight, 3) == search.best_stump(weight, 3, compiled=False)
    _, expected = _sklearn(x, y, x_test, 40, 1, weight)
    _, got = _ours(x, y, x_test, 40, 1, weight)
    assert np.abs(got - expected).max() < 1e-9
