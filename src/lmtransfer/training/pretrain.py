"""The landmark pre-training stage: one class-count step (20, 40, 60 ...) trained, evaluated and tracked.

A step either starts from scratch or widens the previous step's model (class expansion, as in
the research). Evaluation uses held-out test cases only; model selection uses validation cases.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmtransfer.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.tracking import CHECKPOINT_ARTIFACTS, NullTracker, Tracker, git_commit, tracked_run
from lmtransfer.sampling.cache import BACKGROUND, PatchCacheConfig, load_cache
from lmtransfer.training.data import PatchSet, class_order, select
from lmtransfer.training.metrics import most_confused, save_confusion, save_curves, save_gallery, summarise
from lmtransfer.training.train import PatchStream, TrainConfig, predict, train_model

EXPERIMENT = "landmark-pretraining"
REGISTERED_MODEL = "lm-cnn"


@dataclass(frozen=True)
class StepResult:
    name: str
    test: dict
    val_top1: float
    epochs: int
    seconds: float
    run_id: str = ""       # the tracker's run ("" untracked)


def model_card(model: MiniVGG, class_names: list[str], patch: PatchCacheConfig, cfg: TrainConfig,
               training_data: dict[str, str] | None = None) -> ModelCard:
    """The card of a landmark CNN: its classes, the patches and HU window it was trained on, its data."""
    return ModelCard(
        architecture="mini-VGG", config=dict(model.config), class_names=tuple(class_names),
        patch={"fov_mm": patch.fov_mm, "pixels": patch.pixels, "planes": ["axial", "coronal", "sagittal"],
               "resampling": "trilinear, isotropic in mm", "padding_hu": -1024},
        normalisation={"hu_window": [cfg.hu_low, cfg.hu_high], "maps_to": [-1, 1]},
        training_data=dict(training_data or {}), pretraining="landmark classification on 2.5D CT patches",
    )


@dataclass
class StepData:
    """The patches of one step: training (in memory or cut on the fly), validation and test (exact patches)."""

    class_names: list[str]
    train: PatchSet | PatchStream
    val: PatchSet
    test: PatchSet

    def describe(self) -> str:
        train = f"{len(self.train)} training patches" if isinstance(self.train, PatchSet) else "training patches cut on the fly"
        return f"{train}, {len(self.val)} validation, {len(self.test)} test"


def step_classes(rows: pd.DataFrame, name_column: str, train_cases: list[str], n_landmarks: int, order_seed: int) -> list[str]:
    """The first ``n_landmarks`` kinds that the training cases of ``rows`` show, in the seeded order,
    and background last; every kind when the data has fewer (a collection whose segmentations give 30
    kinds trains its 40 and 60 steps on all 30). A kind no training case shows cannot be learnt."""
    order = class_order(rows.loc[rows["case"].isin(train_cases), name_column].tolist(), order_seed)
    if not order:
        raise ValueError("the training cases have no landmark kinds")
    return order[:n_landmarks] + [BACKGROUND]


def cached_step_data(cache_dir: Path, splits: dict, n_landmarks: int, order_seed: int) -> StepData:
    """The step's patches from the patch cache (``pretrain.loader: cache``)."""
    patches, index = load_cache(cache_dir)
    class_names = step_classes(index, "name", splits["train"], n_landmarks, order_seed)
    return StepData(class_names, select(patches, index, splits["train"], class_names, "all"),
                    select(patches, index, splits["val"], class_names, "clean"), select(patches, index, splits["test"], class_names, "clean"))


