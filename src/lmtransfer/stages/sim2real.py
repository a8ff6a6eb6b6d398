"""`lmtransfer sim2real`: the phantom-trained landmark CNN on the real CTs, scored against landmarks derived from their segmentations."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_device, stage_params, write_headline, writes

EXPERIMENT = "sim2real"
SHARED = Path("../shared/data")
# what `dvc metrics show` prints: `top1` and the detection columns sit beside the phantom's own figures
HEADLINE = {"top1": "patch_top1", "specificity": "background_specificity", "found": "detected",
            "median_mm": "detection_median_error_mm"}

COMMAND = Command(
    name="sim2real",
    help="the landmark CNN on real CTs: patch top-1 at landmarks derived from their segmentations, specificity, detection",
    description=(
        "For each real CT of sim2real (default: the two in ../shared/data) the landmarks its segmentation allows are "
        "derived (see landmarks-from-seg); the landmark CNN classifies patches cut there and at random body points far "
        "from them, and detects every kind in the whole volume. The real scans are never trained on."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (sections sim2real, detect)"),
        option("--out", help="report folder"),
        option("--quiet", action="store_true", help="no progress bars"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


@dataclass(frozen=True)
class Sim2RealParams:
    """The ``sim2real`` section: real cases (one entry per case in each of the four lists) and the scoring."""

    names: tuple[str, ...] = ("abdomen_pelvis", "upper_abdomen")
    images: tuple[Path, ...] = (SHARED / "real_abdomen_ct/ct.nii.gz", SHARED / "real_ct_dicom")
    segmentations: tuple[Path, ...] = (SHARED / "real_abdomen_ct/seg_totalsegmentator_v1.nii.gz", SHARED / "real_ct_dicom_seg.nii.gz")
    label_tables: tuple[str, ...] = (str(SHARED / "real_abdomen_ct/labels_totalsegmentator_v1.csv"), "totalsegmentator_v2")
    model: Path = Path("models/lm_cnn_lm60.pt")
    shape_model: Path = Path("models/landmark_shape.json")
    background_per_case: int = 200
    background_min_distance_mm: float = 30.0
    seed: int = 0
    hit_radius_mm: float = 10.0
    out_dir: Path = Path("reports/sim2real")
    track: bool = True

    def __post_init__(self) -> None:
        lengths = {len(self.names), len(self.images), len(self.segmentations), len(self.label_tables)}
        if len(lengths) != 1:
            raise ValueError("sim2real: names, images, segmentations and label_tables need one entry per case each")


@dataclass(frozen=True)
class Paths(StagePaths):
    model: Path = reads()
    shape_model: Path = reads()
    images: tuple[Path, ...] = reads()
    segmentations: tuple[Path, ...] = reads()
    out_dir: Path = writes()


def paths(params, args) -> Paths:
    """The landmark CNN, detect_eval's shape model and the real cases in; the report folder out."""
    stage = params.sim2real
    return Paths(Path(stage.model), Path(stage.shape_model), tuple(map(Path, stage.images)), tuple(map(Path, stage.segmentations)),
                 Path(args.out or stage.out_dir))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.tracking import make_tracker

    params = stage_params(args)
    metrics = evaluate(params.sim2real, params.detect.detect, paths(params, args), stage_device(args, params),
                       progress=not args.quiet, tracker=make_tracker(params.sim2real.track))
    if not metrics["cases"]:
        print("sim2real: none of the real cases is on this machine; nothing measured")
        return 0
    print(f"sim2real on {metrics['cases']} real CT(s), {metrics['landmarks']} derived landmarks: patch top-1 {metrics['patch_top1']}, "
          f"top-5 {metrics['patch_top5']}, called background {metrics['landmark_called_background']}; background "
          f"specificity {metrics['background_specificity']} ({metrics['background_points']} points); detected "
          f"{metrics['detected']}, within {metrics['hit_radius_mm']:g} mm {metrics['detected_within_radius']}, "
          f"median error {metrics['detection_median_error_mm']} mm")
    return 0


