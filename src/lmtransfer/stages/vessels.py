"""`lmtransfer vessels`: extract vessels from MRA volumes (Hessian vesselness + region growing) and score them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_params, write_headline, writes
from lmtransfer.transfer.vessels import VesselConfig

COMMAND = Command(
    name="vessels",
    help="extract vessels from MRA volumes (Hessian vesselness + region growing) and score them",
    description=(
        "Multi-scale Frangi vesselness seeds grown to the half-maximum edge of the lumen; one mask per volume"
        " in data/vessels/masks, Dice against the phantom's vessel labels when present."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section vessels)"),
        option("--images", help="folder of .nii.gz MRA volumes"),
        option("--out", help="output folder"),
        option("--workers", type=int, help="processes"),
        option("--quiet", action="store_true", help="no progress bar"),
    ),
)


@dataclass(frozen=True)
class VesselsParams:
    """The ``vessels`` section of params.yaml."""

    vessel: VesselConfig = field(default_factory=VesselConfig)
    images: Path = Path("data/phantom_mra/images")
    truth: Path = Path("data/phantom_mra/labels")   # scored when present (phantom labels 5, 6)
    out_dir: Path = Path("data/vessels")
    reports: Path = Path("reports/vessels")
    workers: int = 2


@dataclass(frozen=True)
class Paths(StagePaths):
    images: Path = reads()
    truth: Path | None = reads()
    out_dir: Path = writes()
    reports: Path = writes()


def paths(params, args) -> Paths:
    """The volumes (and vessel labels, where there are any) in; the masks and the Dice report out."""
    stage = params.vessels
    truth = Path(stage.truth) if stage.truth and Path(stage.truth).exists() else None
    return Paths(Path(args.images or stage.images), truth, Path(args.out or stage.out_dir), Path(stage.reports))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.transfer.vessels import extract_dataset

    everything = stage_params(args)
    params, where = everything.vessels, paths(everything, args)
    start = time.perf_counter()
    table = extract_dataset(where.images, where.out_dir, params.vessel, where.truth, workers=args.workers or params.workers,
                            progress=not args.quiet)
    reports = where.reports
    reports.mkdir(parents=True, exist_ok=True)
    table.to_csv(reports / "extraction.csv", index=False)
    metrics = {"cases": len(table),
               "mean_vessel_voxels": round(float(table["vessel_voxels"].mean()), 1)}
    if "dice" in table:
        metrics.update(dice_mean=round(float(table["dice"].mean()), 4), dice_min=round(float(table["dice"].min()), 4),
                       dice_median=round(float(table["dice"].median()), 4))
        if "aneurysm_voxels_found" in table and table["aneurysm_voxels_found"].notna().any():
            metrics["aneurysm_voxels_found_mean"] = round(float(table["aneurysm_voxels_found"].mean()), 4)
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_headline(metrics, {"cases": "cases", "dice": "dice_mean"}, reports / HEADLINE_JSON)
    print(f"vessel masks for {len(table)} cases" + (f"; Dice mean {metrics['dice_mean']:.3f} (min {metrics['dice_min']:.3f})"
                                                     if "dice_mean" in metrics else "")
          + f"; {reports / 'metrics.json'} ({time.perf_counter() - start:.0f} s)")
    return 0
