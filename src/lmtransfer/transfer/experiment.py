"""The transfer experiment: frozen features of each source -> AdaBoost -> AUC vs weak learners.

Outputs (``out_dir``): ``auc_vs_weak_learners.csv`` (every ensemble size, each source's mean AUC
and 95 % interval over the repeated case splits), ``lm_vs_cifar.csv`` (paired bootstrap over test
cases at the tested sizes), ``metrics.json``, and in ``artifacts/`` the research's figure 3
redrawn, ROC curves, and per-repeat AUC tables.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from lmtransfer.figures import subplots
from lmtransfer.parallel import process_pool
from lmtransfer.transfer.boosting import (
    BoostConfig, auc_by_size, case_bootstrap, paired_difference, split_by_case, staged_scores, t_interval, weighted_auc,
)
from lmtransfer.tracking import Tracker, git_commit, tracked_run
from lmtransfer.transfer.features import extract_features
from lmtransfer.transfer.lesions import LesionSet

EXPERIMENT = "transfer-auc"
LABELS = {"lm": "LM-CNN (landmarks)", "cifar": "CIFAR-CNN (natural images)", "random": "random CNN (no pre-training)",
          "handcrafted": "hand-crafted features (no network)"}
COLOURS = {"lm": "tab:red", "cifar": "tab:blue", "random": "tab:gray", "handcrafted": "tab:green"}


def tested_sizes(n: int) -> list[int]:
    """Ensemble sizes where intervals and the paired test are computed (a log-spaced grid plus ``n``)."""
    grid = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000]
    return sorted({s for s in grid if s <= n} | {n})


def repeat_splits(lesions: LesionSet, cfg: BoostConfig) -> list[tuple[list[str], list[str]]]:
    """Case splits, one per repeat. A set with an official split (MedMNIST) uses it first, then
    random splits of the same sizes; other sets draw ``train_cases`` / ``test_cases`` at random."""
    index = lesions.index
    fixed = index.drop_duplicates("case").set_index("case")["fixed_split"]
    splits = []
    if (fixed != "").all():
        train = sorted(fixed.index[fixed == "train"])
        test = sorted(fixed.index[fixed == "test"])
        splits.append((train, test))
        n_train, n_test = len(train), len(test)
    else:
        n_train, n_test = cfg.train_cases, cfg.test_cases
    while len(splits) < cfg.repeats:
        splits.append(split_by_case(lesions.cases, n_train, n_test, cfg.seed + len(splits)))
    return splits


def _timed_fit(x_train, y_train, x_test, cfg: BoostConfig, seed: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    return staged_scores(x_train, y_train, x_test, cfg, seed), time.perf_counter() - start


def staged_fits(features: dict, labels: np.ndarray, masks: list, cfg: BoostConfig, workers: int) -> dict:
    """Staged test scores and fit seconds of every (repeat, source): ``{(r, name): (scores, seconds)}``.

    The fits are independent and seeded by their repeat, so they run in ``workers`` processes
    (spawned: torch's thread pools do not survive a fork) and give the same scores in any order.
    """
    jobs = {(r, name): (x[train], labels[train], x[test], cfg, cfg.seed + r)
            for r, (train, test) in enumerate(masks) for name, x in features.items()}
    if workers <= 1 or len(jobs) == 1:
        return {key: _timed_fit(*job) for key, job in jobs.items()}
    with process_pool(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(_timed_fit, *job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def run_transfer(lesions: LesionSet, models: dict, cfg: BoostConfig, out_dir: Path, threads: int = 2, tracker: Tracker | None = None,
                 tags: dict | None = None, roc_sizes: tuple[int, ...] = (5, 50), progress=print, device="cpu") -> dict:
    """Run the whole comparison for the feature extractors ``models`` (name -> MiniVGG); record it
    with ``tracker`` (none: nothing recorded)."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    features = {}
    for name, model in models.items():
        t = time.perf_counter()
        features[name] = extract_features(model, lesions.x, threads=threads, device=device)
        progress(f"features {name}: {features[name].shape[1]} per patch, {len(lesions.x)} patches ({time.perf_counter() - t:.1f} s)")
    index = lesions.index
    splits = repeat_splits(lesions, cfg)
    sizes = tested_sizes(cfg.n_weak_learners)
    n = cfg.n_weak_learners
    auc = {name: np.zeros((cfg.repeats, n)) for name in models}
    boot = {name: np.zeros((cfg.repeats, len(sizes), cfg.bootstrap)) for name in models}
    roc_rows, split_rows = [], []
    masks = []
    for r, (train_cases, test_cases) in enumerate(splits):
        train = index["case"].isin(train_cases).to_numpy()
        test = (index["case"].isin(test_cases) & (index["variant"] == 0)).to_numpy()
        if len(np.unique(index["label"].to_numpy()[test])) < 2:
            raise ValueError(f"repeat {r}: the test cases hold only one class; use more test cases")
        masks.append((train, test))
    fits = staged_fits(features, index["label"].to_numpy(), masks, cfg, threads)
    for r, (train_cases, test_cases) in enumerate(splits):
        train, test = masks[r]
        y_train, y_test = index["label"].to_numpy()[train], index["label"].to_numpy()[test]
        weights = case_bootstrap(index["case"].to_numpy()[test], cfg.bootstrap, np.random.default_rng([cfg.seed, r]))
        split_rows.append({"repeat": r, "train_cases": len(train_cases), "test_cases": len(test_cases),
                           "train_patches": int(train.sum()), "train_lesion_patches": int(y_train.sum()),
                           "test_patches": int(test.sum()), "test_lesion_patches": int(y_test.sum())})
        for name in models:
            staged, fit_seconds = fits[r, name]
            auc[name][r] = auc_by_size(staged, y_test)
            for k, size in enumerate(sizes):
                boot[name][r, k] = weighted_auc(staged[size - 1], y_test, weights)
            if r == 0:
                for size in roc_sizes:
                    if size <= n:
                        fpr, tpr, _ = roc_curve(y_test, staged[size - 1])
                        roc_rows += [{"source": name, "weak_learners": size, "fpr": a, "tpr": b} for a, b in zip(fpr, tpr)]
            progress(f"repeat {r + 1}/{cfg.repeats} {name}: AUC {auc[name][r][min(4, n - 1)]:.3f} (5 stumps) "
                     f"{auc[name][r][-1]:.3f} ({n} stumps), fit {fit_seconds:.1f} s")

    table = pd.DataFrame({"weak_learners": np.arange(1, n + 1)})
    for name in models:
        mean, lo, hi = t_interval(auc[name])
        # an AUC lies in [0, 1]; with few repeats the t-interval can reach past it
        table[f"{name}_auc"], table[f"{name}_auc_lo"], table[f"{name}_auc_hi"] = mean, np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    tests = []
    if "lm" in models and "cifar" in models:
        for k, size in enumerate(sizes):
            tests.append({"weak_learners": size, "lm_auc": float(auc["lm"][:, size - 1].mean()),
                          "cifar_auc": float(auc["cifar"][:, size - 1].mean()), **paired_difference(boot["lm"][:, k], boot["cifar"][:, k])})
    tests = pd.DataFrame(tests)
    if len(tests):
        tests["significant"] = tests["p_value"] < cfg.alpha
    per_repeat = pd.concat([pd.DataFrame({"source": name, "repeat": r, "weak_learners": np.arange(1, n + 1), "auc": auc[name][r]})
                            for name in models for r in range(cfg.repeats)])

    table.to_csv(out_dir / "auc_vs_weak_learners.csv", index=False, float_format="%.5f")
    tests.to_csv(out_dir / "lm_vs_cifar.csv", index=False, float_format="%.5f")
    per_repeat.to_csv(out_dir / "artifacts" / "auc_per_repeat.csv", index=False, float_format="%.5f")
    pd.DataFrame(split_rows).to_csv(out_dir / "artifacts" / "splits.csv", index=False)
    pd.DataFrame(roc_rows).to_csv(out_dir / "artifacts" / "roc.csv", index=False, float_format="%.5f")
    figure = plot_auc_curves(table, tests, list(models), cfg, out_dir / "artifacts" / "auc_vs_weak_learners.png",
                             f"{lesions.info.get('source', 'lesions')}: {split_rows[0]['train_cases']} training / "
                             f"{split_rows[0]['test_cases']} test cases, {cfg.repeats} splits")
    plot_roc(pd.DataFrame(roc_rows), out_dir / "artifacts" / "roc_curves.png")
    metrics = summary_metrics(table, tests, list(models), n, split_rows, lesions)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    seconds = time.perf_counter() - start  # for the tracker and the console, not the DVC outputs
    if tracker is not None and tracker.enabled:
        record_run(tracker, auc, {**metrics, "seconds": seconds}, cfg, out_dir, lesions, split_rows, tags or {})
    progress(f"figure: {figure} ({seconds:.0f} s)")
    return metrics


def summary_metrics(table, tests, names, n, split_rows, lesions) -> dict:
    metrics: dict = {"dataset": lesions.info.get("source", "?"), "weak_learners_max": n,
                     "train_cases": split_rows[0]["train_cases"], "test_cases": split_rows[0]["test_cases"],
                     "test_lesion_patches": split_rows[0]["test_lesion_patches"], "test_patches": split_rows[0]["test_patches"]}
    for size in sorted({s for s in (1, 5, 10, 50, n) if s <= n}):
        row = table.iloc[size - 1]
        key = "all" if size == n else str(size)
        for name in names:
            metrics[f"{name}_auc_at_{key}"] = round(float(row[f"{name}_auc"]), 4)
            metrics[f"{name}_auc_at_{key}_ci"] = [round(float(row[f"{name}_auc_lo"]), 4), round(float(row[f"{name}_auc_hi"]), 4)]
        if len(tests) and size in set(tests["weak_learners"]):
            t = tests[tests["weak_learners"] == size].iloc[0]
            metrics[f"lm_minus_cifar_at_{key}"] = round(float(t["delta_mean"]), 4)
            metrics[f"lm_vs_cifar_p_at_{key}"] = round(float(t["p_value"]), 4)
    if len(tests):
        metrics["lm_vs_cifar_significant_sizes"] = [int(s) for s in tests.loc[tests["significant"], "weak_learners"]]
    metrics.update(sceptic_verdict(table, names, min(10, n)))
    return metrics


SCEPTIC_MARGIN = 0.02   # hand-crafted features this close to the best CNN: the task does not tell features apart


def sceptic_verdict(table: pd.DataFrame, names: list[str], size: int) -> dict:
    """The hand-crafted baseline against the best CNN source at ``size`` weak learners, in numbers and one sentence."""
    networks = [n for n in names if n != "handcrafted"]
    if "handcrafted" not in names or not networks:
        return {}
    row = table.iloc[size - 1]
    best = max(networks, key=lambda n: row[f"{n}_auc"])
    gap = float(row["handcrafted_auc"] - row[f"{best}_auc"])
    easy = gap >= -SCEPTIC_MARGIN
    sentence = (f"hand-crafted features reach {row['handcrafted_auc']:.3f} AUC at {size} weak learners against "
                f"{row[f'{best}_auc']:.3f} for the best CNN ({best}): "
                + ("the task is too easy to tell pre-trainings apart" if easy else
                   f"the CNN features carry more than generic filters (by {-gap:.3f})"))
    return {f"handcrafted_minus_best_cnn_at_{size}": round(gap, 4), "task_too_easy": easy, "sceptic_verdict": sentence}


def plot_auc_curves(table: pd.DataFrame, tests: pd.DataFrame, names: list[str], cfg: BoostConfig, path: Path, title: str) -> Path:
    """The research's figure 3: AUC against the number of weak learners, one curve per feature source."""
    fig, ax = subplots(figsize=(8, 5))
    x = table["weak_learners"]
    for name in names:
        ax.plot(x, table[f"{name}_auc"], color=COLOURS.get(name), label=LABELS.get(name, name), lw=1.8)
        ax.fill_between(x, table[f"{name}_auc_lo"], table[f"{name}_auc_hi"], color=COLOURS.get(name), alpha=0.18, lw=0)
    if len(tests):
        significant = tests[tests["significant"]]
        top = float(np.nanmax([table[f"{n}_auc_hi"].max() for n in names]))
        ax.scatter(significant["weak_learners"], np.full(len(significant), min(top + 0.02, 1.0)), marker="*", color="k", s=60,
                   label=f"LM vs CIFAR differ (paired case bootstrap, p < {cfg.alpha})")
    ax.set_xscale("log")
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), 1.04)
    ax.set_xlabel("number of weak learners (decision stumps)")
    ax.set_ylabel("ROC AUC on test cases")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_roc(roc: pd.DataFrame, path: Path) -> Path:
    sizes = sorted(roc["weak_learners"].unique()) if len(roc) else []
    fig, axes = subplots(1, max(len(sizes), 1), figsize=(5 * max(len(sizes), 1), 4.6), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for name, part in roc[roc["weak_learners"] == size].groupby("source"):
            ax.plot(part["fpr"], part["tpr"], color=COLOURS.get(name), label=LABELS.get(name, name))
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"{size} weak learners (first split)")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def record_run(tracker: Tracker, auc: dict, metrics: dict, cfg: BoostConfig, out_dir: Path, lesions: LesionSet, split_rows: list,
               tags: dict) -> None:
    """Experiment ``transfer-auc``: a parent run with the figure and tables, and one nested run per
    feature source and repeat with ``auc`` logged at step = number of weak learners."""
    common = {"git_commit": git_commit(), "dataset": lesions.info.get("source", "?"), **{k: str(v) for k, v in tags.items()}}
    with tracked_run(tracker, EXPERIMENT, f"transfer {common['dataset']}", tags={**common, "seed": cfg.seed}) as parent:
        tracker.log_params(parent, {f"boost.{k}": v for k, v in asdict(cfg).items()})
        tracker.log_metrics(parent, {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracker.log_artifacts(parent, out_dir / "artifacts", artifact_path="reports")
        for name in ("auc_vs_weak_learners.csv", "lm_vs_cifar.csv", "metrics.json"):
            tracker.log_artifact(parent, out_dir / name, artifact_path="reports")
        for name, curves in auc.items():
            for r, curve in enumerate(curves):
                child_tags = {**common, "source": name, "repeat": r, "seed": cfg.seed + r}
                with tracked_run(tracker, EXPERIMENT, f"{name} split {r}", parent=parent, tags=child_tags) as child:
                    tracker.log_params(child, {"source": name, "repeat": r, "split_seed": cfg.seed + r,
                                               "n_weak_learners": cfg.n_weak_learners, "algorithm": cfg.algorithm,
                                               **{f"split.{k}": v for k, v in split_rows[r].items()}})
                    tracker.log_curve(child, "auc", curve)


def model_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
