"""`lmtransfer train-voter`: the detector's voting network (which landmarks lie within reach, and where)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmtransfer.detection.voting import VoterConfig
from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_device, stage_params, write_headline, writes

EXPERIMENT = "landmark-voter"
# one column, shared with detection's median error (what `dvc metrics show` prints; all of it in metrics.json)
HEADLINE = {"median_mm": "test_offset_median_mm"}

COMMAND = Command(
    name="train-voter",
    help="train the detector's voting network on patches near the training landmarks",
    description=(
        "Cuts patches at points round every landmark of the training cases (and at body points), trains the "
        "offset-voting network the detector's coarse pass uses (detect.voter), early-stopped on the validation "
        "cases, and reports its presence F1 and offset error on the test cases; logs the MLflow experiment "
        "landmark-voter."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section voter)"),
        option("--quiet", action="store_true", help="no progress bars"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


@dataclass(frozen=True)
class VoterParams:
    """The ``voter`` section of ``params.yaml`` (network and sampling settings in ``voter``)."""

    voter: VoterConfig = field(default_factory=VoterConfig)
    model: Path = Path("models/lm_voter.pt")
    reports_dir: Path = Path("reports/voter")
    workers: int = 2
    track: bool = True


@dataclass(frozen=True)
class Paths(StagePaths):
    manifest: Path = reads()
    images: Path = reads()
    splits: Path = reads()
    model: Path = writes()
    reports: Path = writes()


def paths(params, args) -> Paths:
    """Ingest's manifest (and the volumes it lists) and the case splits in; the checkpoint and reports out."""
    stage = params.voter
    return Paths(params.ingest.manifest, params.data.images, Path(params.split.out), Path(stage.model), Path(stage.reports_dir))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    import pandas as pd
    from tqdm.auto import tqdm

    from lmtransfer.detection.voting import cut_cases, evaluate_voter, train_voter
    from lmtransfer.io.manifest import read_manifest
    from lmtransfer.models.checkpoint import ModelCard, save_checkpoint
    from lmtransfer.sampling.cache import file_hash
    from lmtransfer.tracking import git_commit, make_tracker, tracked_run

    params = stage_params(args)
    device = stage_device(args, params)
    stage, where = params.voter, paths(params, args)
    cfg = stage.voter
    for path, hint in ((where.manifest, "dvc repro ingest"), (where.splits, "dvc repro patches")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: not found; run `{hint}`")
    manifest = read_manifest(where.manifest)
    splits = json.loads(Path(where.splits).read_text())
    names = sorted(manifest.loc[manifest["case"].isin(splits["train"]), "landmark"].dropna().unique())
    data = {}
    for split in ("train", "val", "test"):
        with tqdm(total=len(splits[split]), desc=f"voter patches ({split})", unit="case", disable=args.quiet) as bar:
            data[split] = cut_cases(manifest, list(splits[split]), names, cfg, stage.workers, on_case=lambda _: bar.update())
        print(f"{split}: {len(data[split])} patches from {len(splits[split])} cases")
    model, history = train_voter(data["train"], data["val"], cfg, progress=None if args.quiet else print, device=device)
    test = {f"test_{k.removeprefix('val_')}": round(v, 4) for k, v in evaluate_voter(model, data["test"], cfg).items()}
    best = history[history["best"]].iloc[0]
    metrics = {**test, "epochs": int(len(history)), "best_epoch": int(best["epoch"]), "landmark_kinds": len(names),
               "train_patches": len(data["train"]),   # the chosen model on every validation patch (epochs saw a subset)
               "val_offset_median_mm": round(evaluate_voter(model, data["val"], cfg)["val_offset_median_mm"], 3)}

    card = ModelCard(
        architecture="mini-VGG-voter", config=model.config, class_names=tuple(names),
        normalisation={"hu_window": [cfg.hu_low, cfg.hu_high]}, patch={"fov_mm": cfg.fov_mm, "pixels": cfg.pixels},
        training_data={"manifest": file_hash(where.manifest), "splits": file_hash(where.splits)},
        pretraining=f"offset voting: presence within {cfg.reach_mm:g} mm and LPS offset of every landmark kind",
        features="outputs: L presence logits, then L x 3 offsets in units of reach_mm (OffsetVoter.split)")
    save_checkpoint(where.model, model, card)
    reports = Path(where.reports)
    reports.mkdir(parents=True, exist_ok=True)
    history.to_csv(reports / "history.csv", index=False, float_format="%.5f")
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_headline(metrics, HEADLINE, reports / HEADLINE_JSON)
    tracker = make_tracker(stage.track)
    if tracker.enabled:
        tags = {"git_commit": git_commit(), "seed": str(cfg.seed), "manifest_hash": file_hash(where.manifest),
                "splits_hash": file_hash(where.splits)}
        with tracked_run(tracker, EXPERIMENT, "voter", tags=tags) as run_id:
            tracker.log_params(run_id, {f"voter.{k}": v for k, v in asdict(cfg).items()})
            tracker.log_metrics(run_id, {k: float(v) for k, v in metrics.items()})
            for name in ("metrics.json", "history.csv"):
                tracker.log_artifact(run_id, reports / name, artifact_path="reports")
    print(f"voter: test offset error median {metrics['test_offset_median_mm']} mm (90th percentile {metrics['test_offset_p90_mm']}), "
          f"presence F1 {metrics['test_presence_f1']}, {metrics['epochs']} epochs")
    return 0

