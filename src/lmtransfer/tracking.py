"""Experiment tracking behind one small interface, and provenance (git commit, redacted URLs, run states).

The library records runs through a :class:`Tracker` it is given: :class:`MlflowTracker` (the
project's SQLite store, or ``$MLFLOW_TRACKING_URI``) is the one backend, :class:`NullTracker`
serves ``track: false`` and the unit tests. Runs are addressed by id, so worker processes can
log into a run another process started. This module is the only one that imports MLflow.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACTS = Path("mlruns/artifacts")
# MLflow 3's UI shows an experiment without this tag as a GenAI trace overview ("No data available")
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def workspace_root(cwd: Path | None = None) -> Path:
    """The project folder the user works in. ``dvc exp run --temp`` and ``--queue`` run the pipeline
    in a copy under ``<project>/.dvc/tmp/exps/``: their runs belong to the project, not the copy."""
    here = Path(cwd or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def local_store(url: str, cwd: Path | None = None) -> str:
    """``url`` with a relative SQLite path made absolute under :func:`workspace_root`, so every DVC
    experiment and every worker records into the one store of the project; other URLs unchanged."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(workspace_root(cwd) / url.removeprefix(prefix))
    return url


def run_context() -> dict[str, str]:
    """Tags every run carries beside its own: the DVC experiment it belongs to, when there is one."""
    name = os.environ.get("DVC_EXP_NAME")
    return {"dvc_experiment": name, "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", "")} if name else {}


class Tracker:
    """What the stages record: runs (nested by ``parent``), parameters, metrics at a step, tags,
    artifacts and models. This base class records nothing (see :class:`NullTracker`)."""

    enabled = False

    def start_run(self, experiment: str, name: str, parent: str | None = None, tags: dict | None = None) -> str:
        return ""

    def status(self, run_id: str) -> str | None:
        """RUNNING, FINISHED, FAILED or KILLED; None when the store does not know the run."""
        return None

    def reopen(self, run_id: str) -> bool:
        """Mark a run of an interrupted job RUNNING again; False when the store does not know it."""
        return False

    def log_params(self, run_id: str, params: dict[str, Any]) -> None: ...

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_curve(self, run_id: str, key: str, values) -> None:
        """``values[i]`` at step ``i + 1`` (non-finite values left out)."""

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None: ...

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None: ...

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None: ...

    def log_dict(self, run_id: str, data: dict, file_name: str) -> None: ...

    def log_model(self, run_id: str, model, registered_name: str, input_example, metadata: dict) -> None: ...

    def end_run(self, run_id: str, status: str = "FINISHED") -> None: ...

    def set_alias(self, registered_name: str, alias: str, run_id: str) -> None:
        """Point ``alias`` (e.g. ``champion``) of a registered model at the version ``run_id`` logged."""

    def checkpoint(self, uri: str, folder: Path) -> Path:
        """The checkpoint file behind a registry URI (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``),
        downloaded into ``folder``."""
        raise ValueError(f"{uri}: a model registry URI needs tracking (MLflow) to resolve")


MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(@(?P<alias>[^/]+)|/(?P<version>\d+))$")
CHECKPOINT_ARTIFACTS = "checkpoint"   # where a run keeps the lmtransfer checkpoint (weights + model card) of its model


class NullTracker(Tracker):
    """Records nothing: ``track: false`` and the unit tests."""


