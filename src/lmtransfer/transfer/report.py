"""The transfer experiment's report: figure 3 redrawn, the few-label figure, ROC curves, the
sceptic's verdict and ``summary.md`` (one table and plain sentences per task)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lmtransfer.figures import subplots

LABELS = {"lm": "LM-CNN (landmarks)", "lm_native": "LM-CNN, its own field of view (native)", "cifar": "CIFAR-CNN (natural images)", "random": "random CNN (no pre-training)",
          "handcrafted": "hand-crafted features (no network)"}
COLOURS = {"lm": "tab:red", "lm_native": "tab:orange", "cifar": "tab:blue", "random": "tab:gray", "handcrafted": "tab:green"}
SCEPTIC_MARGIN = 0.02   # hand-crafted features this close to the best CNN: the task does not tell features apart


def summary_sizes(n: int) -> list[int]:
    """The ensemble sizes of the summary: 5, 10, 50 and all ``n`` (those up to ``n``)."""
    return sorted({s for s in (5, 10, 50, n) if s <= n})


def size_key(size: int, n: int) -> str:
    """How a size is named in metrics and tables: ``all`` for the whole ensemble."""
    return "all" if size == n else str(size)


def sceptic_verdict(aucs: dict[str, float], size: int) -> dict:
    """The hand-crafted baseline against the best CNN source (``aucs``: source -> AUC at ``size`` weak
    learners), in numbers and one sentence; empty without the baseline or a network."""
    networks = [n for n in aucs if n != "handcrafted"]
    if "handcrafted" not in aucs or not networks:
        return {}
    best = max(networks, key=lambda n: aucs[n])
    gap = float(aucs["handcrafted"] - aucs[best])
    easy = gap >= -SCEPTIC_MARGIN
    sentence = (f"hand-crafted features reach {aucs['handcrafted']:.3f} AUC at {size} weak learners against "
                f"{aucs[best]:.3f} for the best CNN ({best}): "
                + ("the task is too easy to tell pre-trainings apart" if easy else
                   f"the CNN features carry more than generic filters (by {-gap:.3f})"))
    return {f"handcrafted_minus_best_cnn_at_{size}": round(gap, 4), "task_too_easy": easy, "sceptic_verdict": sentence}


def plot_auc_curves(table: pd.DataFrame, tests: pd.DataFrame, names: list[str], alpha: float, path: Path, title: str) -> Path:
    """The research's figure 3: AUC against the number of weak learners, one curve per feature source,
    its 95 % interval shaded between the tested sizes, LM vs CIFAR differences starred."""
    fig, ax = subplots(figsize=(8, 5))
    x = table["weak_learners"]
    for name in names:
        ax.plot(x, table[f"{name}_auc"], color=COLOURS.get(name), label=LABELS.get(name, name), lw=1.8)
        band = table.dropna(subset=[f"{name}_auc_lo"])
        ax.fill_between(band["weak_learners"], band[f"{name}_auc_lo"], band[f"{name}_auc_hi"], color=COLOURS.get(name), alpha=0.18, lw=0)
    if len(tests):
        significant = tests[tests["significant"]]
        top = float(np.nanmax([table[f"{n}_auc_hi"].max() for n in names]))
        ax.scatter(significant["weak_learners"], np.full(len(significant), min(top + 0.02, 1.0)), marker="*", color="k", s=60,
                   label=f"LM vs CIFAR differ (paired case bootstrap, p < {alpha})")
    ax.set_xscale("log")
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), 1.04)
    ax.set_xlabel("number of weak learners (decision stumps)")
    ax.set_ylabel("ROC AUC on test cases")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_few_label(few: pd.DataFrame, names: list[str], path: Path, title: str) -> Path:
    """AUC against the number of training cases, one panel per ensemble size, one line per source."""
    sizes = sorted(few["weak_learners"].unique())
    fig, axes = subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.4), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for name in names:
            part = few[(few["source"] == name) & (few["weak_learners"] == size)].sort_values("train_cases")
            ax.plot(part["train_cases"], part["auc"], "o-", color=COLOURS.get(name), label=LABELS.get(name, name), lw=1.6, ms=4)
            ax.fill_between(part["train_cases"], part["auc_lo"], part["auc_hi"], color=COLOURS.get(name), alpha=0.15, lw=0)
        ax.set_xscale("log")
        ticks = sorted(few["train_cases"].unique())
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.set_xlabel("training cases")
        ax.set_ylabel("ROC AUC on test cases")
        ax.set_title(f"{size} weak learners", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
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


def _cell(mean: float, lo: float, hi: float) -> str:
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def summary_table(points: dict, paired: pd.DataFrame, few: pd.DataFrame, names: list[str], n: int) -> pd.DataFrame:
    """The summary's table as text cells, one row per source: AUC [interval] at 5/10/50/all weak
    learners, at the fewest training cases (10 learners), and LM minus the source at 10 [interval] (p).
    Written as ``summary.csv`` too, so a summary over several tasks shows the very same cells."""
    few_size = min(10, n)
    smallest = int(few["train_cases"].min()) if len(few) else None
    rows = []
    for name in names:
        row = {"source": name, **{f"auc_at_{size_key(s, n)}": _cell(*points[name][s]) for s in summary_sizes(n)}}
        if smallest is not None:
            part = few[(few["source"] == name) & (few["train_cases"] == smallest) & (few["weak_learners"] == few_size)].iloc[0]
            row["fewest_cases"], row["auc_fewest_cases"] = smallest, _cell(part["auc"], part["auc_lo"], part["auc_hi"])
        if len(paired):
            t = paired[(paired["comparison"] == f"lm-{name}") & (paired["weak_learners"] == few_size)]
            row["lm_minus_source"] = "-" if not len(t) else (f"{t.iloc[0]['delta_mean']:+.3f} [{t.iloc[0]['delta_lo']:+.3f}, "
                                                           f"{t.iloc[0]['delta_hi']:+.3f}] ({t.iloc[0]['p_value']:.3f})")
        rows.append(row)
    return pd.DataFrame(rows)


def _headings(table: pd.DataFrame, n: int) -> list[str]:
    """Readable column names of :func:`summary_table`'s columns."""
    names = {"source": "source", "auc_at_all": f"AUC at all ({n})", "lm_minus_source": f"LM - source at {min(10, n)} [95 %] (p)",
             "auc_fewest_cases": f"AUC, fewest training cases ({min(10, n)} learners)"}
    return [names.get(c, c.replace("auc_at_", "AUC at ")) for c in table.columns if c != "fewest_cases"]


