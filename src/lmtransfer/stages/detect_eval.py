"""`lmtransfer detect-eval`: detection on the held-out test cases: error in mm, detection rate, false detections, figures."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lmtransfer.detection.detector import DetectConfig
from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_device, stage_params, write_headline, writes
from lmtransfer.tracking import Tracker

EXPERIMENT = "landmark-detection"
# what `dvc metrics show` prints (all of it: metrics.json beside it)
HEADLINE = {"found": "detection_rate", "median_mm": "median_error_mm"}

COMMAND = Command(
    name="detect-eval",
    help="detection on the held-out test cases: error in mm, detection rate, false detections, figures",
    description=(
        "Runs `detect` on every case of detect.split, scores against the landmark truth and logs the MLflow "
        "experiment landmark-detection. Resumes after an interruption."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section detect)"),
        option("--max-cases", type=int, help="evaluate only the first N cases of the split"),
        option("--out", help="report folder"),
        option("--quiet", action="store_true", help="no progress bars"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


@dataclass(frozen=True)
class DetectEvalParams:
    """The ``detect`` section of ``params.yaml`` (search settings in ``detect``)."""

    detect: DetectConfig = field(default_factory=DetectConfig)
    model: Path = Path("models/lm_cnn_lm60.pt")
    voter: str = "models/lm_voter.pt"  # "": no voting network, the coarse grid is scanned
    shape_model: Path = Path("models/landmark_shape.json")   # fitted on the training cases by this stage
    # a file in data.folder: every landmark with its in_image flag; "": ingest's manifest (no false detections counted)
    truth: str = "landmarks_truth.csv"
    split: str = "test"
    max_cases: int = 0                 # 0: every case of the split
    hit_radius_mm: float = 10.0
    overlay_case: str = ""             # "": the first evaluated case
    out_dir: Path = Path("reports/detection")
    track: bool = True


@dataclass(frozen=True)
class Paths(StagePaths):
    model: Path = reads()
    voter: Path | None = reads()
    manifest: Path = reads()
    images: Path = reads()
    truth: Path = reads()
    splits: Path = reads()
    shape_model: Path = writes()
    out_dir: Path = writes()


def paths(params, args) -> Paths:
    """The landmark CNN, ingest's manifest (and the volumes it lists), the truth and the case splits in;
    the shape model and the report folder out."""
    stage = params.detect
    return Paths(Path(stage.model), Path(stage.voter) if stage.voter else None, params.ingest.manifest, params.data.images,
                 Path(params.data.folder) / stage.truth if stage.truth else params.ingest.manifest, Path(params.split.out),
                 Path(stage.shape_model), Path(args.out or stage.out_dir))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.tracking import make_tracker

    params = stage_params(args)
    stage = params.detect
    if args.max_cases is not None:
        stage = replace(stage, max_cases=args.max_cases)
    metrics = evaluate(stage, paths(params, args), progress=not args.quiet, tracker=make_tracker(stage.track),
                       device=stage_device(args, params))
    print(f"detection on {metrics['cases']} {stage.split} cases: median error {metrics['median_error_mm']} mm, "
          f"90th percentile {metrics['p90_error_mm']} mm, detection rate {metrics['detection_rate']}, "
          f"false detections {metrics['false_detections']} of {metrics['landmarks_absent']} absent, "
          + (f"{metrics['seconds_per_volume']} s per volume" if "seconds_per_volume" in metrics else "every case kept from before"))
    print("worst five (median error, mm): " + ", ".join(f"{k} {v}" for k, v in metrics["worst_five"].items()))
    return 0


def evaluate(params: DetectEvalParams, where: Paths, progress: bool = True, tracker: Tracker | None = None, device="cpu") -> dict:
    """Detect on the cases of ``params.split`` (resuming in ``where.out_dir/detections``); write metrics,
    tables and figures into ``where.out_dir``; record a run with ``tracker``. Returns the metrics and timing."""
    import numpy as np
    import SimpleITK as sitk
    from tqdm.auto import tqdm

    from lmtransfer.detection.cases import detect_cases, detections_folder, fit_shape_model, image_paths
    from lmtransfer.detection.detector import LandmarkDetector
    from lmtransfer.detection.evaluate import load_truth, summarise
    from lmtransfer.detection.plots import error_boxplot, overlay

    splits = json.loads(_need(where.splits, "run `dvc repro patches`").read_text())
    if params.split not in splits:
        raise ValueError(f"{where.splits}: no split named {params.split!r} (has {sorted(splits)})")
    cases = list(splits[params.split])[: params.max_cases or None]
    if not cases:
        raise ValueError(f"{where.splits}: split {params.split!r} is empty")
    images = image_paths(_need(where.manifest, "run `dvc repro ingest`"), cases)
    shown = params.overlay_case or cases[0]
    if shown not in images:  # checked before minutes of detection, not after
        raise ValueError(f"detect.overlay_case {shown!r} is not among the evaluated cases")
    try:
        truth = load_truth(where.truth)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc} (detect.truth names a file in data.folder; \"\" scores against ingest's manifest)") from exc
    without = sorted(set(cases) - set(truth["case"]))
    if without:
        raise ValueError(f"{where.truth}: no landmark truth for case(s) {without}")
    shape = fit_shape_model(where.manifest, list(splits.get("train", [])), where.shape_model)
    detector = LandmarkDetector.from_checkpoint(_need(where.model, "run `dvc repro pretrain_60`"), params.detect, shape, device,
                                                voter=where.voter)
    folder = detections_folder(Path(where.out_dir) / "detections", where.model, where.shape_model, params.detect, where.voter)

    with tqdm(total=len(cases), desc="detect_eval", unit="case", disable=not progress) as bar:
        def on_case(case, table, elapsed):
            bar.update()
            if progress:
                took = f"{elapsed:.1f} s" if elapsed is not None else "kept from an earlier run"
                tqdm.write(f"{case}: {took}, {int(table['found'].sum())}/{len(table)} kinds found")

        scored, seconds = detect_cases(detector, images, truth, folder, progress, on_case)
    metrics, per_landmark = summarise(scored, params.hit_radius_mm)
    metrics.update({"landmark_kinds": len(detector.landmarks), "min_probability": params.detect.min_probability})
    # times go to the tracker and the console, not into the DVC outputs: those stay the same bytes run after run
    timing = {"seconds_per_volume": round(float(np.mean(seconds)), 2), "seconds_per_volume_max": round(float(np.max(seconds)), 2),
              "volumes_timed": len(seconds)} if seconds else {}
    worst = per_landmark.dropna(subset=["median_error_mm"]).head(5)
    metrics["worst_five"] = {r.landmark: round(float(r.median_error_mm), 1) for r in worst.itertuples()}

    out, artifacts = Path(where.out_dir), Path(where.out_dir) / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_headline(metrics, HEADLINE, out / HEADLINE_JSON)
    per_landmark.to_csv(out / "per_landmark.csv", index=False, float_format="%.2f")
    scored.to_csv(artifacts / "errors_per_case.csv", index=False, float_format="%.3f")
    error_boxplot(scored, artifacts / "error_by_group.png", params.hit_radius_mm)
    overlay(sitk.ReadImage(str(images[shown])), scored[scored["case"] == shown], truth[truth["case"] == shown],
            artifacts / f"overlay_{shown}.png")
    if tracker is not None and tracker.enabled:
        _track(tracker, params, where, {**metrics, **timing}, out)
    return {**metrics, **timing}


def _need(path: Path, hint: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; {hint}")
    return path


def _track(tracker: Tracker, params: DetectEvalParams, where: Paths, metrics: dict, out: Path) -> None:
    from lmtransfer.sampling.cache import file_hash
    from lmtransfer.tracking import git_commit, tracked_run

    run_tags = {"git_commit": git_commit(), "seed": "none (deterministic search)", "model_hash": file_hash(where.model),
                "truth_hash": file_hash(where.truth), "manifest_hash": file_hash(where.manifest), "splits_hash": file_hash(where.splits)}
    with tracked_run(tracker, EXPERIMENT, f"detect-{params.split}", tags=run_tags) as run_id:
        tracker.log_params(run_id, {**{f"detect.{k}": v for k, v in asdict(params.detect).items()}, "model": str(where.model),
                                    "split": params.split, "cases": metrics["cases"], "hit_radius_mm": params.hit_radius_mm})
        tracker.log_metrics(run_id, {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None})
        tracker.log_artifacts(run_id, out / "artifacts", artifact_path="reports")
        for name in ("metrics.json", "per_landmark.csv"):
            tracker.log_artifact(run_id, out / name, artifact_path="reports")
