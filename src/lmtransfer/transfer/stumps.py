"""AdaBoost (SAMME) with decision stumps, written for speed: the same ensembles as scikit-learn's
``AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), algorithm="SAMME")``, several times faster.

scikit-learn re-sorts every feature at every boosting round; here the features are sorted once,
and each round finds the best stump of every feature at once from cumulative weight sums along
those orders (one vectorised pass over an n x d array). Everything that decides which stump wins
follows scikit-learn: features cast to float32, split positions only where the sorted values step
by more than 1e-7, the threshold half-way between the two values, the Gini proxy computed in the
same order of operations, ties between features broken by the tree's own random visiting order
(the xorshift generator and Fisher-Yates draw of ``sklearn/tree/_splitter.pyx``, seeded the way
AdaBoost seeds each tree), and the same weight update, early stops and staged decision function.
What can differ is the last bit of a sum over tied feature values, so two candidate stumps would
have to score within ~1e-16 of each other for the choice to differ; the tests compare decision
functions with scikit-learn's.

The search itself runs as one compiled pass per feature (numba: running sums and the Gini proxy
position by position, in the same order of IEEE operations as the NumPy expressions, so the same
bits) when numba is installed, and as NumPy array expressions otherwise; a test holds the two equal.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - the NumPy route gives the same stumps
    njit = None

FEATURE_THRESHOLD = 1e-7          # scikit-learn's (a float32 constant there): values closer than this are one value
RAND_R_MAX = 0x7FFFFFFF


def _rand_r(state: int) -> tuple[int, int]:
    """scikit-learn's ``our_rand_r``: (next state, draw in [0, RAND_R_MAX])."""
    state = state or 1
    state ^= (state << 13) & 0xFFFFFFFF
    state ^= state >> 17
    state ^= (state << 5) & 0xFFFFFFFF
    return state, state % (RAND_R_MAX + 1)


def visiting_order(n_features: int, constant: np.ndarray, tree_seed: int) -> list[int]:
    """The order in which scikit-learn's best splitter evaluates the non-constant features of the root."""
    state = int(np.random.RandomState(tree_seed).randint(0, RAND_R_MAX))
    features = list(range(n_features))
    f_i, n_found, visited, order = n_features, 0, 0, []
    while f_i > n_found and (visited < n_features or visited <= n_found):
        visited += 1
        state, draw = _rand_r(state)
        f_j = draw % (f_i - n_found) + n_found
        feature = features[f_j]
        if constant[feature]:
            features[f_j], features[n_found] = features[n_found], features[f_j]
            n_found += 1
            continue
        f_i -= 1
        features[f_i], features[f_j] = features[f_j], features[f_i]
        order.append(feature)
    return order


