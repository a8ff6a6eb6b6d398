"""The study's reports: trials table, the field-of-view x depth table and figure, Optuna's plots
and the best setting, written into the folder the caller names."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lmtransfer.figures import subplots
from lmtransfer.tuning.search import state_name


def trials_table(study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"trial": t.number, "state": state_name(t), "val_top1": t.value, **t.params,
                     "epochs": len(t.intermediate_values), "seconds": t.user_attrs.get("seconds")})
    return pd.DataFrame(rows)


def heat_map_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Best validation top-1 of the complete trials by patch field of view (rows) and depth (columns)."""
    complete = trials[trials["state"] == "COMPLETE"]
    if complete.empty:
        return pd.DataFrame()
    return complete.pivot_table(index="fov_mm", columns="depth", values="val_top1", aggfunc="max").sort_index()


def write_reports(study, out_dir: Path, report: Callable[[str], None] | None = None) -> dict:
    """trials.csv, the fov x depth table (CSV + PNG), Optuna's plots and the best setting; the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = trials_table(study)
    trials.to_csv(out_dir / "trials.csv", index=False, float_format="%.6g")
    table = heat_map_table(trials) if not trials.empty else pd.DataFrame()
    states = trials["state"].value_counts() if len(trials) else pd.Series(dtype=int)
    summary = {"trials": int(len(trials)), "complete": int(states.get("COMPLETE", 0)), "pruned": int(states.get("PRUNED", 0)),
               "failed": int(states.get("FAIL", 0)), "cancelled": int(states.get("CANCELLED", 0))}
    if table.empty:
        return summary
    table.to_csv(out_dir / "val_top1_fov_by_depth.csv", float_format="%.4f")
    fig, ax = subplots(figsize=(1.4 + 1.1 * table.shape[1], 1.2 + 0.6 * table.shape[0]))
    image = ax.imshow(table.to_numpy(float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{v:g}" for v in table.index])
    ax.set_xlabel("depth (VGG blocks)")
    ax.set_ylabel("patch field of view (mm)")
    for (r, c), value in np.ndenumerate(table.to_numpy(float)):
        if np.isfinite(value):
            ax.text(c, r, f"{value:.3f}", ha="center", va="center", color="white" if value < np.nanmax(table.to_numpy()) else "black")
    ax.set_title("best validation top-1")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out_dir / "val_top1_fov_by_depth.png", dpi=120)
    _optuna_plots(study, out_dir, report)
    best = study.best_trial
    summary.update({"best_trial": best.number, "best_val_top1": best.value, "best_params": best.params,
                    "median_trial_seconds": float(trials.loc[trials["state"] == "COMPLETE", "seconds"].median())})
    (out_dir / "best.json").write_text(json.dumps({"trial": best.number, "val_top1": best.value, "params": best.params}, indent=2) + "\n")
    return summary


def _optuna_plots(study, out_dir: Path, report: Callable[[str], None] | None) -> None:
    # Optuna draws through pyplot (its default backend: no display needed for savefig); each figure is closed after
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"optimization_history": ovm.plot_optimization_history, "param_importances": ovm.plot_param_importances,
             "intermediate_values": ovm.plot_intermediate_values}
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
            try:
                ax = plot(study)
            except (ValueError, RuntimeError) as exc:  # e.g. importances need two complete trials
                if report:
                    report(f"  (no {name} plot: {exc})")
                continue
        ax.figure.set_size_inches(7, 4.5)
        ax.figure.tight_layout()
        ax.figure.savefig(out_dir / f"{name}.png", dpi=110)
        plt.close(ax.figure)
