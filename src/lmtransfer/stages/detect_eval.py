"""`lmtransfer detect-eval`: detection on the held-out test cases: error in mm, detection rate, false detections, figures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lmtransfer.stages import Command, option, stage_device, stage_params

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


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.detection.run import run_detect_eval
    from lmtransfer.tracking import make_tracker

    params = stage_params(args)
    stage = params.detect
    overrides = {k: v for k, v in {"max_cases": args.max_cases, "out_dir": Path(args.out) if args.out else None}.items() if v is not None}
    metrics = run_detect_eval(replace(stage, **overrides), progress=not args.quiet, tracker=make_tracker(stage.track),
                              device=stage_device(args, params))
    print(f"detection on {metrics['cases']} {stage.split} cases: median error {metrics['median_error_mm']} mm, "
          f"90th percentile {metrics['p90_error_mm']} mm, detection rate {metrics['detection_rate']}, "
          f"false detections {metrics['false_detections']} of {metrics['landmarks_absent']} absent, "
          + (f"{metrics['seconds_per_volume']} s per volume" if "seconds_per_volume" in metrics else "every case kept from before"))
    print("worst five (median error, mm): " + ", ".join(f"{k} {v}" for k, v in metrics["worst_five"].items()))
    return 0
