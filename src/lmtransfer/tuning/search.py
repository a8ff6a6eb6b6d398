"""`make tune`: an Optuna study of patch field of view, depth, width, learning rate and weight decay.

The objective is the best validation top-1 of a short training run (never the test cases).
Trials report every epoch so the pruner can stop poor ones; trials with the same patch field
of view share one patch cache. The study lives in an RDB (SQLite inside the project by
default), so a killed run resumes with every finished trial kept, and several processes or
machines can work on one study.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from lmtransfer.sampling.cache import PatchCacheConfig, build_patch_cache, file_hash, load_cache
from lmtransfer.devices import resolve_device
from lmtransfer.io.manifest import read_manifest
from lmtransfer.parallel import process_pool
from lmtransfer.tracking import NullTracker, Tracker, git_commit, local_store, make_tracker, redact_url
from lmtransfer.tracking import run_status as _run_status
from lmtransfer.training.data import select
from lmtransfer.training.pretrain import step_classes
from lmtransfer.training.train import TrainConfig, train_model

EXPERIMENT = "landmark-tuning"


@dataclass(frozen=True)
class TuneConfig:
    """Search space and budget (``tune`` in ``params.yaml``)."""

    study_name: str = "lm-cnn-search"
    storage: str = "sqlite:///optuna/tune.db"
    n_trials: int = 16
    timeout_s: float = 2700.0
    landmarks: int = 60
    max_epochs: int = 5
    patience: int = 3
    epoch_patches: int = 4000
    fov_mm_choices: tuple[float, ...] = (32.0, 48.0, 64.0)
    depth_choices: tuple[int, ...] = (2, 3, 4)
    width_choices: tuple[int, ...] = (8, 16, 32)
    lr_range: tuple[float, ...] = (3e-4, 3e-3)
    weight_decay_range: tuple[float, ...] = (1e-5, 1e-3)
    pruner_startup_trials: int = 4
    pruner_warmup_epochs: int = 2
    seed: int = 0
    cache_dir: Path = Path("data/tune_patches")
    reports: Path = Path("reports/tune")
    apply_best: bool = True

    def __post_init__(self) -> None:
        for name in ("lr_range", "weight_decay_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"tune.{name}: expected [low, high] with 0 < low <= high, got {[low, high]}")
        for name in ("fov_mm_choices", "depth_choices", "width_choices"):
            if not getattr(self, name):
                raise ValueError(f"tune.{name}: at least one choice is needed")
        if self.n_trials < 1 or self.max_epochs < 1:
            raise ValueError("tune.n_trials and tune.max_epochs must be at least 1")


class BudgetReached(ValueError):
    """Parallel workers: the trial would exceed ``n_trials``; it ends as FAIL, marked ``cancelled``."""


def _budget_taken(trial, n_trials: int) -> bool:
    """True when ``n_trials`` trials numbered before this one are finished or running, so a second
    worker that started a trial at the same moment as the last one does not overshoot the cap."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    earlier = sum(t.number < trial.number for t in trial.study.get_trials(deepcopy=False, states=states))
    if earlier >= n_trials:
        trial.set_user_attr("cancelled", True)
        return True
    return False


@dataclass(frozen=True)
class TuneInputs:
    """What every trial reads: the manifest, the case split, and the base settings it varies."""

    manifest: Path
    splits: dict
    patch: PatchCacheConfig
    train: TrainConfig
    class_order_seed: int
    threads: int = 1
    parent_run: str | None = None      # the study's tracker run; trials are recorded under it when set
    device: str = "cpu"                 # compute.device, resolved in each worker process
    reuse_caches: tuple[Path, ...] = ()


