"""AdaBoost on frozen CNN features: AUC at every ensemble size, repeated case splits, paired tests.

One AdaBoost fit with ``n`` decision stumps gives the ensembles of 1..n stumps at once
(``staged_decision_function``). Splits are by case. Uncertainty comes from resampling test
*cases* (patches of one case are not independent): the paired bootstrap draws the same cases for
both feature sources, so their AUC difference is tested on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.ensemble import AdaBoostClassifier
from sklearn.tree import DecisionTreeClassifier

from lmtransfer.transfer.stumps import StumpBoost


@dataclass(frozen=True)
class BoostConfig:
    """``transfer`` in ``params.yaml`` (the AdaBoost and evaluation part)."""

    n_weak_learners: int = 300
    learning_rate: float = 1.0
    algorithm: str = "SAMME"       # the only one in scikit-learn >= 1.6 (SAMME.R was removed)
    stump_depth: int = 1           # decision stumps
    booster: str = "stumps"        # stumps: lmtransfer.transfer.stumps (depth 1 only, scikit-learn's ensembles, faster);
                                   # sklearn: AdaBoostClassifier itself
    train_cases: int = 100         # the research: 100 training cases ...
    test_cases: int = 50           # ... and 50 test cases
    repeats: int = 5               # different case splits (and seeds)
    bootstrap: int = 1000          # case resamples for intervals and the paired test
    alpha: float = 0.05
    seed: int = 0


def split_by_case(cases: list[str], n_train: int, n_test: int, seed: int) -> tuple[list[str], list[str]]:
    """Disjoint random training and test cases (``n_train + n_test`` must not exceed the cases)."""
    cases = sorted(cases)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"need at least one training and one test case, got {n_train} / {n_test}")
    if n_train + n_test > len(cases):
        raise ValueError(f"{n_train} training + {n_test} test cases asked, the data has {len(cases)} cases")
    order = np.random.default_rng(seed).permutation(len(cases))
    return sorted(cases[i] for i in order[:n_train]), sorted(cases[i] for i in order[n_train : n_train + n_test])


def staged_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, cfg: BoostConfig, seed: int) -> np.ndarray:
    """Decision scores ``(n_sizes, n_test)`` of the ensembles of 1..n stumps (fewer if boosting stops early)."""
    if len(np.unique(y_train)) < 2:
        raise ValueError("the training cases hold only one class: AdaBoost needs lesion and normal patches")
    if cfg.algorithm != "SAMME":
        raise ValueError(f"algorithm {cfg.algorithm!r} is not available in scikit-learn >= 1.6; use SAMME")
    if cfg.booster not in ("stumps", "sklearn"):
        raise ValueError(f"transfer.booster {cfg.booster!r}: use stumps or sklearn")
    if cfg.booster == "stumps" and cfg.stump_depth == 1:
        model = StumpBoost(cfg.n_weak_learners, cfg.learning_rate, seed)
    else:
        model = AdaBoostClassifier(DecisionTreeClassifier(max_depth=cfg.stump_depth), n_estimators=cfg.n_weak_learners,
                                   learning_rate=cfg.learning_rate, random_state=seed)
    model.fit(x_train, y_train)
    scores = np.array(list(model.staged_decision_function(x_test)), dtype=np.float64)
    if len(scores) < cfg.n_weak_learners:  # a perfect stump ends boosting: later ensembles equal the last one
        scores = np.concatenate([scores, np.repeat(scores[-1:], cfg.n_weak_learners - len(scores), axis=0)])
    return scores


def weighted_auc(scores: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of ``scores`` (n,) for labels ``y`` with patch weights ``weights`` (B, n): (B,). Ties count half."""
    weights = np.atleast_2d(weights).astype(np.float64)
    order = np.argsort(scores, kind="mergesort")
    s, yy, w = scores[order], y[order].astype(bool), weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(w * yy, starts, axis=1)
    neg = np.add.reduceat(w * ~yy, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)


def auc_by_size(staged: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUC of every ensemble size: (n_sizes,)."""
    ones = np.ones((1, len(y)))
    return np.array([weighted_auc(s, y, ones)[0] for s in staged])


def case_bootstrap(cases: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Patch weights (n, patches): how often each patch's case is drawn in each of ``n`` case resamples."""
    unique, inverse = np.unique(cases, return_inverse=True)
    draws = rng.integers(0, len(unique), size=(n, len(unique)))
    counts = np.zeros((n, len(unique)))
    np.add.at(counts, (np.repeat(np.arange(n), len(unique)), draws.ravel()), 1.0)
    return counts[:, inverse]


def t_interval(values: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and ``level`` t-interval over ``axis`` (the repeats); zero width for one repeat."""
    values = np.asarray(values, float)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def paired_difference(boot_a: np.ndarray, boot_b: np.ndarray) -> dict:
    """Paired bootstrap of AUC_a - AUC_b. ``boot_*``: (repeats, B) AUCs on the same case resamples.

    The repeats' differences are averaged per resample (a bootstrap of the mean over splits);
    the two-sided p-value is the share of resampled differences on the other side of zero.
    """
    diff = np.nanmean(np.asarray(boot_a) - np.asarray(boot_b), axis=0)
    diff = diff[np.isfinite(diff)]
    b = len(diff)
    p = min(1.0, 2 * min((np.sum(diff <= 0) + 1) / (b + 1), (np.sum(diff >= 0) + 1) / (b + 1)))
    return {"delta_mean": float(diff.mean()), "delta_lo": float(np.percentile(diff, 2.5)), "delta_hi": float(np.percentile(diff, 97.5)),
            "p_value": float(p)}