def _markdown_rows(table: pd.DataFrame) -> list[str]:
    rows = []
    for _, row in table.iterrows():
        cells = [str(row[c]) + (f" ({row['fewest_cases']} cases)" if c == "auc_fewest_cases" and str(row[c]) != "-" else "")
                 for c in table.columns if c != "fewest_cases"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def write_summary(path: Path, metrics: dict, points: dict, paired: pd.DataFrame, few: pd.DataFrame, weighting: pd.DataFrame,
                  names: list[str], cfg, difficulty: pd.DataFrame | None = None) -> Path:
    """``summary.md`` (and its table as ``summary.csv``): per source the AUC at 5/10/50/all weak learners
    with intervals, the few-label AUC at the smallest training size, LM minus the source with its
    p-value, then the sentences, the few-label, difficulty and weighting tables."""
    n = cfg.n_weak_learners
    sizes = summary_sizes(n)
    few_size = min(10, n)
    table = summary_table(points, paired, few, names, n)
    table.to_csv(path.with_name("summary.csv"), index=False)
    head = _headings(table, n)
    lines = [f"# Transfer summary: {metrics['dataset']}", "",
             f"{metrics['design']}; AdaBoost with up to {n} stumps, "
             f"{'class-balanced' if cfg.balanced else 'equal'} initial sample weights. AUC: mean over the splits, 95 % interval "
             f"from {cfg.bootstrap} case resamples shared by every split and source.", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head), *_markdown_rows(table)]
    lines.append("")
    for key in ("verdict", "power_statement", "sceptic_verdict"):
        if key in metrics:
            lines.append(f"- {metrics[key][0].upper()}{metrics[key][1:]}.")
    if len(few):
        lines += ["", f"## Few labels: AUC against training cases ({few_size} / {n} weak learners)", "",
                  "| source | " + " | ".join(str(int(c)) for c in sorted(few["train_cases"].unique())) + " |",
                  "| --- |" + " --- |" * few["train_cases"].nunique()]
        for name in names:
            cells = []
            for cases in sorted(few["train_cases"].unique()):
                part = few[(few["source"] == name) & (few["train_cases"] == cases)].set_index("weak_learners")["auc"]
                cells.append(" / ".join(f"{part[s]:.3f}" for s in sorted(part.index)))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if difficulty is not None and len(difficulty):
        size = int(difficulty["weak_learners"].min())
        part = difficulty[difficulty["weak_learners"] == size]
        lines += ["", f"## Difficulty: AUC per kind at {size} weak learners (lesion kinds against all normal patches, "
                      "lesion size bins likewise, look-alike kinds against all lesions; lower is harder)", "",
                  "| side | kind | test patches per split | " + " | ".join(names) + " |", "| --- | --- | --- |" + " --- |" * len(names)]
        for (side, kind), rows in part.groupby(["side", "kind"], sort=False):
            rows = rows.set_index("source")
            lines.append(f"| {side} | {kind} | {rows['test_patches_per_split'].iloc[0]:.0f} | "
                         + " | ".join(f"{rows.loc[n, 'auc']:.3f}" if n in rows.index else "-" for n in names) + " |")
    if len(weighting):
        lines += ["", "## Initial sample weights: class-balanced against equal (the research's), on the first repeat's splits", "",
                  "| source | weighting | " + " | ".join(f"AUC at {s}" for s in sizes) + " |", "| --- | --- |" + " --- |" * len(sizes)]
        for (name, weights), part in weighting.groupby(["source", "weighting"], sort=False):
            part = part.set_index("weak_learners")
            lines.append(f"| {name} | {weights} | " + " | ".join(_cell(*part.loc[s, ["auc", "auc_lo", "auc_hi"]]) for s in sizes) + " |")
    path.write_text("\n".join(lines) + "\n")
    return path