def suggest(trial, cfg: TuneConfig, base_patch: PatchCacheConfig, base_train: TrainConfig) -> tuple[PatchCacheConfig, TrainConfig]:
    """The trial's patch and training settings (the budget knobs replace the pre-training ones)."""
    patch = replace(base_patch, fov_mm=float(trial.suggest_categorical("fov_mm", list(cfg.fov_mm_choices))))
    train = replace(
        base_train,
        depth=int(trial.suggest_categorical("depth", list(cfg.depth_choices))),
        width=int(trial.suggest_categorical("width", list(cfg.width_choices))),
        lr=trial.suggest_float("lr", *cfg.lr_range, log=True),
        weight_decay=trial.suggest_float("weight_decay", *cfg.weight_decay_range, log=True),
        max_epochs=cfg.max_epochs, patience=cfg.patience, epoch_patches=cfg.epoch_patches,
    )
    return patch, train


def cache_for(patch: PatchCacheConfig, manifest: Path, root: Path, workers: int = 1, reuse: tuple[Path, ...] = ()) -> Path:
    """The patch cache of one patch setting, built on first use.

    A finished cache in ``reuse`` with the same settings and manifest (the pipeline's own
    ``data/patches``) is used as it is. A file lock keeps parallel workers from building the same
    cache twice: the second waits, then reads it.
    """
    key = patch.key(file_hash(manifest))
    for folder in reuse:
        info = Path(folder) / "cache.json"
        if info.exists() and json.loads(info.read_text()).get("key") == key and (Path(folder) / "patches.npy").exists():
            return Path(folder)
    folder = Path(root) / f"fov{patch.fov_mm:g}mm_{patch.pixels}px"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            build_patch_cache(read_manifest(manifest), file_hash(manifest), patch, folder, workers=workers, progress=False)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


def objective(trial, cfg: TuneConfig, inputs: TuneInputs) -> float:
    """Best validation top-1 of a short training run; reports each epoch and may be pruned."""
    import optuna

    if _budget_taken(trial, cfg.n_trials):
        trial.study.stop()
        raise BudgetReached(f"trial {trial.number} not run: {cfg.n_trials} trials are finished or running")
    trial.set_user_attr("owner", process_owner())
    patch, train_cfg = suggest(trial, cfg, inputs.patch, inputs.train)
    train_cfg = replace(train_cfg, threads=inputs.threads)
    start = time.perf_counter()
    patches, index = load_cache(cache_for(patch, inputs.manifest, cfg.cache_dir, inputs.threads, inputs.reuse_caches))
    class_names = step_classes(index, "name", inputs.splits["train"], cfg.landmarks, inputs.class_order_seed)
    train = select(patches, index, inputs.splits["train"], class_names, "all")
    val = select(patches, index, inputs.splits["val"], class_names, "clean")
    run = _TrialRun(inputs.parent_run, trial, patch, train_cfg)
    if run.run_id:
        trial.set_user_attr("mlflow_run", run.run_id)

    def on_epoch(epoch: int, values: dict) -> None:
        run.log_epoch(epoch, values)
        trial.report(values["val_top1"], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} (val top-1 {values['val_top1']:.3f})")

    try:
        _, history = train_model(train, val, train_cfg, on_epoch=on_epoch, progress=None, device=resolve_device(inputs.device))
    except optuna.TrialPruned:
        run.finish("PRUNED", time.perf_counter() - start)
        raise
    except BaseException as exc:
        run.finish("FAILED", time.perf_counter() - start, status=_run_status(exc))
        raise
    best = float(history["val_top1"].max())
    trial.set_user_attr("seconds", time.perf_counter() - start)
    trial.set_user_attr("epochs", int(len(history)))
    run.finish("COMPLETE", time.perf_counter() - start, best)
    return best


