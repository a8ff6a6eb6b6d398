"""`lmtransfer tune`: Optuna search of patch size, depth, width, learning rate and weight decay."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from lmtransfer.stages import Command, option, stage_device, stage_params

COMMAND = Command(
    name="tune",
    help="Optuna search of patch size, depth, width, learning rate and weight decay",
    description=(
        "Run or resume the Optuna study in `tune` of params.yaml: each trial trains briefly on the patch "
        "cache of its field of view (built on first use) and is scored by validation top-1; poor trials are "
        "pruned. Trials, plots and the fov x depth table go to reports/tune and MLflow (experiment landmark-"
        "tuning, one parent run per study, nested runs per trial). The best setting is written back into "
        "params.yaml."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (sections tune, patches, split, pretrain)"),
        option("--workers", type=int, default=1, help="parallel worker processes on this machine (default 1)"),
        option("--n-trials", type=int, help="finished trials to reach (overrides tune.n_trials)"),
        option("--timeout-s", type=float, help="stop starting trials after this many seconds"),
        option("--storage", help="Optuna RDB URL (overrides tune.storage), e.g. postgresql://user@host/db"),
        option("--study-name", help="study name (overrides tune.study_name)"),
        option("--dry-run", action="store_true", help="do not write the best setting into params.yaml"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


def print_trial(study, trial) -> None:
    """One line per finished trial (runs in the worker processes: module-level so it travels to them)."""
    from lmtransfer.tuning.search import state_name

    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    seconds = trial.user_attrs.get("seconds")
    print(f"  trial {trial.number:3d} {state_name(trial):9s} val top-1 {value}  {trial.params}"
          + (f"  {seconds:.0f} s" if seconds else ""), flush=True)


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.tracking import make_tracker, redact_url
    from lmtransfer.tuning.apply import apply_best
    from lmtransfer.tuning.reports import write_reports
    from lmtransfer.tuning.search import TuneInputs, finish_parent, run_study

    params = stage_params(args)
    cfg = params.tune
    overrides = {k: v for k, v in {"n_trials": args.n_trials, "timeout_s": args.timeout_s, "storage": args.storage,
                                    "study_name": args.study_name}.items() if v is not None}
    cfg = replace(cfg, **overrides)
    manifest = params.ingest.manifest
    split_path = Path(params.split.out)
    for needed in (manifest, split_path):
        if not needed.exists():
            raise FileNotFoundError(f"{needed}: not found; run `dvc repro patches` first (make tune does)")
    inputs = TuneInputs(manifest, json.loads(split_path.read_text()), params.patches.patch, params.pretrain.train,
                        params.pretrain.class_order_seed, threads=params.compute.threads, reuse_caches=(Path(params.patches.out_dir),),
                        device=str(stage_device(args, params)))
    tracker = make_tracker(params.pretrain.track)
    done = run_study(cfg, inputs, workers=args.workers, tracker=tracker, on_trial=print_trial)
    if done.recovered:
        print(f"trial(s) {done.recovered} were left running by a killed process: failed and queued again")
    print(f"study {cfg.study_name!r} at {redact_url(cfg.storage)}: {done.finished_before} of {cfg.n_trials} trials had "
          "finished before this run")
    summary = write_reports(done.study, cfg.reports, report=print)
    summary["wall_seconds_this_run"] = round(done.seconds, 1)
    (Path(cfg.reports) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    finish_parent(tracker, done.parent_run, summary, cfg.reports)
    print(f"trials: {summary['trials']} ({summary['complete']} complete, {summary['pruned']} pruned, {summary['failed']} failed); "
          f"reports in {cfg.reports}")
    if "best_params" not in summary:
        print("no complete trial yet: params.yaml unchanged")
        return 0
    print(f"best: trial {summary['best_trial']}, validation top-1 {summary['best_val_top1']:.4f}, {summary['best_params']}")
    if cfg.apply_best and not args.dry_run:
        changes = apply_best(Path(args.params), summary["best_params"])
        changed = {k: v for k, v in changes.items() if v[0] != v[1]}
        print(f"{args.params}: " + (", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) if changed else "already the best setting")
              + "; `dvc repro` retrains with it, `dvc params diff` shows the change")
    return 0
