"""The ``detect_eval`` stage: detect every landmark on the held-out cases, score, plot and track.

Detections are kept per case under ``out_dir/detections`` (``<case>.csv``, ``<case>.mrk.json``
and ``<case>.json`` with the time it took), keyed by the model file and the search settings:
an interrupted run resumes with the cases it has not done, a new model or setting starts over.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm.auto import tqdm

from lmtransfer.detection.detector import DetectConfig, DetectionResult, LandmarkDetector
from lmtransfer.detection.evaluate import load_truth, score_case, summarise
from lmtransfer.detection.shape import ShapeModel
from lmtransfer.io.landmarks import write_slicer_json
from lmtransfer.tracking import Tracker, git_commit, tracked_run

EXPERIMENT = "landmark-detection"


@dataclass(frozen=True)
class DetectEvalParams:
    """The ``detect`` section of ``params.yaml`` (search settings in ``detect``)."""

    detect: DetectConfig = field(default_factory=DetectConfig)
    model: Path = Path("models/lm_cnn_lm60.pt")
    shape_model: Path = Path("models/landmark_shape.json")   # fitted on the training cases by this stage
    manifest: Path = Path("data/manifest/manifest.csv")
    truth: Path = Path("data/phantom_ct/landmarks_truth.csv")
    splits: Path = Path("data/splits.json")
    split: str = "test"
    max_cases: int = 0                 # 0: every case of the split
    hit_radius_mm: float = 10.0
    overlay_case: str = ""             # "": the first evaluated case
    out_dir: Path = Path("reports/detection")
    track: bool = True


def write_detections(result: DetectionResult, markups_path: Path, csv_path: Path | None = None) -> None:
    """Found landmarks as a 3D Slicer markups file (LPS mm); every kind, found or not, as CSV."""
    found = result.found
    markups_path.parent.mkdir(parents=True, exist_ok=True)
    write_slicer_json(markups_path, found["landmark"].tolist(), found[["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(),
                      [f"probability {p:.3f}" + ("" if np.isnan(q) else f", inconsistency {q:.2f}")
                       for p, q in zip(found["probability"], found["inconsistency"])])
    if csv_path is not None:
        table = result.table.assign(status=np.where(result.table["found"], "found", "not found"))
        table.drop(columns="found").to_csv(csv_path, index=False, float_format="%.3f")


def read_detections(csv_path: Path) -> pd.DataFrame:
    table = pd.read_csv(csv_path)
    table["found"] = table.pop("status") == "found"
    return table


def run_detect_eval(params: DetectEvalParams, progress: bool = True, tags: dict | None = None, tracker: Tracker | None = None,
                    device="cpu") -> dict:
    """Detect on the cases of ``params.split``; write metrics, tables, figures; record a run with ``tracker``."""
    from lmtransfer.detection.plots import error_boxplot, overlay

    splits = json.loads(_need(params.splits, "run `dvc repro patches`").read_text())
    if params.split not in splits:
        raise ValueError(f"{params.splits}: no split named {params.split!r} (has {sorted(splits)})")
    cases = list(splits[params.split])[: params.max_cases or None]
    if not cases:
        raise ValueError(f"{params.splits}: split {params.split!r} is empty")
    images = _image_paths(_need(params.manifest, "run `dvc repro ingest`"), cases)
    shown = params.overlay_case or cases[0]
    if shown not in images:  # checked before minutes of detection, not after
        raise ValueError(f"detect.overlay_case {shown!r} is not among the evaluated cases")
    truth = load_truth(params.truth)
    without = sorted(set(cases) - set(truth["case"]))
    if without:
        raise ValueError(f"{params.truth}: no landmark truth for case(s) {without}")
    shape = fit_shape_model(params.manifest, list(splits.get("train", [])), params.shape_model)
    detector = LandmarkDetector.from_checkpoint(_need(params.model, "run `dvc repro pretrain_60`"), params.detect, shape, device)
    folder = _detections_folder(params)

    scored, seconds = [], []
    for case in tqdm(cases, desc="detect_eval", unit="case", disable=not progress):
        table, elapsed = _detect_case(detector, case, images[case], folder, progress)
        scored.append(score_case(case, table, truth[truth["case"] == case]))
        if elapsed is not None:
            seconds.append(elapsed)
        if progress:
            took = f"{elapsed:.1f} s" if elapsed is not None else "kept from an earlier run"
            tqdm.write(f"{case}: {took}, {int(table['found'].sum())}/{len(table)} kinds found")
    scored = pd.concat(scored, ignore_index=True)
    metrics, per_landmark = summarise(scored, params.hit_radius_mm)
    metrics.update({"landmark_kinds": len(detector.landmarks), "min_probability": params.detect.min_probability})
    # times go to the tracker and the console, not into the DVC outputs: those stay the same bytes run after run
    timing = {"seconds_per_volume": round(float(np.mean(seconds)), 2), "seconds_per_volume_max": round(float(np.max(seconds)), 2),
              "volumes_timed": len(seconds)} if seconds else {}
    worst = per_landmark.dropna(subset=["median_error_mm"]).head(5)
    metrics["worst_five"] = {r.landmark: round(float(r.median_error_mm), 1) for r in worst.itertuples()}

    out, artifacts = Path(params.out_dir), Path(params.out_dir) / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    per_landmark.to_csv(out / "per_landmark.csv", index=False, float_format="%.2f")
    scored.to_csv(artifacts / "errors_per_case.csv", index=False, float_format="%.3f")
    error_boxplot(scored, artifacts / "error_by_group.png", params.hit_radius_mm)
    overlay(sitk.ReadImage(str(images[shown])), scored[scored["case"] == shown], truth[truth["case"] == shown],
            artifacts / f"overlay_{shown}.png")
    if tracker is not None and tracker.enabled:
        _track(tracker, params, {**metrics, **timing}, out, tags or {})
    return {**metrics, **timing}


def fit_shape_model(manifest_path: Path, train_cases: list[str], out_path: Path) -> ShapeModel:
    """Pairwise landmark offsets of the training cases (annotated positions from the manifest), saved as JSON."""
    manifest = load_truth(manifest_path)
    rows = manifest[manifest["case"].isin(train_cases)]
    shape = ShapeModel.fit(rows, sorted(rows["landmark"].unique()))
    shape.save(out_path)
    return shape


def _detect_case(detector: LandmarkDetector, case: str, image: Path, folder: Path, progress: bool) -> tuple[pd.DataFrame, float | None]:
    """The case's detections and the seconds they took (None: kept from an earlier, interrupted run)."""
    csv_path, info_path = folder / f"{case}.csv", folder / f"{case}.json"
    if csv_path.exists() and info_path.exists():
        return read_detections(csv_path), None
    result = detector.detect_file(image, progress=progress)
    write_detections(result, folder / f"{case}.mrk.json", folder / f"{case}.csv.tmp")
    info = {"patches": result.patches_scored, "voxels": result.volume_voxels, "image": str(image)}
    info_path.write_text(json.dumps(info) + "\n")
    (folder / f"{case}.csv.tmp").replace(csv_path)  # last: a case counts as done only when complete
    return result.table, result.seconds