def _weighted_gini(weight: np.ndarray, zero: np.ndarray, one: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``weight * (1 - (zero^2 + one^2) / weight^2)`` in place (``zero`` and ``one`` are overwritten)."""
    np.multiply(zero, zero, out=zero)
    np.multiply(one, one, out=one)
    np.add(zero, one, out=out)
    np.multiply(weight, weight, out=zero)
    np.divide(out, zero, out=out)
    np.subtract(1.0, out, out=out)
    return np.multiply(weight, out, out=out)


class _SortedFeatures:
    """The features sorted once, and the best stump for any sample weights from cumulative sums along
    those orders. Arrays are (features, samples): the sums run along contiguous rows."""

    def __init__(self, x32: np.ndarray, y_index: np.ndarray):
        self.order = np.ascontiguousarray(np.argsort(x32, axis=0, kind="stable").T)
        values = np.take_along_axis(x32.T, self.order, axis=1)
        # the tree's tie rule runs in float32 (its FEATURE_THRESHOLD is a float32 constant): so must ours
        step = np.float32(FEATURE_THRESHOLD)
        self.valid = values[:, 1:] > values[:, :-1] + step      # a split between sorted samples p and p + 1
        self.constant = values[:, -1] <= values[:, 0] + step
        values = values.astype(np.float64)
        self.thresholds = values[:, :-1] / 2.0 + values[:, 1:] / 2.0
        self.invalid = ~self.valid
        self.one = (y_index == 1)[self.order].astype(np.float64)
        self.zero = 1.0 - self.one
        self.y_index = y_index
        shape = (self.order.shape[0], self.order.shape[1] - 1)
        self._buffers = [np.empty(shape) for _ in range(5)]
        self._sums = [np.empty(self.order.shape) for _ in range(4)]

    def best_stump(self, weight: np.ndarray, tree_seed: int, compiled: bool = True) -> tuple[int, float, int, int]:
        """(feature, threshold, class left, class right) of the stump scikit-learn's tree would pick
        (``compiled``: the numba pass where numba is installed; else the NumPy expressions)."""
        total_zero = np.cumsum(np.where(self.y_index == 0, weight, 0.0))[-1]   # sequential sums, as the tree adds them
        total_one = np.cumsum(np.where(self.y_index == 1, weight, 0.0))[-1]
        total = np.cumsum(weight)[-1]
        if compiled and _best_positions is not None:
            position, best, left_zero, left_one = _best_positions(self.order, self.valid, self.one, weight, total, total_zero, total_one)
            return self._choose(position, best, left_zero, left_one, total_zero, total_one, tree_seed)
        w, left, left_one, left_zero = self._sums
        np.take(weight, self.order, out=w)
        np.cumsum(w, axis=1, out=left)
        np.multiply(w, self.one, out=left_one)                   # times 0 or 1: exact, as adding only that class
        np.cumsum(left_one, axis=1, out=left_one)
        np.multiply(w, self.zero, out=left_zero)
        np.cumsum(left_zero, axis=1, out=left_zero)
        left, left_one, left_zero = left[:, :-1], left_one[:, :-1], left_zero[:, :-1]
        proxy, right, side, a, b = self._buffers
        np.subtract(total, left, out=right)
        with np.errstate(divide="ignore", invalid="ignore"):
            # the tree's Gini proxy, in its order of operations: -w_right * gini_right - w_left * gini_left
            _weighted_gini(right, np.subtract(total_zero, left_zero, out=a), np.subtract(total_one, left_one, out=b), out=proxy)
            np.negative(proxy, out=proxy)
            np.copyto(a, left_zero)
            np.copyto(b, left_one)
            np.subtract(proxy, _weighted_gini(left, a, b, out=side), out=proxy)
        proxy[self.invalid] = -np.inf
        position = np.argmax(proxy, axis=1)                      # the first best position of each feature
        rows = np.arange(len(position))
        return self._choose(position, proxy[rows, position], left_zero[rows, position], left_one[rows, position], total_zero, total_one,
                            tree_seed)

    def _choose(self, position, best, left_zero, left_one, total_zero, total_one, tree_seed) -> tuple[int, float, int, int]:
        """The feature the tree's visiting order picks from each feature's best position and score."""
        feature, score = -1, -np.inf
        for f in visiting_order(len(self.constant), self.constant, tree_seed):
            if best[f] > score:                                   # strictly better: the first visited wins a tie
                feature, score = f, best[f]
        if feature < 0:                                           # nothing to split: one leaf, the heavier class
            heavier = int(np.argmax([total_zero, total_one]))
            return 0, np.inf, heavier, heavier
        p = position[feature]
        lz, lo = left_zero[feature], left_one[feature]
        rz, ro = total_zero - lz, total_one - lo
        return int(feature), float(self.thresholds[feature, p]), int(np.argmax([lz, lo])), int(np.argmax([rz, ro]))


def _impurity(weight: float, zero: float, one: float) -> float:
    """A side's weight times its Gini impurity, ``weight * (1 - (zero^2 + one^2) / weight^2)``, in the
    order of operations of ``_weighted_gini``."""
    g = zero * zero + one * one
    g = g / (weight * weight)
    return weight * (1.0 - g)


# error_model="numpy": a division by zero gives inf or NaN as in the array expressions (numba's default
# raises ZeroDivisionError, as Python does)
if njit is not None:
    _impurity = njit(inline="always", error_model="numpy")(_impurity)


def _best_positions_py(order, valid, one, weight, total, total_zero, total_one):
    """Per feature: the first position of the highest Gini proxy (a NaN counts as highest, as in
    ``np.argmax``), that proxy, and the two class sums left of it. The arithmetic of
    ``_SortedFeatures.best_stump``'s array expressions, one position at a time."""
    n_features, n = order.shape
    position = np.zeros(n_features, dtype=np.int64)
    best = np.empty(n_features)
    best_zero = np.empty(n_features)
    best_one = np.empty(n_features)
    for f in range(n_features):
        left = 0.0
        left_one = 0.0
        left_zero = 0.0
        found = False
        for p in range(n - 1):
            w = weight[order[f, p]]
            left = left + w
            left_one = left_one + w * one[f, p]
            left_zero = left_zero + w * (1.0 - one[f, p])
            if valid[f, p]:
                right = total - left
                proxy = -_impurity(right, total_zero - left_zero, total_one - left_one)
                proxy = proxy - _impurity(left, left_zero, left_one)
            else:
                proxy = -np.inf
            if not found:
                if p == 0 or proxy > best[f] or proxy != proxy:
                    position[f], best[f], best_zero[f], best_one[f] = p, proxy, left_zero, left_one
                    found = proxy != proxy          # the first NaN is argmax's answer
        if n < 2:
            best[f], best_zero[f], best_one[f] = -np.inf, 0.0, 0.0
    return position, best, best_zero, best_one


_best_positions = njit(nogil=True, error_model="numpy")(_best_positions_py)  # compiled once per process (~1 s), nothing written to disk if njit is not None else None


class StumpBoost:
    """Binary AdaBoost with stumps; ``fit`` then ``staged_decision_function`` as in scikit-learn."""

    def __init__(self, n_estimators: int = 300, learning_rate: float = 1.0, random_state: int = 0):
        self.n_estimators, self.learning_rate, self.random_state = n_estimators, learning_rate, random_state

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> StumpBoost:
        """Boost on ``x`` (n, d) with labels ``y`` (n,); ``sample_weight`` (n,): initial weights (none: equal)."""
        x = np.asarray(x, dtype=np.float32)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) != 2:
            raise ValueError(f"StumpBoost is binary; got {len(self.classes_)} classes")
        n = len(x)
        search = _SortedFeatures(x, y_index)
        rng = np.random.RandomState(self.random_state)    # AdaBoost's: one seed drawn per tree
        if sample_weight is None:
            weight = np.full(n, 1.0 / n)
        else:
            weight = np.array(sample_weight, dtype=np.float64)
            if weight.shape != (n,) or not np.isfinite(weight).all() or (weight < 0).any() or weight.sum() <= 0:
                raise ValueError(f"sample_weight must be {n} finite non-negative numbers with a positive sum")
        weight /= weight.sum()
        epsilon = np.finfo(np.float64).eps
        self.stumps_: list[tuple[int, float, int, int]] = []    # feature, threshold, class left, class right
        self.estimator_weights_ = np.zeros(self.n_estimators)
        for round_ in range(self.n_estimators):
            weight = np.clip(weight, a_min=epsilon, a_max=None)    # scikit-learn keeps every weight above eps
            stump = search.best_stump(weight, int(rng.randint(np.iinfo(np.int32).max)))
            incorrect = self._predict_index(stump, x) != y_index
            error = np.mean(np.average(incorrect, weights=weight, axis=0))
            self.stumps_.append(stump)
            if error <= 0:                                    # a perfect stump ends boosting, with weight 1
                self.estimator_weights_[round_] = 1.0
                break
            if error >= 1.0 - 1.0 / 2:                        # no better than chance: dropped, boosting ends
                self.stumps_.pop()
                if not self.stumps_:
                    raise ValueError("the first stump is no better than chance; boosting cannot start")
                break
            alpha = self.learning_rate * (np.log((1.0 - error) / error) + np.log(2 - 1.0))
            self.estimator_weights_[round_] = alpha
            if round_ != self.n_estimators - 1:
                weight = np.exp(np.log(weight) + alpha * incorrect * (weight > 0))
            total = np.sum(weight)
            if not np.isfinite(total) or total <= 0:
                break
            if round_ < self.n_estimators - 1:
                weight /= total
        return self

    @staticmethod
    def _predict_index(stump, x32: np.ndarray) -> np.ndarray:
        feature, threshold, left, right = stump
        return np.where(x32[:, feature] <= threshold, left, right)

    def staged_decision_function(self, x: np.ndarray):
        """Decision scores of the ensembles of 1, 2, ... stumps (positive: the second class)."""
        x = np.asarray(x, dtype=np.float32)
        classes = np.arange(2)[:, np.newaxis]
        pred, norm = None, 0.0
        for weight, stump in zip(self.estimator_weights_, self.stumps_):
            norm += weight
            current = np.where((self._predict_index(stump, x) == classes).T, weight, -1 / (2 - 1) * weight)
            pred = current if pred is None else pred + current
            signed = np.copy(pred)
            signed[:, 0] *= -1
            yield (signed / norm).sum(axis=1)
