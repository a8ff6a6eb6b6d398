"""AdaBoost with 300 stumps on transfer-sized features (5,000 patches x 256 ReLU features, 15 % lesions):
scikit-learn's AdaBoostClassifier against lmtransfer's stump booster, its compiled search and its
NumPy array route (the booster before numba), one fit each, side by side, with the largest
difference between their staged decision functions."""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import AdaBoostClassifier
from sklearn.tree import DecisionTreeClassifier

from lmtransfer.transfer import stumps as stump_module
from lmtransfer.transfer.stumps import StumpBoost


def main(n: int = 5000, d: int = 256, stumps: int = 300) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n + 1000, d)).astype(np.float32)
    y = (rng.random(n + 1000) < 0.15).astype(int)
    x[y == 1, :8] += 0.4
    x = np.maximum(x, 0)
    train, test = slice(0, n), slice(n, None)
    start = time.perf_counter()
    reference = AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=stumps, random_state=0).fit(x[train], y[train])
    sklearn_s = time.perf_counter() - start
    StumpBoost(2, 1.0, 0).fit(x[:200], y[:200])   # numba compiles once per process: not part of a fit
    start = time.perf_counter()
    ours = StumpBoost(stumps, 1.0, 0).fit(x[train], y[train])
    ours_s = time.perf_counter() - start
    compiled, stump_module._best_positions = stump_module._best_positions, None
    try:
        start = time.perf_counter()
        arrays = StumpBoost(stumps, 1.0, 0).fit(x[train], y[train])
        arrays_s = time.perf_counter() - start
    finally:
        stump_module._best_positions = compiled
    assert arrays.stumps_ == ours.stumps_, "the compiled search chose other stumps than the array route"
    difference = np.abs(np.array(list(reference.staged_decision_function(x[test])))
                        - np.array(list(ours.staged_decision_function(x[test])))).max()
    print(f"AdaBoost, {stumps} stumps on {n} x {d} features: scikit-learn {sklearn_s:.1f} s/fit, stump booster {ours_s:.1f} s/fit "
          f"(ratio {sklearn_s / ours_s:.1f}x); its NumPy array route (before) {arrays_s:.1f} s/fit (compiled {arrays_s / ours_s:.1f}x, "
          f"same stumps); largest decision-function difference to scikit-learn {difference:.1e}")


if __name__ == "__main__":
    main()