def _detections_folder(params: DetectEvalParams) -> Path:
    """Per-case detections; emptied when the model or the search settings changed since they were made."""
    folder = Path(params.out_dir) / "detections"
    inputs = Path(params.model).read_bytes() + Path(params.shape_model).read_bytes() + json.dumps(asdict(params.detect), sort_keys=True).encode()
    key = hashlib.sha256(inputs).hexdigest()[:16]
    stamp = folder / "KEY"
    if folder.exists() and (not stamp.exists() or stamp.read_text().strip() != key):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key + "\n")
    return folder


def _image_paths(manifest_path: Path, cases: list[str]) -> dict[str, Path]:
    manifest = pd.read_csv(manifest_path, dtype={"case": str})
    paths = manifest.drop_duplicates("case").set_index("case")["image_path"]
    missing = [c for c in cases if c not in paths.index]
    if missing:
        raise ValueError(f"{manifest_path}: case(s) {missing} of the split are not in the manifest")
    return {c: Path(paths[c]) for c in cases}


def _need(path: Path, hint: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; {hint}")
    return path


def _track(tracker: Tracker, params: DetectEvalParams, metrics: dict, out: Path, tags: dict) -> None:
    from lmtransfer.sampling.cache import file_hash

    run_tags = {"git_commit": git_commit(), "seed": "none (deterministic search)", "model_hash": file_hash(params.model),
                "truth_hash": file_hash(params.truth), "manifest_hash": file_hash(params.manifest), "splits_hash": file_hash(params.splits),
                **tags}
    with tracked_run(tracker, EXPERIMENT, f"detect-{params.split}", tags=run_tags) as run_id:
        tracker.log_params(run_id, {**{f"detect.{k}": v for k, v in asdict(params.detect).items()}, "model": str(params.model),
                                    "split": params.split, "cases": metrics["cases"], "hit_radius_mm": params.hit_radius_mm})
        tracker.log_metrics(run_id, {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None})
        tracker.log_artifacts(run_id, out / "artifacts", artifact_path="reports")
        for name in ("metrics.json", "per_landmark.csv"):
            tracker.log_artifact(run_id, out / name, artifact_path="reports")