def queue_step_data(manifest: pd.DataFrame, splits: dict, n_landmarks: int, order_seed: int, patch: PatchCacheConfig, seed: int,
                    samples_per_volume: int = 64, workers: int = 0) -> StepData:
    """The step's patches without a cache (``pretrain.loader: queue``): training patches drawn from a
    TorchIO queue while training, validation and test patches cut once, exactly as the cache cuts them."""
    from lmtransfer.sampling.queue import QueuePatches, case_subjects, exact_patches

    in_image = manifest[manifest["in_image"].astype(bool)]
    class_names = step_classes(in_image, "landmark", splits["train"], n_landmarks, order_seed)

    def exact(cases):
        x, index = exact_patches(case_subjects(manifest, cases, patch, class_names, loaded=True), patch)
        return select(x, index.assign(row=np.arange(len(index))), cases, class_names, "clean")

    train = QueuePatches(list(case_subjects(manifest, splits["train"], patch, class_names)), class_names, patch, seed,
                         samples_per_volume=samples_per_volume, num_workers=workers)
    return StepData(class_names, train, exact(splits["val"]), exact(splits["test"]))


def run_step(
    name: str, n_landmarks: int, data: Path | StepData, splits: dict, patch: PatchCacheConfig, cfg: TrainConfig,
    order_seed: int, out_dir: Path, model_path: Path, init_path: Path | None = None, tracker: Tracker | None = None,
    tags: dict | None = None, device: torch.device | str = "cpu",
) -> StepResult:
    """Train and evaluate the ``n_landmarks`` + 1 class model on ``data`` (a patch cache folder, or
    :class:`StepData`); write its reports and checkpoint, and record the run with ``tracker``
    (none: nothing recorded)."""
    import time

    start = time.perf_counter()
    if not isinstance(data, StepData):
        data = cached_step_data(Path(data), splits, n_landmarks, order_seed)
    class_names, train, val, test = data.class_names, data.train, data.val, data.test
    init = None
    if init_path is not None:
        previous, card = load_checkpoint(init_path)
        if card.patch is not None and (card.fov_mm, card.pixels) != (patch.fov_mm, patch.pixels):
            raise ValueError(f"{init_path}: trained on {card.fov_mm:g} mm patches of {card.pixels} pixels, this step cuts "
                             f"{patch.fov_mm:g} mm of {patch.pixels}: set patches.fov_mm and patches.pixels to the starting model's")
        old = list(card.class_names)
        dropped = [c for c in old if c not in class_names]
        if dropped:   # e.g. the phantom's model starting a collection whose segmentations give fewer kinds
            print(f"{name}: {len(dropped)} of the {len(old)} classes of {init_path} are not in this data; their outputs are "
                  f"dropped, the features kept: {', '.join(dropped)}")
        init = previous.widened(len(class_names), {i: class_names.index(c) for i, c in enumerate(old) if c in class_names},
                                seed=cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(class_names) - 1 < n_landmarks:
        print(f"{name}: {n_landmarks} landmark classes asked, the data has {len(class_names) - 1} kinds: trains on all of them")
        n_landmarks = len(class_names) - 1
    print(f"{name}: {n_landmarks}+1 classes, {data.describe()} ({len(splits['train'])} training cases)"
          + (f", starting from {init_path}" if init_path else ""))

    tracker = tracker or NullTracker()
    params = {**{f"patch.{k}": v for k, v in asdict(patch).items()}, **{f"train.{k}": v for k, v in asdict(cfg).items()},
              "classes.landmarks": n_landmarks, "classes.order_seed": order_seed, "init_from": str(init_path) if init_path else "scratch",
              "cases.train": len(splits["train"]), "cases.val": len(splits["val"]), "cases.test": len(splits["test"])}
    tags = {"git_commit": git_commit(), "seed": cfg.seed, "stage": name, "route": "expansion" if init_path else "scratch", **(tags or {})}
    with tracked_run(tracker, EXPERIMENT, name, tags=tags) as run_id:
        tracker.log_params(run_id, params)
        model, history = train_model(train, val, cfg, init, on_epoch=lambda epoch, values: tracker.log_metrics(run_id, values, epoch),
                                     device=device)
        scores = predict(model.to(device), test.x, cfg.normaliser, device=device)
        model = model.cpu()
        summary = summarise(scores, test.y, class_names)
        matrix = _confusion(scores, test)
        confused = most_confused(matrix, class_names)
        _write_reports(out_dir, name, history, summary, matrix, confused, test, class_names)
        data = {k: str(v) for k, v in (tags or {}).items() if k in ("data_hash", "patch_cache_key", "splits_hash")}
        card = model_card(model, class_names, patch, cfg, data)
        save_checkpoint(model_path, model, card)
        result = StepResult(name, summary, float(history["val_top1"].max()), int(len(history)), time.perf_counter() - start, run_id)
        (out_dir / "metrics.json").write_text(json.dumps({
            "classes": n_landmarks + 1, "test_top1": summary["top1"], "test_top5": summary["top5"],
            "test_balanced_accuracy": summary["balanced_accuracy"], "test_top1_landmarks_only": summary.get("top1_landmarks_only"),
            "landmark_called_background": summary.get("landmark_called_background"),
            "background_called_landmark": summary.get("background_called_landmark"),
            "val_top1": result.val_top1, "epochs": result.epochs,
        }, indent=2) + "\n")
        if tracker.enabled:
            _finish_run(tracker, run_id, model, card, out_dir, summary, result, cfg, test)
            tracker.log_artifact(run_id, model_path, artifact_path=CHECKPOINT_ARTIFACTS)  # what models:/lm-cnn@... resolves to
    return result


def _confusion(scores: np.ndarray, test: PatchSet) -> np.ndarray:
    from lmtransfer.training.metrics import confusion

    return confusion(test.y, scores.argmax(1), len(test.class_names))


def _write_reports(out_dir: Path, name: str, history: pd.DataFrame, summary: dict, matrix: np.ndarray,
                   confused: pd.DataFrame, test: PatchSet, class_names: list[str]) -> None:
    """``out_dir``: metrics and plot tables for DVC; ``out_dir/artifacts``: figures and full tables."""
    artifacts = out_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    history.to_csv(out_dir / "history.csv", index=False, float_format="%.5f")
    # long format for `dvc plots` (confusion template)
    rows = [{"actual": class_names[i], "predicted": class_names[j], "count": int(matrix[i, j])}
            for i in range(len(class_names)) for j in range(len(class_names)) if matrix[i, j]]
    pd.DataFrame(rows).to_csv(out_dir / "confusion_pairs.csv", index=False)
    save_curves(history, artifacts / "learning_curves.png")
    save_confusion(matrix, class_names, artifacts / "confusion_matrix.csv", artifacts / "confusion_matrix.png",
                   f"{name}: test cases, top-1 {summary['top1']:.3f}")
    confused.to_csv(artifacts / "most_confused.csv", index=False, float_format="%.3f")
    per_class = pd.DataFrame({"class": list(summary["per_class_accuracy"]), "test_accuracy": list(summary["per_class_accuracy"].values())})
    per_class.to_csv(artifacts / "per_class_accuracy.csv", index=False, float_format="%.4f")
    save_gallery(test.x, test.y, class_names, artifacts / "gallery.png")


def _finish_run(tracker: Tracker, run_id: str, model, card: ModelCard, out_dir: Path, summary: dict, result: StepResult, cfg,
                test: PatchSet) -> None:
    metrics = {f"test_{k}": v for k, v in summary.items() if isinstance(v, float)}
    tracker.log_metrics(run_id, {**metrics, "best_val_top1": result.val_top1, "epochs_run": result.epochs, "stage_seconds": result.seconds})
    tracker.log_artifacts(run_id, out_dir / "artifacts", artifact_path="reports")
    for path in ("metrics.json", "history.csv"):
        tracker.log_artifact(run_id, out_dir / path, artifact_path="reports")
    card = card.to_dict()
    tracker.log_dict(run_id, card, "model_card.json")
    example = cfg.normaliser(torch.from_numpy(np.asarray(test.x[:2]))).numpy()
    tracker.log_model(run_id, model, REGISTERED_MODEL, example, {"card": card})