class _TrialRun:
    """A nested tracker run for one trial (by run id, so any worker process can record it)."""

    def __init__(self, parent_id: str | None, trial, patch: PatchCacheConfig, train: TrainConfig):
        self.tracker = make_tracker(parent_id is not None)
        self.run_id = self.tracker.start_run(EXPERIMENT, f"trial-{trial.number:03d}", parent=parent_id,
                                             tags={"optuna.trial": trial.number}) or None
        self.tracker.log_params(self.run_id, {"patch.fov_mm": patch.fov_mm, **{f"train.{k}": v for k, v in asdict(train).items()}})

    def log_epoch(self, epoch: int, values: dict) -> None:
        self.tracker.log_metrics(self.run_id, values, epoch)

    def finish(self, state: str, seconds: float, best: float | None = None, status: str | None = None) -> None:
        self.tracker.set_tags(self.run_id, {"state": state})
        self.tracker.log_metrics(self.run_id, {"trial_seconds": seconds, "best_val_top1": best})
        self.tracker.end_run(self.run_id, status or ("FINISHED" if state != "FAILED" else "FAILED"))


def process_owner(pid: int | None = None) -> dict:
    """Who runs a trial: host, process id and the process's start time (pids are reused)."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "started": _process_started(pid)}


def _process_started(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]  # field 22: start time in ticks
    except (OSError, IndexError):
        return None


def _owner_is_gone(owner: dict | None) -> bool:
    """True only when the owner ran on this machine and that process no longer exists."""
    if not owner or owner.get("host") != socket.gethostname():
        return False  # another machine: Optuna's heartbeat decides
    started = _process_started(int(owner["pid"]))
    return started is None or (owner.get("started") is not None and started != owner["started"])


def recover_dead_trials(study, tracker: Tracker | None = None) -> list[int]:
    """Trials left RUNNING by a killed process of this machine are failed at once (not after the
    heartbeat's grace period) and queued again with the same parameters; the MLflow runs of failed
    trials that are still RUNNING are marked KILLED. Returns the numbers of the recovered trials."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _owner_is_gone(trial.user_attrs.get("owner")):
            try:
                failed = study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # another worker recovered it since the list was read: it queued the retry
            if failed:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                recovered.append(trial.number)
    tracker = tracker or NullTracker()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = trial.user_attrs.get("mlflow_run")
        if run_id and tracker.status(run_id) == "RUNNING":
            tracker.set_tags(run_id, {"state": "KILLED"})
            tracker.end_run(run_id, "KILLED")
    return recovered


def position_seeded_tpe(seed: int, **kwargs):
    """A TPE sampler whose random draws for a trial depend only on ``seed`` and the trial's position
    among the study's non-failed trials, so a study that was killed, recovered and resumed draws
    exactly what an uninterrupted one would (Optuna's own seeding follows the process instead)."""
    import optuna
    from optuna.trial import TrialState

    class Sampler(optuna.samplers.TPESampler):
        def before_trial(self, study, trial):
            position = sum(t.number < trial.number and t.state != TrialState.FAIL for t in study.get_trials(deepcopy=False))
            state = (seed * 1_000_003 + position) % 2**32
            self._rng.rng.seed(state)
            self._random_sampler._rng.rng.seed(state)
            super().before_trial(study, trial)

    return Sampler(seed=seed, **kwargs)


def open_study(cfg: TuneConfig):
    """Create or load the study. Trials of a killed process are failed after a heartbeat grace
    period and re-queued with the same parameters."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = local_store(cfg.storage)  # one study for every DVC experiment and worker of the project
    if url.startswith("sqlite:////"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable in practice since v2.8
        storage = RDBStorage(url, heartbeat_interval=20, grace_period=60,
                             heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
                             engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)
    return optuna.create_study(
        study_name=cfg.study_name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=position_seeded_tpe(cfg.seed, n_startup_trials=min(8, cfg.n_trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=cfg.pruner_warmup_epochs),
    )


def _worker(cfg: TuneConfig, inputs: TuneInputs, worker: int, on_trial: Callable | None = None) -> int:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # draws depend on the seed, the worker and the trial's position in the study, so a resumed
    # study continues where it stopped and parallel workers do not repeat each other
    study = open_study(replace(cfg, seed=cfg.seed + 1000 * worker))
    done = MaxTrialsCallback(cfg.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    study.optimize(lambda trial: objective(trial, cfg, inputs), timeout=cfg.timeout_s, callbacks=[done] + ([on_trial] if on_trial else []),
                   catch=(ValueError,))
    return worker


def state_name(trial) -> str:
    """The trial's state; CANCELLED for a trial a parallel worker stopped at the budget."""
    return "CANCELLED" if trial.user_attrs.get("cancelled") else trial.state.name


def finished(study) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


@dataclass(frozen=True)
class StudyRun:
    """What :func:`run_study` leaves: the study, the trials recovered from killed processes, the
    study's tracker run (still open: close it with :func:`finish_parent` once the reports are
    written) and the wall time of this call."""

    study: object
    recovered: list[int]
    finished_before: int
    parent_run: str | None
    seconds: float


def run_study(cfg: TuneConfig, inputs: TuneInputs, workers: int = 1, tracker: Tracker | None = None,
              on_trial: Callable | None = None) -> StudyRun:
    """Run (or resume) the study with ``workers`` processes until ``n_trials`` trials have finished
    or ``timeout_s`` passed. ``inputs.threads`` CPU threads are shared among the workers.
    ``on_trial(study, trial)`` is called in the worker after each trial (a module-level function:
    it travels to spawned workers by name)."""
    study = open_study(cfg)
    tracker = tracker or NullTracker()
    recovered = recover_dead_trials(study, tracker)
    already = finished(study)
    parent = _parent_run(tracker, study, cfg, inputs) if tracker.enabled else None
    inputs = replace(inputs, threads=max(1, inputs.threads // workers), parent_run=parent)
    start = time.perf_counter()
    try:
        if already < cfg.n_trials:
            if workers == 1:
                _worker(cfg, inputs, 0, on_trial)
            else:
                with process_pool(workers, multiprocessing.get_context("spawn")) as pool:
                    list(pool.map(_worker, [cfg] * workers, [inputs] * workers, range(workers), [on_trial] * workers))
    except BaseException as exc:
        if parent:
            tracker.end_run(parent, _run_status(exc))
        raise
    return StudyRun(open_study(cfg), recovered, already, parent, time.perf_counter() - start)


def _parent_run(tracker: Tracker, study, cfg: TuneConfig, inputs: TuneInputs) -> str:
    """The study's run. Its id is kept in the study itself, so a resumed study records into the same
    run (reopened) and a new study of the same name gets a new one."""
    known = study.user_attrs.get("mlflow_parent_run")
    if known and tracker.reopen(known):
        return known
    run_id = tracker.start_run(EXPERIMENT, f"study-{cfg.study_name}", tags={
        "optuna_study": cfg.study_name, "optuna_storage": redact_url(cfg.storage), "git_commit": git_commit(), "seed": cfg.seed,
        "data.manifest_sha256": file_hash(inputs.manifest), "data.splits_sha256": _splits_hash(inputs.splits)})
    tracker.log_params(run_id, {f"tune.{k}": redact_url(v) if k == "storage" else v for k, v in asdict(cfg).items()})
    study.set_user_attr("mlflow_parent_run", run_id)
    return run_id


def _splits_hash(splits: dict) -> str:
    import hashlib

    text = json.dumps({k: sorted(v) for k, v in splits.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finish_parent(tracker: Tracker, run_id: str | None, summary: dict, reports: Path) -> None:
    """Close the study's tracker run with the summary's figures and the report folder as artifacts."""
    if not run_id:
        return
    tracker.log_metrics(run_id, {k: float(summary[k]) for k in ("trials", "complete", "pruned", "failed", "best_val_top1")
                                 if summary.get(k) is not None})
    tracker.set_tags(run_id, {f"best.{k}": v for k, v in summary.get("best_params", {}).items()})
    tracker.log_artifacts(run_id, Path(reports), artifact_path="study")
    tracker.end_run(run_id, "FINISHED")
