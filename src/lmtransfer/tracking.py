"""MLflow setup and provenance: the project's SQLite store, git commit, data hashes, seeds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACTS = Path("mlruns/artifacts")


def setup_mlflow(experiment: str):
    """Point MLflow at ``$MLFLOW_TRACKING_URI`` or the project's SQLite store; create the experiment.

    Returns the experiment id. Artifacts of a new experiment go under ``mlruns/artifacts``.
    """
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    DEFAULT_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(experiment, artifact_location=(DEFAULT_ARTIFACTS / experiment).resolve().as_uri())


def run_status(error: BaseException | None) -> str:
    """MLflow's end state for a run that stopped with ``error``: FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED."""
    if error is None:
        return "FINISHED"
    return "KILLED" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "FAILED"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``postgresql://user:***@host/db``), for logs and trackers."""
    from urllib.parse import urlsplit, urlunsplit

    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if parts.password is None:
        return text
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}" if user else f"***@{host}"))


def git_commit() -> str:
    """HEAD commit, with ``-dirty`` when tracked files changed (``unknown`` outside a Git checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def log_epoch(epoch: int, values: dict) -> None:
    """Per-epoch values of the active MLflow run, at step = epoch (the curves of the MLflow UI)."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=epoch)