def evaluate(params: Sim2RealParams, detect_config, where: Paths, device, progress: bool = True, tracker=None) -> dict:
    """Score the model on every real case present; write metrics, tables and overlays into ``where.out_dir``."""
    import pandas as pd
    import SimpleITK as sitk

    from lmtransfer.anatomy.derive import derive_landmarks
    from lmtransfer.anatomy.labels import LabelTable
    from lmtransfer.detection.detector import LandmarkDetector
    from lmtransfer.detection.plots import overlay
    from lmtransfer.detection.shape import ShapeModel
    from lmtransfer.detection.sim2real import evaluate_case, summarise
    from lmtransfer.io.coords import Geometry
    from lmtransfer.io.volumes import read_volume

    if not where.model.exists():
        raise FileNotFoundError(f"{where.model}: landmark model not found; run `dvc repro pretrain_60`")
    shape = ShapeModel.load(where.shape_model) if where.shape_model.exists() else None
    detector = LandmarkDetector.from_checkpoint(where.model, detect_config, shape, device)
    out, artifacts = where.out_dir, where.out_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    results, derivations = [], []
    for name, image_path, seg_path, table in zip(params.names, where.images, where.segmentations, params.label_tables):
        if not (image_path.exists() and seg_path.exists()):
            print(f"sim2real: {name}: {image_path if not image_path.exists() else seg_path} is not here; case left out")
            continue
        derived, summary = derive_landmarks(read_volume(seg_path), LabelTable.resolve(table))
        if summary["inconsistencies"]:
            raise ValueError(f"{seg_path}: landmarks derived with {table} contradict anatomy: {summary['inconsistencies']}")
        derivations.append(derived.assign(case=name))
        image = read_volume(image_path)
        volume = sitk.GetArrayViewFromImage(image).T
        result = evaluate_case(detector, name, volume, Geometry.from_sitk(image), derived[derived["derived"]],
                               params.background_per_case, params.background_min_distance_mm, params.seed, progress)
        del volume
        results.append(result)
        if len(result.detection):
            overlay(image, result.detection, result.truth, artifacts / f"overlay_{name}.png")
    metrics = summarise(results, params.hit_radius_mm) if results else {"cases": 0}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_headline(metrics, HEADLINE, out / HEADLINE_JSON)
    if results:
        pd.concat([r.patches for r in results]).to_csv(out / "patches.csv", index=False, float_format="%.3f")
        pd.concat([r.detection for r in results]).to_csv(out / "detection.csv", index=False, float_format="%.3f")
        pd.concat([r.background for r in results]).to_csv(artifacts / "background.csv", index=False, float_format="%.3f")
        pd.concat(derivations).to_csv(artifacts / "derived_landmarks.csv", index=False, float_format="%.3f")
    else:
        for name in ("patches.csv", "detection.csv"):
            (out / name).write_text("")
    if tracker is not None and tracker.enabled and results:
        _track(tracker, params, where, metrics)
    return metrics


def _track(tracker, params: Sim2RealParams, where: Paths, metrics: dict) -> None:
    from lmtransfer.sampling.cache import file_hash
    from lmtransfer.tracking import git_commit, tracked_run

    tags = {"git_commit": git_commit(), "seed": params.seed, "model_hash": file_hash(where.model),
            **{f"image_hash.{n}": file_hash(p) for n, p in zip(params.names, where.images) if p.is_file()},
            **{f"segmentation_hash.{n}": file_hash(p) for n, p in zip(params.names, where.segmentations) if p.is_file()}}
    with tracked_run(tracker, EXPERIMENT, "sim2real", tags=tags) as run_id:
        tracker.log_params(run_id, {k: str(v) for k, v in asdict(params).items() if k not in ("out_dir", "track")})
        tracker.log_metrics(run_id, {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None})
        tracker.log_artifacts(run_id, where.out_dir / "artifacts", artifact_path="reports")
        for name in ("metrics.json", "patches.csv", "detection.csv"):
            tracker.log_artifact(run_id, where.out_dir / name, artifact_path="reports")