class MlflowTracker(Tracker):
    """MLflow through its client: ``$MLFLOW_TRACKING_URI`` or the project's SQLite store (MLflow 3
    refuses the plain file store); artifacts of new experiments under ``mlruns/artifacts``."""

    enabled = True

    def __init__(self, uri: str | None = None):
        import mlflow

        self.uri = local_store(uri or os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))  # MLflow makes the folder
        mlflow.set_tracking_uri(self.uri)
        self._mlflow = mlflow
        self.client = mlflow.MlflowClient(self.uri)

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.tags.get("mlflow.experimentKind") is None:  # made by an earlier version
                for key, value in EXPERIMENT_KIND.items():
                    self.client.set_experiment_tag(found.experiment_id, key, value)
            return found.experiment_id
        if self.uri.startswith(("http://", "https://")):  # a tracking server stores (or proxies) the artifacts
            return self.client.create_experiment(name, tags=EXPERIMENT_KIND)
        artifacts = workspace_root() / DEFAULT_ARTIFACTS
        artifacts.mkdir(parents=True, exist_ok=True)
        return self.client.create_experiment(name, artifact_location=(artifacts / name).as_uri(), tags=EXPERIMENT_KIND)

    def start_run(self, experiment: str, name: str, parent: str | None = None, tags: dict | None = None) -> str:
        tags = {k: str(v) for k, v in {**run_context(), **(tags or {})}.items()}
        if parent:
            tags["mlflow.parentRunId"] = parent
        return self.client.create_run(self.experiment_id(experiment), run_name=name, tags=tags).info.run_id

    def status(self, run_id: str) -> str | None:
        try:
            return self.client.get_run(run_id).info.status
        except self._mlflow.exceptions.MlflowException:
            return None

    def reopen(self, run_id: str) -> bool:
        status = self.status(run_id)
        if status is not None and status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        return status is not None

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        for start in range(0, len(items), 900):
            self.client.log_batch(run_id, metrics=items[start : start + 900])

    def log_curve(self, run_id: str, key: str, values) -> None:
        import math

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, float(v), now, step) for step, v in enumerate(values, start=1) if math.isfinite(float(v))]
        for start in range(0, len(items), 900):
            self.client.log_batch(run_id, metrics=items[start : start + 900])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)

    def log_dict(self, run_id: str, data: dict, file_name: str) -> None:
        self.client.log_dict(run_id, data, file_name)

    def log_model(self, run_id: str, model, registered_name: str, input_example, metadata: dict) -> None:
        import torch

        # the model flavour logs into the active run: make it this one for the call, then leave it running
        with self._mlflow.start_run(run_id=run_id):
            self._mlflow.pytorch.log_model(model, name="model", registered_model_name=registered_name, input_example=input_example,
                                           pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"], metadata=metadata)
        self.client.update_run(run_id, status="RUNNING")

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def set_alias(self, registered_name: str, alias: str, run_id: str) -> None:
        versions = self.client.search_model_versions(f"name='{registered_name}' and run_id='{run_id}'")
        if not versions:
            raise ValueError(f"run {run_id} registered no version of {registered_name!r}")
        self.client.set_registered_model_alias(registered_name, alias, max(versions, key=lambda v: int(v.version)).version)

    def checkpoint(self, uri: str, folder: Path) -> Path:
        match = MODEL_URI.match(uri)
        if match is None:
            raise ValueError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        try:
            version = (self.client.get_model_version_by_alias(match["name"], match["alias"]) if match["alias"]
                       else self.client.get_model_version(match["name"], match["version"]))
        except self._mlflow.exceptions.MlflowException as exc:
            raise ValueError(f"{uri}: not in the model registry at {redact_url(self.uri)} ({exc.message})") from exc
        folder.mkdir(parents=True, exist_ok=True)
        local = Path(self.client.download_artifacts(version.run_id, CHECKPOINT_ARTIFACTS, str(folder)))
        found = sorted(local.glob("*.pt"))
        if not found:
            raise ValueError(f"{uri}: version {version.version} (run {version.run_id}) holds no lmtransfer checkpoint")
        return found[0]


def model_file(path_or_uri: Path | str) -> Path:
    """A checkpoint path as it is, or the checkpoint behind a registry URI (``models:/lm-cnn@champion``),
    fetched from the tracking store into ``models/registry/``."""
    text = str(path_or_uri)
    if not text.startswith("models:"):
        return Path(path_or_uri)
    name = text.removeprefix("models:/").replace("@", "_at_").replace("/", "_v")
    return MlflowTracker().checkpoint(text, Path("models") / "registry" / name)


def make_tracker(enabled: bool) -> Tracker:
    """The tracker for ``track: true | false``."""
    return MlflowTracker() if enabled else NullTracker()


@contextmanager
def tracked_run(tracker: Tracker, experiment: str, name: str, parent: str | None = None, tags: dict | None = None) -> Iterator[str]:
    """A run that ends FINISHED, or KILLED / FAILED with the exception that left the block."""
    run_id = tracker.start_run(experiment, name, parent, tags)
    try:
        yield run_id
    except BaseException as exc:
        tracker.end_run(run_id, run_status(exc))
        raise
    tracker.end_run(run_id, "FINISHED")


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