TASK_NAMES = {"phantom_mra": "MRA aneurysm (cross-modality)", "phantom_lung_nodules": "CT lung nodule (in-domain)"}


def combined_summary(tasks: dict[str, tuple[dict, pd.DataFrame]]) -> str:
    """One table for several transfer runs (``tasks``: report folder -> its metrics.json and summary.csv),
    the very cells of each run's own summary, then each run's sentences."""
    first = next(iter(tasks.values()))
    head = ["task"] + _headings(first[1], int(first[0].get("weak_learners_max", 0)))
    lines = ["# Transfer summary: every task", "",
             "AUC mean over the splits [95 % case-bootstrap interval]; fewest training cases: the smallest few-label training "
             "set; LM - source: paired difference (p). One row per task and feature source; each task's own summary.md has "
             "its few-label, difficulty and weighting tables.", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    sentences = []
    for folder, (m, table) in tasks.items():
        task = f"{TASK_NAMES.get(m.get('dataset', ''), m.get('dataset', '?'))} [{folder}]"
        table = table.reindex(columns=first[1].columns, fill_value="-")     # the first task's columns for every task
        lines += [f"| {task} " + row for row in _markdown_rows(table)]
        sentences += [f"- {task}: {m[key]}." for key in ("verdict", "power_statement", "sceptic_verdict") if key in m]
    return "\n".join(lines + [""] + sentences) + "\n"
