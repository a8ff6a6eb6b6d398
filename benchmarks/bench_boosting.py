"""AdaBoost with 300 stumps on transfer-sized features (5,000 patches x 256 ReLU features, 15 % lesions):
scikit-learn's AdaBoostClassifier against lmtransfer's stump booster, one fit each, side by side,
with the largest difference between their staged decision functions."""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import AdaBoostClassifier
from sklearn.tree import DecisionTreeClassifier

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
    start = time.perf_counter()
    ours = StumpBoost(stumps, 1.0, 0).fit(x[train], y[train])
    ours_s = time.perf_counter() - start
    difference = np.abs(np.array(list(reference.staged_decision_function(x[test])))
                        - np.array(list(ours.staged_decision_function(x[test])))).max()
    print(f"AdaBoost, {stumps} stumps on {n} x {d} features: scikit-learn {sklearn_s:.1f} s/fit, stump booster {ours_s:.1f} s/fit "
          f"(ratio {sklearn_s / ours_s:.1f}x); largest decision-function difference {difference:.1e}")


if __name__ == "__main__":
    main()
