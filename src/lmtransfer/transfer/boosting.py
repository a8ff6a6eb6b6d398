"""AdaBoost on frozen CNN features: AUC at every ensemble size, repeated case splits, paired tests.

One AdaBoost fit with ``n`` decision stumps gives the ensembles of 1..n stumps at once
(``staged_decision_function``). Splits are by case. Uncertainty comes from resampling *cases*
(patches of one case are not independent): each resample draws the cases of the whole set once and
weighs every split's test patches by it, so overlapping test sets of repeated splits are resampled
together, and the paired test scores both feature sources on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.ensemble import AdaBoostClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.class_weight import compute_sample_weight

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
    feature_layers: str = "penultimate"   # penultimate: the network's feature layer (the research); multilayer: every
                                          # block's output pooled over the plane, and the feature layer
    balanced: bool = True          # class-balanced initial sample weights (each class half the weight); false: equal weights
    weighting_ablation: bool = True   # also fit the other weighting, for the report (the research used equal weights)
    folds: int = 3                 # >= 2: repeated k-fold cross-validation over all cases; 0: random splits of
    train_cases: int = 100         # the research's 100 training ...
    test_cases: int = 50           # ... and 50 test cases (random splits only)
    repeats: int = 2               # cross-validation repetitions (or random splits), each with its own seed
    few_label_cases: tuple[int, ...] = (10, 20, 40)   # training-set sizes (cases) of the few-label curves
    bootstrap: int = 1000          # case resamples for intervals and the paired tests
    alpha: float = 0.05
    power: float = 0.8             # the power at which the minimal detectable difference is stated
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds {self.folds}: use 0 (random splits) or at least 2 (cross-validation)")
        if any(n < 1 for n in self.few_label_cases):
            raise ValueError(f"few_label_cases {list(self.few_label_cases)}: training sizes are at least one case")
        if self.feature_layers not in ("penultimate", "multilayer"):
            raise ValueError(f"feature_layers {self.feature_layers!r}: use penultimate or multilayer")
        if not 0 < self.power < 1 or not 0 < self.alpha < 1:
            raise ValueError(f"alpha {self.alpha} and power {self.power} must lie strictly between 0 and 1")


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
    model.fit(x_train, y_train, sample_weight=compute_sample_weight("balanced", y_train) if cfg.balanced else None)
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


def case_draws(cases: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` case resamples as counts (n, unique cases): how often each case is drawn, and each
    patch's case (an index into the counts' columns)."""
    unique, inverse = np.unique(cases, return_inverse=True)
    draws = rng.integers(0, len(unique), size=(n, len(unique)))
    counts = np.zeros((n, len(unique)))
    np.add.at(counts, (np.repeat(np.arange(n), len(unique)), draws.ravel()), 1.0)
    return counts, inverse


def case_bootstrap(cases: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Patch weights (n, patches): how often each patch's case is drawn in each of ``n`` case resamples."""
    counts, inverse = case_draws(cases, n, rng)
    return counts[:, inverse]


def bootstrap_mean(boot: np.ndarray) -> np.ndarray:
    """The mean over splits of each case resample: ``boot`` (splits, B) -> (B,), resamples without a value dropped."""
    mean = np.nanmean(np.asarray(boot, float), axis=0) if np.isfinite(boot).any() else np.full(np.shape(boot)[1], np.nan)
    return mean[np.isfinite(mean)]


def bootstrap_interval(boot: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean over splits; ``boot``: (splits, B) on case resamples shared by the splits."""
    mean = bootstrap_mean(boot)
    if not len(mean):
        return float("nan"), float("nan")
    lo, hi = np.percentile(mean, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def paired_difference(boot_a: np.ndarray, boot_b: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> dict:
    """Paired bootstrap of AUC_a - AUC_b. ``boot_*``: (splits, B) AUCs on the same case resamples.

    The splits' differences are averaged per resample (a bootstrap of the mean over splits); the
    two-sided p-value is the share of resampled differences on the other side of zero. ``mdd``: the
    smallest true difference a two-sided test at ``alpha`` would find with probability ``power``,
    (z_{1-alpha/2} + z_power) x the bootstrap standard error (a normal approximation).
    """
    diff = bootstrap_mean(np.asarray(boot_a) - np.asarray(boot_b))
    b = len(diff)
    p = min(1.0, 2 * min((np.sum(diff <= 0) + 1) / (b + 1), (np.sum(diff >= 0) + 1) / (b + 1)))
    se = float(diff.std(ddof=1)) if b > 1 else float("nan")
    lo, hi = np.percentile(diff, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"delta_mean": float(diff.mean()), "delta_lo": float(lo), "delta_hi": float(hi), "p_value": float(p), "delta_se": se,
            "mdd": (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se}
