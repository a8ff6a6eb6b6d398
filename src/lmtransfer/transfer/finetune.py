"""Beyond the research: fine-tune the whole CNN on the lesion patches (LM-CNN vs CIFAR-CNN vs scratch).

Same first case split as the AdaBoost experiment, on its whole training set and on the same
few-label subsets; a share of the training cases is held out for early stopping; test AUC with a
95 % interval from resampling test cases.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmtransfer.models.checkpoint import load_checkpoint
from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.tracking import NullTracker, Tracker, git_commit, tracked_run
from lmtransfer.training.data import PatchSet
from lmtransfer.training.train import TrainConfig, predict, train_model
from lmtransfer.transfer.boosting import BoostConfig, case_bootstrap, weighted_auc
from lmtransfer.transfer.experiment import FULL, few_label_subsets, lesion_cases, repeat_splits, shuffled_strata
from lmtransfer.transfer.lesions import LesionSet

EXPERIMENT = "transfer-finetune"


def initial_model(source: str, lm_model: Path, cifar_model: Path, seed: int) -> MiniVGG:
    """A 2-class mini-VGG: pre-trained layers kept and a new classifier, or all random (``scratch``)."""
    if source in ("lm", "cifar"):
        model = load_checkpoint(Path(lm_model if source == "lm" else cifar_model))[0]
        return model.widened(2, {}, seed=seed)
    if source == "scratch":
        reference = load_checkpoint(Path(lm_model))[0] if Path(lm_model).exists() else None
        torch.manual_seed(seed)
        return MiniVGG(**{**(reference.config if reference else {}), "n_classes": 2})
    raise ValueError(f"unknown fine-tuning source {source!r}; use lm, cifar, scratch")


def validation_cases(lesions: LesionSet, train_cases: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(validation, fitting) cases of the training cases: the set's own validation cases when it has
    them (MedMNIST), else a seeded ``fraction`` of them, stratified by whether a case has a lesion."""
    own = set(lesions.index.loc[lesions.index["fixed_split"] == "val", "case"]) & set(train_cases)
    if own:
        return sorted(own), sorted(set(train_cases) - own)
    val = []
    for k, stratum in enumerate(shuffled_strata(train_cases, lesion_cases(lesions), np.random.default_rng(seed))):
        n = int(round(fraction * len(stratum)))
        if k == 0 and len(stratum) >= 2:
            n = max(n, 1)        # the validation AUC needs a lesion; one case with lesions is left to fit on
        val += stratum[:n]
    return sorted(val), sorted(set(train_cases) - set(val))


def run_finetune(lesions: LesionSet, params, boost: BoostConfig, lm_model: Path, cifar_model: Path, out_dir: Path,
                 tags: dict | None = None, progress=print, tracker: Tracker | None = None, device="cpu", threads: int = 2) -> dict:
    """Fine-tune each source in ``params.sources`` and score it on the first split's test cases (on
    ``threads`` CPU threads), on the split's whole training set and on each of its few-label subsets
    ``params.few_label_cases`` (the same nested subsets the AdaBoost design fits on that split); one
    ``tracker`` run per source and training set."""
    tracker = tracker or NullTracker()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_cases, test_cases = repeat_splits(lesions, replace(boost, repeats=1))[0]
    training_sets = {FULL: train_cases, **few_label_subsets(train_cases, lesion_cases(lesions), tuple(params.few_label_cases), boost.seed)}
    index = lesions.index

    def subset(cases, clean):
        keep = index["case"].isin(cases).to_numpy()
        if clean:
            keep = keep & (index["variant"] == 0).to_numpy()
        rows = index[keep].reset_index(drop=True)
        return PatchSet(np.asarray(lesions.x[np.flatnonzero(keep)]), rows["label"].to_numpy(np.int64), rows, ["normal", "lesion"])

    test = subset(test_cases, True)
    cfg = TrainConfig(hu_low=-1.0, hu_high=1.0, batch_size=params.batch_size, lr=params.lr, weight_decay=params.weight_decay,
                      max_epochs=params.max_epochs, patience=params.patience, epoch_patches=params.epoch_patches,
                      intensity_scale=0.1, intensity_shift_hu=0.05, seed=params.seed, threads=threads)
    weights = case_bootstrap(test.rows["case"].to_numpy(), boost.bootstrap, np.random.default_rng([boost.seed, 99]))
    rows, metrics = [], {"test_cases": len(test_cases)}
    for n, cases in training_sets.items():
        val_cases, fit_cases = validation_cases(lesions, cases, params.val_fraction, params.seed)
        fit, val = subset(fit_cases, False), subset(val_cases, True)
        if len(np.unique(fit.y)) < 2 or len(np.unique(val.y)) < 2 or len(np.unique(test.y)) < 2:
            raise ValueError(f"fine-tuning on {len(cases)} training cases needs lesion and normal patches in the fitting, "
                             "validation and test cases")
        suffix, label = ("", "") if n == FULL else (f"_at_{n}_cases", f" ({n} training cases)")
        if n == FULL:
            metrics.update(fit_cases=len(fit_cases), val_cases=len(val_cases))
        for source in params.sources:
            start = time.perf_counter()
            model = initial_model(source, lm_model, cifar_model, params.seed)
            progress(f"fine-tuning {source}{label}: {len(fit)} training patches, {len(val)} validation, {len(test)} test")
            run_tags = {"git_commit": git_commit(), "seed": params.seed, "source": source, "train_cases": len(cases),
                        **{k: str(v) for k, v in (tags or {}).items()}}
            with tracked_run(tracker, EXPERIMENT, f"finetune {source}{label}", tags=run_tags) as run_id:
                tracker.log_params(run_id, {"source": source, "train_cases": len(cases),
                                            **{f"finetune.{k}": v for k, v in params.__dict__.items() if k not in ("sources", "few_label_cases")},
                                            "train.lr": cfg.lr, "train.batch_size": cfg.batch_size})
                model, history = train_model(fit, val, cfg, model, progress=progress, device=device, select_on="auc",
                                             on_epoch=lambda epoch, values: tracker.log_metrics(run_id, values, epoch))
                scores = predict(model.to(device), test.x, cfg.normaliser, device=device)[:, 1]
                auc = float(weighted_auc(scores, test.y, np.ones((1, len(test.y))))[0])
                lo, hi = np.nanpercentile(weighted_auc(scores, test.y, weights), [2.5, 97.5])
                rows.append({"source": source, "train_cases": len(cases), "test_auc": auc, "test_auc_lo": float(lo), "test_auc_hi": float(hi),
                             "epochs": int(len(history)), "best_epoch": int(history.loc[history["best"], "epoch"].iloc[0]),
                             "best_val_auc": float(history["val_auc"].max())})
                history.to_csv(out_dir / f"history_{source}{suffix}.csv", index=False, float_format="%.5f")
                metrics[f"{source}_test_auc{suffix}"] = round(auc, 4)
                metrics[f"{source}_test_auc{suffix}_ci"] = [round(float(lo), 4), round(float(hi), 4)]
                tracker.log_metrics(run_id, {"test_auc": auc, "test_auc_lo": float(lo), "test_auc_hi": float(hi),
                                             "seconds": time.perf_counter() - start})
                progress(f"  {source}{label}: test AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] ({time.perf_counter() - start:.0f} s)")
    pd.DataFrame(rows).to_csv(out_dir / "finetune.csv", index=False, float_format="%.4f")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
