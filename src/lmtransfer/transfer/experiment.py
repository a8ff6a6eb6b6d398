"""The transfer experiment: frozen features of each source -> AdaBoost -> AUC vs weak learners.

The design: repeated k-fold cross-validation over the lesion set's cases (or its official split
and random splits of the same sizes), every feature source fitted on every split; on each split's
training cases also nested few-label subsets, and the other sample weighting as an ablation. One
case resample of the whole set weighs every split's test patches, so intervals and paired tests
take the overlap of repeated splits into account.

Outputs (``out_dir``): ``auc_vs_weak_learners.csv`` (every ensemble size, each source's mean AUC
over splits, 95 % interval at the tested sizes), ``lm_vs_cifar.csv`` (paired test and minimal
detectable difference at the tested sizes), ``few_label.csv`` (AUC against training cases),
``difficulty.csv`` (AUC per lesion kind and per look-alike kind), ``summary.md`` (the table and
plain sentences), ``metrics.json``, and in ``artifacts/`` the
research's figure 3 redrawn, the few-label figure, ROC curves, every paired test, the weighting
ablation, per-split AUC tables and the splits.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from lmtransfer.parallel import process_pool
from lmtransfer.transfer.boosting import (
    BoostConfig, auc_by_size, bootstrap_interval, case_draws, paired_difference, split_by_case, staged_scores, weighted_auc,
)
from lmtransfer.tracking import Tracker, git_commit, tracked_run
from lmtransfer.transfer.features import extract_features, source_patches
from lmtransfer.transfer.lesions import LesionSet
from lmtransfer.transfer.report import (
    plot_auc_curves, plot_few_label, plot_roc, sceptic_verdict, size_key, summary_sizes, write_summary,
)

EXPERIMENT = "transfer-auc"
FULL = 0     # the training-size key of a split's whole training set


def tested_sizes(n: int) -> list[int]:
    """Ensemble sizes where intervals and the paired tests are computed (a log-spaced grid plus ``n``)."""
    grid = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000]
    return sorted({s for s in grid if s <= n} | {n})


@dataclass(frozen=True)
class Split:
    """One training / test partition of the cases; ``name``: r<repeat>f<fold>, r<repeat> or official."""

    name: str
    train: list[str]
    test: list[str]


def lesion_cases(lesions: LesionSet) -> set[str]:
    """The cases with at least one lesion patch."""
    return set(lesions.index.loc[lesions.index["label"] == 1, "case"])


def shuffled_strata(cases: list[str], with_lesions: set[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """``cases`` with and without lesions, each stratum shuffled by ``rng`` (the first stratum first)."""
    strata = ([c for c in cases if c in with_lesions], [c for c in cases if c not in with_lesions])
    return tuple([stratum[i] for i in rng.permutation(len(stratum))] for stratum in strata)


def case_splits(lesions: LesionSet, cfg: BoostConfig) -> list[Split]:
    """The splits of the design. A set with an official split (MedMNIST) uses it first, then random
    splits of the same sizes (``repeats`` in all); otherwise ``folds`` >= 2 gives ``repeats`` k-fold
    partitions of every case (each case tested once per repeat), ``folds`` 0 random splits of
    ``train_cases`` / ``test_cases``."""
    fixed = lesions.index.drop_duplicates("case").set_index("case")["fixed_split"]
    cases = sorted(lesions.cases)
    if (fixed != "").all():
        # the set's validation cases train too: the transfer experiment has no model selection to make
        train, test = sorted(fixed.index[fixed.isin(["train", "val"])]), sorted(fixed.index[fixed == "test"])
        splits = [Split("official", train, test)]
        while len(splits) < cfg.repeats:
            r = len(splits)
            splits.append(Split(f"r{r}", *split_by_case(cases, len(train), len(test), cfg.seed + r)))
        return splits
    if cfg.folds == 0:
        return [Split(f"r{r}", *split_by_case(cases, cfg.train_cases, cfg.test_cases, cfg.seed + r)) for r in range(cfg.repeats)]
    if cfg.folds > len(cases):
        raise ValueError(f"{cfg.folds}-fold cross-validation needs at least {cfg.folds} cases, the data has {len(cases)}")
    with_lesions = lesion_cases(lesions)
    splits = []
    for r in range(cfg.repeats):
        # stratified: the cases with lesions dealt out first, then the others, so each fold holds its share of both
        order = [c for stratum in shuffled_strata(cases, with_lesions, np.random.default_rng([cfg.seed, r])) for c in stratum]
        for f in range(cfg.folds):
            test = sorted(order[f :: cfg.folds])
            splits.append(Split(f"r{r}f{f}", sorted(set(cases) - set(test)), test))
    return splits


def repeat_splits(lesions: LesionSet, cfg: BoostConfig) -> list[tuple[list[str], list[str]]]:
    """(training cases, test cases) of every split of the design, in order."""
    return [(s.train, s.test) for s in case_splits(lesions, cfg)]


def few_label_subsets(train: list[str], lesion_cases: set[str], sizes: tuple[int, ...], seed: int) -> dict[int, list[str]]:
    """Nested training subsets of ``sizes`` cases (those smaller than ``train``), stratified: each holds
    cases with and without lesions in the training set's proportion, at least one of each (where every
    case has a lesion, a plain random subset)."""
    with_lesion, without = shuffled_strata(train, lesion_cases, np.random.default_rng(seed))
    subsets = {}
    for n in sorted(set(sizes)):
        if n >= len(train) or not with_lesion or (without and n < 2):
            continue
        if not without:           # every training case has a lesion (each still has normal patches)
            subsets[n] = sorted(with_lesion[:n])
            continue
        k = min(max(1, round(n * len(with_lesion) / len(train))), n - 1, len(with_lesion))
        subsets[n] = sorted(with_lesion[:k] + without[: n - k])
    return subsets


@dataclass(frozen=True)
class Fit:
    """One AdaBoost fit of the design: a split, a feature source, a training size (cases; ``FULL``: the
    split's whole training set) and the sample weighting."""

    split: int
    source: str
    train_cases: int
    balanced: bool


@dataclass
class Scored:
    """A fit's test AUC at every ensemble size, and at ``sizes`` on every case resample."""

    curve: np.ndarray      # (n,)
    sizes: list[int]
    boot: np.ndarray       # (len(sizes), B)
    seconds: float


@dataclass(frozen=True)
class Scoring:
    """How one fit is scored: its test patches' labels, the case resamples as draw counts (B, cases) and
    each test patch's case (an index into them), and the ensemble sizes that are resampled. Small
    enough to send to a worker with the fit (the (B, patches) weights are not)."""

    labels: np.ndarray
    draws: np.ndarray
    case_of: np.ndarray
    sizes: list[int]

    def score(self, staged: np.ndarray, seconds: float) -> Scored:
        weights = self.draws[:, self.case_of]
        return Scored(auc_by_size(staged, self.labels), self.sizes,
                      np.stack([weighted_auc(staged[s - 1], self.labels, weights) for s in self.sizes]), seconds)


def scorings(jobs: dict, labels: np.ndarray, draws: np.ndarray, case_of: np.ndarray, n: int, main: bool) -> dict[Fit, Scoring]:
    """How each fit is scored: resampled AUCs at the tested sizes for the main fits (the full training
    set, the main weighting), at the summary sizes for the others."""
    out = {}
    for fit, (_, test) in jobs.items():
        is_main = fit.train_cases == FULL and fit.balanced == main
        out[fit] = Scoring(labels[test], draws, case_of[test], tested_sizes(n) if is_main else summary_sizes(n))
    return out


def _fit_and_score(x_train, y_train, x_test, cfg: BoostConfig, seed: int, scoring: Scoring) -> tuple[np.ndarray, Scored]:
    start = time.perf_counter()
    staged = staged_scores(x_train, y_train, x_test, cfg, seed)
    return staged, scoring.score(staged, time.perf_counter() - start)


def run_fits(features: dict, labels: np.ndarray, jobs: dict, scorings: dict, cfg: BoostConfig, workers: int) -> dict:
    """Every fit of ``jobs`` {Fit: (train mask, test mask)}, scored in the process that fitted it:
    {Fit: (staged test scores (n, test patches), :class:`Scored`)}; ``scorings`` {Fit: Scoring}.

    The fits are independent and seeded by their split, so they run in ``workers`` processes
    (spawned: torch's thread pools do not survive a fork) and give the same results in any order.
    """
    args = {fit: (features[fit.source][train], labels[train], features[fit.source][test], replace(cfg, balanced=fit.balanced),
                  cfg.seed + fit.split, scorings[fit]) for fit, (train, test) in jobs.items()}
    if workers <= 1 or len(args) == 1:
        return {fit: _fit_and_score(*a) for fit, a in args.items()}
    # the largest fits first, so the pool does not end on one long fit
    order = sorted(args, key=lambda fit: -int(jobs[fit][0].sum()))
    with process_pool(min(workers, len(args)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {fit: pool.submit(_fit_and_score, *args[fit]) for fit in order}
        return {fit: futures[fit].result() for fit in args}


def fit_design(lesions: LesionSet, splits: list[Split], sources: list[str], cfg: BoostConfig) -> dict[Fit, tuple[np.ndarray, np.ndarray]]:
    """Every fit of the design with its (training, test) patch masks: all training patches of the
    training cases (augmented copies included), the original patches of the test cases."""
    index = lesions.index
    case, label = index["case"].to_numpy(), index["label"].to_numpy()
    clean = (index["variant"] == 0).to_numpy()
    with_lesions = lesion_cases(lesions)
    jobs = {}
    for i, split in enumerate(splits):
        test = np.isin(case, split.test) & clean
        if len(np.unique(label[test])) < 2:
            raise ValueError(f"split {split.name}: the test cases hold only one class; use more test cases")
        train_sets = {FULL: split.train, **few_label_subsets(split.train, with_lesions, cfg.few_label_cases, cfg.seed + i)}
        for source in sources:
            for n, train_cases in train_sets.items():
                jobs[Fit(i, source, n, cfg.balanced)] = (np.isin(case, train_cases), test)
            if cfg.weighting_ablation and i < ablation_splits(cfg):
                jobs[Fit(i, source, FULL, not cfg.balanced)] = (np.isin(case, split.train), test)
    return jobs


def ablation_splits(cfg: BoostConfig) -> int:
    """The weighting ablation runs on the first cross-validation repeat (its folds) or the first split:
    enough to see the effect, at a third of the cost of every split."""
    return cfg.folds if cfg.folds >= 2 else 1


def aggregate(scored: dict[Fit, Scored], fits: list[Fit]) -> tuple[np.ndarray, dict[int, tuple[float, float, float]], dict[int, np.ndarray]]:
    """Over the splits of ``fits``: the mean AUC at every size, (mean, lo, hi) at the resampled sizes,
    and the resampled AUCs (splits, B) at those sizes."""
    curve = np.mean([scored[f].curve for f in fits], axis=0)
    sizes = scored[fits[0]].sizes
    boot = {s: np.stack([scored[f].boot[k] for f in fits]) for k, s in enumerate(sizes)}
    return curve, {s: (float(curve[s - 1]), *bootstrap_interval(boot[s])) for s in sizes}, boot


def run_transfer(lesions: LesionSet, models: dict, cfg: BoostConfig, out_dir: Path, threads: int = 2, tracker: Tracker | None = None,
                 tags: dict | None = None, roc_sizes: tuple[int, ...] = (5, 50), progress=print, device="cpu") -> dict:
    """Run the whole comparison for the feature extractors ``models`` (name -> network or hand-crafted
    source); record it with ``tracker`` (none: nothing recorded)."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    features = {}
    for name, model in models.items():
        t = time.perf_counter()
        features[name] = extract_features(model, source_patches(lesions, name), threads=threads, device=device, layers=cfg.feature_layers)
        progress(f"features {name}: {features[name].shape[1]} per patch, {len(lesions.x)} patches ({time.perf_counter() - t:.1f} s)")
    names, n = list(models), cfg.n_weak_learners
    index = lesions.index
    labels = index["label"].to_numpy()
    splits = case_splits(lesions, cfg)
    jobs = fit_design(lesions, splits, names, cfg)
    progress(f"{len(jobs)} AdaBoost fits: {len(splits)} splits x {len(names)} sources"
             + (f", few-label sizes {list(cfg.few_label_cases)}" if cfg.few_label_cases else "")
             + (f", and the other sample weighting on {ablation_splits(cfg)} split(s)" if cfg.weighting_ablation else ""))
    draws, case_of = case_draws(index["case"].to_numpy(), cfg.bootstrap, np.random.default_rng([cfg.seed, 7]))
    results = run_fits(features, labels, jobs, scorings(jobs, labels, draws, case_of, n, cfg.balanced), cfg, threads)
    fits = {fit: staged for fit, (staged, _) in results.items()}
    scored = {fit: score for fit, (_, score) in results.items()}
    main = {name: [Fit(i, name, FULL, cfg.balanced) for i in range(len(splits))] for name in names}
    for fit in (f for fits_ in main.values() for f in fits_):
        progress(f"{splits[fit.split].name} {fit.source}: AUC {scored[fit].curve[min(4, n - 1)]:.3f} (5 stumps) "
                 f"{scored[fit].curve[-1]:.3f} ({n} stumps), fit {scored[fit].seconds:.1f} s")

    table = pd.DataFrame({"weak_learners": np.arange(1, n + 1)})
    boots, points = {}, {}
    for name in names:
        curve, points[name], boots[name] = aggregate(scored, main[name])
        table[f"{name}_auc"] = curve
        # the interval is resampled at the tested sizes only: the other rows leave it empty
        table[f"{name}_auc_lo"] = table["weak_learners"].map(lambda s, p=points[name]: p[s][1] if s in p else np.nan)
        table[f"{name}_auc_hi"] = table["weak_learners"].map(lambda s, p=points[name]: p[s][2] if s in p else np.nan)
    paired = paired_tests(boots, points, names, cfg)
    few = few_label_table(scored, splits, names, cfg) if cfg.few_label_cases else pd.DataFrame()
    weighting = weighting_table(scored, splits, names, cfg) if cfg.weighting_ablation else pd.DataFrame()
    lm_vs_cifar = (paired[paired["comparison"] == "lm-cifar"].drop(columns="comparison").rename(columns={"other_auc": "cifar_auc"})
                   if len(paired) else pd.DataFrame())
    split_rows = []
    for split, fit in zip(splits, main[names[0]]):
        train, test = jobs[fit]
        split_rows.append({"split": split.name, "train_cases": len(split.train), "test_cases": len(split.test),
                           "train_patches": int(train.sum()), "train_lesion_patches": int(labels[train].sum()),
                           "test_patches": int(test.sum()), "test_lesion_patches": int(labels[test].sum())})
    per_split = pd.concat([pd.DataFrame({"source": f.source, "split": splits[f.split].name, "weak_learners": np.arange(1, n + 1),
                                         "auc": scored[f].curve}) for name in names for f in main[name]])
    roc_rows = []
    for name in names:
        staged, test = fits[main[name][0]], jobs[main[name][0]][1]
        for size in (s for s in roc_sizes if s <= n):
            fpr, tpr, _ = roc_curve(labels[test], staged[size - 1])
            roc_rows += [{"source": name, "weak_learners": size, "fpr": a, "tpr": b} for a, b in zip(fpr, tpr)]

    difficulty = difficulty_table(fits, jobs, main, index, n)
    design = describe_design(cfg, splits, lesions)
    table.to_csv(out_dir / "auc_vs_weak_learners.csv", index=False, float_format="%.5f")
    lm_vs_cifar.to_csv(out_dir / "lm_vs_cifar.csv", index=False, float_format="%.5f")
    few.to_csv(out_dir / "few_label.csv", index=False, float_format="%.5f")
    paired.to_csv(out_dir / "artifacts" / "paired_tests.csv", index=False, float_format="%.5f")
    weighting.to_csv(out_dir / "artifacts" / "weighting.csv", index=False, float_format="%.5f")
    difficulty.to_csv(out_dir / "difficulty.csv", index=False, float_format="%.5f")
    per_split.to_csv(out_dir / "artifacts" / "auc_per_split.csv", index=False, float_format="%.5f")
    pd.DataFrame(split_rows).to_csv(out_dir / "artifacts" / "splits.csv", index=False)
    pd.DataFrame(roc_rows).to_csv(out_dir / "artifacts" / "roc.csv", index=False, float_format="%.5f")
    title = f"{lesions.info.get('source', 'lesions')}: {design}"
    figure = plot_auc_curves(table, lm_vs_cifar, names, cfg.alpha, out_dir / "artifacts" / "auc_vs_weak_learners.png", title)
    if len(few):
        plot_few_label(few, names, out_dir / "artifacts" / "few_label.png", title)
    plot_roc(pd.DataFrame(roc_rows), out_dir / "artifacts" / "roc_curves.png")
    metrics = summary_metrics(points, paired, few, weighting, names, cfg, split_rows, lesions, design)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_summary(out_dir / "summary.md", metrics, points, paired, few, weighting, names, cfg, difficulty)
    seconds = time.perf_counter() - start  # for the tracker and the console, not the DVC outputs
    if tracker is not None and tracker.enabled:
        record_run(tracker, {name: [scored[f].curve for f in main[name]] for name in names}, {**metrics, "seconds": seconds}, cfg,
                   out_dir, lesions, splits, split_rows, tags or {})
    progress(f"figure: {figure} ({seconds:.0f} s)")
    return metrics


SIZE_BINS_MM = (3.0, 5.0, 7.0, 10.0, 20.0)   # edges of the lesion size bins of the difficulty report


def size_bins(size_mm: np.ndarray) -> np.ndarray:
    """Lesion diameters -> bin names ("<3 mm", "3-5 mm", ..., ">=20 mm"); "" where the size is unknown."""
    size_mm = np.asarray(size_mm, float)
    names = [f"<{SIZE_BINS_MM[0]:g} mm"] + [f"{a:g}-{b:g} mm" for a, b in zip(SIZE_BINS_MM[:-1], SIZE_BINS_MM[1:])] + [f">={SIZE_BINS_MM[-1]:g} mm"]
    out = np.array(names, dtype=object)[np.searchsorted(SIZE_BINS_MM, np.nan_to_num(size_mm, nan=0.0), side="right")]
    out[~np.isfinite(size_mm)] = ""
    return out


def difficulty_table(fits: dict, jobs: dict, main: dict, index: pd.DataFrame, n: int) -> pd.DataFrame:
    """How hard each kind of patch is: per source, the AUC of every lesion kind and every lesion size
    bin against all normal patches, and of all lesions against each normal (look-alike) kind, at 10
    and all weak learners, mean over splits."""
    labels, kinds = index["label"].to_numpy(), index["kind"].astype(str).to_numpy()
    bins = size_bins(index["size_mm"].to_numpy(float) if "size_mm" in index else np.full(len(index), np.nan))
    groupings = [("lesion", 1, kinds), ("lesion size", 1, bins), ("look-alike", 0, kinds)]
    rows = []
    for name, split_fits in main.items():
        for side, label, groups in groupings:
            present = sorted(set(groups[(labels == label) & (groups != "")]))
            if side == "lesion size":
                present = [b for b in size_bins(np.r_[0.0, SIZE_BINS_MM]) if b in present]
            for kind in present:
                for size in sorted({min(10, n), n}):
                    aucs, counts = [], []
                    for fit in split_fits:
                        test = jobs[fit][1]
                        y, k = labels[test], groups[test]
                        keep = (k == kind) | (y != label)            # this group against the whole other class
                        if len(np.unique(y[keep])) == 2:
                            aucs.append(float(weighted_auc(fits[fit][size - 1][keep], y[keep], np.ones((1, int(keep.sum()))))[0]))
                            counts.append(int(((k == kind) & keep).sum()))
                    if aucs:
                        rows.append({"source": name, "side": side, "kind": kind, "weak_learners": size,
                                     "test_patches_per_split": float(np.mean(counts)), "auc": float(np.mean(aucs))})
    return pd.DataFrame(rows)


def describe_design(cfg: BoostConfig, splits: list[Split], lesions: LesionSet) -> str:
    """The design in words, for titles and the summary."""
    sizes = f"{len(splits[0].train)} training / {len(splits[0].test)} test cases"
    if splits[0].name == "official":
        return f"the set's own split ({sizes}) and {len(splits) - 1} random splits of its sizes"
    if cfg.folds >= 2:
        return f"{cfg.folds}-fold cross-validation x {cfg.repeats} ({sizes} per split, {len(lesions.cases)} cases)"
    return f"{len(splits)} random splits ({sizes})"


def paired_tests(boots: dict, points: dict, names: list[str], cfg: BoostConfig) -> pd.DataFrame:
    """LM minus every other source at the tested sizes: difference, interval, p-value, minimal detectable difference."""
    rows = []
    if "lm" in names:
        for other in (n for n in names if n != "lm"):
            for size in boots["lm"]:
                rows.append({"comparison": f"lm-{other}", "weak_learners": size, "lm_auc": points["lm"][size][0],
                             "other_auc": points[other][size][0],
                             **paired_difference(boots["lm"][size], boots[other][size], cfg.alpha, cfg.power)})
    paired = pd.DataFrame(rows)
    if len(paired):
        paired["significant"] = paired["p_value"] < cfg.alpha
    return paired


def _few_label_sizes(scored: dict, name: str, n_splits: int, balanced: bool) -> list[int]:
    """The few-label training sizes that every split has."""
    sizes = {f.train_cases for f in scored if f.train_cases != FULL}
    return sorted(s for s in sizes if all(Fit(i, name, s, balanced) in scored for i in range(n_splits)))


def few_label_table(scored: dict, splits: list[Split], names: list[str], cfg: BoostConfig) -> pd.DataFrame:
    """AUC (mean over splits, interval) against training cases, at few (10) and all weak learners."""
    n = cfg.n_weak_learners
    rows = []
    for name in names:
        for cases in _few_label_sizes(scored, name, len(splits), cfg.balanced) + [FULL]:
            fits = [Fit(i, name, cases, cfg.balanced) for i in range(len(splits))]
            _, point, _ = aggregate(scored, fits)
            for size in sorted({min(10, n), n}):
                rows.append({"source": name, "train_cases": cases or len(splits[0].train), "weak_learners": size,
                             "auc": point[size][0], "auc_lo": point[size][1], "auc_hi": point[size][2]})
    return pd.DataFrame(rows)


def weighting_table(scored: dict, splits: list[Split], names: list[str], cfg: BoostConfig) -> pd.DataFrame:
    """Each source with class-balanced and with equal initial sample weights on the ablation's splits, at the summary sizes."""
    rows = []
    for name in names:
        for balanced in (True, False):
            # the same splits for both weightings (the ablation's)
            _, point, _ = aggregate(scored, [Fit(i, name, FULL, balanced) for i in range(min(len(splits), ablation_splits(cfg)))])
            rows += [{"source": name, "weighting": "balanced" if balanced else "equal", "weak_learners": size,
                      "auc": p[0], "auc_lo": p[1], "auc_hi": p[2]} for size, p in point.items() if size in summary_sizes(cfg.n_weak_learners)]
    return pd.DataFrame(rows)


def summary_metrics(points: dict, paired: pd.DataFrame, few: pd.DataFrame, weighting: pd.DataFrame, names: list[str], cfg: BoostConfig,
                    split_rows: list[dict], lesions: LesionSet, design: str) -> dict:
    """metrics.json: the design, every source's AUC at 1/5/10/50/all with intervals, the paired tests,
    the few-label and weighting figures, and the sentences of the summary."""
    n = cfg.n_weak_learners
    metrics: dict = {"dataset": lesions.info.get("source", "?"), "weak_learners_max": n, "design": design, "splits": len(split_rows),
                     "train_cases": split_rows[0]["train_cases"], "test_cases": split_rows[0]["test_cases"],
                     "test_lesion_patches": split_rows[0]["test_lesion_patches"], "test_patches": split_rows[0]["test_patches"],
                     "balanced": cfg.balanced}
    for size in sorted({s for s in (1, 5, 10, 50, n) if s <= n}):
        key = size_key(size, n)
        for name in names:
            mean, lo, hi = points[name][size]
            metrics[f"{name}_auc_at_{key}"] = round(mean, 4)
            metrics[f"{name}_auc_at_{key}_ci"] = [round(lo, 4), round(hi, 4)]
        for _, t in paired[paired["weak_learners"] == size].iterrows() if len(paired) else ():
            other = t["comparison"].split("-", 1)[1]
            metrics[f"lm_minus_{other}_at_{key}"] = round(float(t["delta_mean"]), 4)
            metrics[f"lm_vs_{other}_p_at_{key}"] = round(float(t["p_value"]), 4)
            if other == "cifar":
                metrics[f"lm_minus_cifar_at_{key}_ci"] = [round(float(t["delta_lo"]), 4), round(float(t["delta_hi"]), 4)]
                metrics[f"lm_vs_cifar_mdd_at_{key}"] = round(float(t["mdd"]), 4)
    if len(paired) and "cifar" in names:
        lm_cifar = paired[paired["comparison"] == "lm-cifar"]
        metrics["lm_vs_cifar_significant_sizes"] = [int(s) for s in lm_cifar.loc[lm_cifar["significant"], "weak_learners"]]
    for _, row in few.iterrows() if len(few) else ():
        if row["train_cases"] != split_rows[0]["train_cases"]:
            metrics[f"{row['source']}_auc_{int(row['train_cases'])}cases_at_{size_key(int(row['weak_learners']), n)}"] = round(float(row["auc"]), 4)
    other = "equal" if cfg.balanced else "balanced"
    for _, row in weighting[weighting["weighting"] == other].iterrows() if len(weighting) else ():
        if int(row["weak_learners"]) in (min(10, n), n):
            metrics[f"{row['source']}_auc_{other}_weights_at_{size_key(int(row['weak_learners']), n)}"] = round(float(row["auc"]), 4)
    metrics.update(sceptic_verdict({name: points[name][min(10, n)][0] for name in names}, min(10, n)))
    metrics.update(verdicts(paired, cfg, len(lesions.cases), min(10, n)))
    return metrics


POWER_TARGET = 0.03   # the half-width of the LM - CIFAR interval at 10 weak learners that the design aims for


def verdicts(paired: pd.DataFrame, cfg: BoostConfig, n_cases: int, size: int) -> dict:
    """The plain sentences: did landmark pre-training help, and could this run have seen it."""
    if not len(paired) or "lm-cifar" not in set(paired["comparison"]):
        return {}
    t = paired[(paired["comparison"] == "lm-cifar") & (paired["weak_learners"] == size)].iloc[0]
    d, lo, hi, p, mdd = (float(t[k]) for k in ("delta_mean", "delta_lo", "delta_hi", "p_value", "mdd"))
    figure = f"LM - CIFAR {d:+.3f} [{lo:+.3f}, {hi:+.3f}] AUC at {size} weak learners, p = {p:.3f}"
    if p < cfg.alpha:
        verdict = (f"landmark pre-training helped here, by {d:.3f} AUC ({figure})" if d > 0 else
                   f"landmark pre-training did not help here: its features were worse than the CIFAR-CNN's by {-d:.3f} AUC ({figure})")
    else:
        verdict = f"landmark pre-training made no detectable difference here ({figure}; a true difference of {mdd:.3f} would be found with {cfg.power:.0%} power)"
    half = (hi - lo) / 2
    needed = int(np.ceil(n_cases * (half / POWER_TARGET) ** 2))
    power = (f"the 95 % interval of LM - CIFAR at {size} weak learners is +-{half:.3f} (target +-{POWER_TARGET}: "
             + ("met" if half <= POWER_TARGET else f"not met; the interval narrows as one over the root of the cases, so about "
                f"{needed} cases instead of {n_cases} would meet it") + f"); minimal detectable difference at {cfg.power:.0%} power: {mdd:.3f}")
    return {f"lm_vs_cifar_halfwidth_at_{size}": round(half, 4), "power_target_met": bool(half <= POWER_TARGET), "verdict": verdict,
            "power_statement": power}


def record_run(tracker: Tracker, curves: dict, metrics: dict, cfg: BoostConfig, out_dir: Path, lesions: LesionSet, splits: list[Split],
               split_rows: list, tags: dict) -> None:
    """Experiment ``transfer-auc``: a parent run with the figures and tables, and one nested run per
    feature source and split with ``auc`` logged at step = number of weak learners."""
    common = {"git_commit": git_commit(), "dataset": lesions.info.get("source", "?"), **{k: str(v) for k, v in tags.items()}}
    with tracked_run(tracker, EXPERIMENT, f"transfer {common['dataset']}", tags={**common, "seed": cfg.seed}) as parent:
        tracker.log_params(parent, {f"boost.{k}": v for k, v in asdict(cfg).items()})
        tracker.log_metrics(parent, {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracker.log_artifacts(parent, out_dir / "artifacts", artifact_path="reports")
        for name in ("auc_vs_weak_learners.csv", "lm_vs_cifar.csv", "few_label.csv", "difficulty.csv", "summary.md", "metrics.json"):
            tracker.log_artifact(parent, out_dir / name, artifact_path="reports")
        for name, split_curves in curves.items():
            for i, curve in enumerate(split_curves):
                child_tags = {**common, "source": name, "split": splits[i].name, "seed": cfg.seed + i}
                with tracked_run(tracker, EXPERIMENT, f"{name} split {splits[i].name}", parent=parent, tags=child_tags) as child:
                    tracker.log_params(child, {"source": name, "split": splits[i].name, "boost_seed": cfg.seed + i,
                                               "n_weak_learners": cfg.n_weak_learners, "algorithm": cfg.algorithm,
                                               **{f"split.{k}": v for k, v in split_rows[i].items() if k != "split"}})
                    tracker.log_curve(child, "auc", curve)


def model_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
