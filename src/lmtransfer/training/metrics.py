"""Classification metrics and plots for the landmark CNN (held-out cases only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lmtransfer.figures import subplots
from lmtransfer.sampling.cache import BACKGROUND


def top_k(scores: np.ndarray, y: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((best == y[:, None]).any(axis=1).mean())


def confusion(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y, predicted), 1)
    return matrix


def summarise(scores: np.ndarray, y: np.ndarray, class_names: list[str]) -> dict:
    """top-1, top-5, balanced accuracy, per-class accuracy, landmark-vs-background confusion."""
    predicted = scores.argmax(axis=1)
    n = len(class_names)
    matrix = confusion(y, predicted, n)
    support = matrix.sum(axis=1)
    per_class = np.where(support > 0, np.diag(matrix) / np.maximum(support, 1), np.nan)
    bg = class_names.index(BACKGROUND) if BACKGROUND in class_names else None
    result = {
        "top1": float((predicted == y).mean()),
        "top5": top_k(scores, y, 5),
        "balanced_accuracy": float(np.nanmean(per_class)),
        "per_class_accuracy": {name: (None if np.isnan(a) else float(a)) for name, a in zip(class_names, per_class)},
        "n_patches": int(len(y)),
    }
    if bg is not None:
        is_bg, says_bg = y == bg, predicted == bg
        result["landmark_called_background"] = float((~is_bg & says_bg).sum() / max((~is_bg).sum(), 1))
        result["background_called_landmark"] = float((is_bg & ~says_bg).sum() / max(is_bg.sum(), 1))
        landmark = ~is_bg & ~says_bg
        result["top1_landmarks_only"] = float((predicted[~is_bg] == y[~is_bg]).mean()) if (~is_bg).any() else float("nan")
        result["wrong_landmark_kind"] = float((landmark & (predicted != y)).sum() / max((~is_bg).sum(), 1))
    return result


def most_confused(matrix: np.ndarray, class_names: list[str], top: int = 10) -> pd.DataFrame:
    """Off-diagonal pairs (true -> predicted) by count."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    rows = []
    for flat in order:
        i, j = np.unravel_index(flat, off.shape)
        if off[i, j] == 0:
            break
        rows.append({"true": class_names[i], "predicted": class_names[j], "count": int(off[i, j]),
                     "share_of_true": float(off[i, j] / max(matrix[i].sum(), 1))})
    return pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_true"])


def save_confusion(matrix: np.ndarray, class_names: list[str], csv_path: Path, png_path: Path, title: str) -> None:
    pd.DataFrame(matrix, index=class_names, columns=class_names).to_csv(csv_path)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(6.0, 0.16 * len(class_names) + 2)
    fig, ax = subplots(figsize=(size, size))
    ax.imshow(share, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=5)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)


def save_gallery(x_hu: np.ndarray, y: np.ndarray, class_names: list[str], path: Path, per_class: int = 4, window=(-160.0, 240.0)) -> None:
    """Sample 2.5D patches per class (rows: classes; each patch as axial | coronal | sagittal)."""
    classes = list(range(len(class_names)))
    fig, axes = subplots(len(classes), per_class, figsize=(per_class * 2.4, len(classes) * 0.85 + 0.5), squeeze=False)
    rng = np.random.default_rng(0)
    for r, c in enumerate(classes):
        idx = np.flatnonzero(y == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for k in range(per_class):
            ax = axes[r, k]
            ax.axis("off")
            if k < len(pick):
                ax.imshow(np.concatenate(list(x_hu[pick[k]]), axis=1), cmap="gray", vmin=window[0], vmax=window[1])
        axes[r, 0].text(-4, 16, class_names[c], fontsize=6, ha="right", va="center")
    fig.subplots_adjust(left=0.22, wspace=0.05, hspace=0.05)
    fig.savefig(path, dpi=100)


def save_curves(history: pd.DataFrame, path: Path) -> None:
    fig, (a, b) = subplots(1, 2, figsize=(10, 3.5))
    a.plot(history["epoch"], history["train_loss"], label="train")
    a.plot(history["epoch"], history["val_loss"], label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.legend()
    b.plot(history["epoch"], history["train_top1"], label="train")
    b.plot(history["epoch"], history["val_top1"], label="validation")
    b.set_xlabel("epoch")
    b.set_ylabel("top-1")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
