"""Provenance helpers: run end states and credentials kept out of everything logged."""

import pytest

from lmtransfer.tracking import redact_url, run_status


@pytest.mark.parametrize("url, shown", [
    ("postgresql://user:s3cret@db.example:5432/optuna", "postgresql://user:***@db.example:5432/optuna"),
    ("postgresql+psycopg2://u:p%40ss@host/db?sslmode=require", "postgresql+psycopg2://u:***@host/db?sslmode=require"),
    ("mysql://:only-password@host/db", "mysql://***@host/db"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("sqlite:///optuna/tune.db", "sqlite:///optuna/tune.db"),
    ("https://tracking.example.org", "https://tracking.example.org"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_run_status():
    assert run_status(None) == "FINISHED"
    assert run_status(KeyboardInterrupt()) == "KILLED"
    assert run_status(SystemExit(143)) == "KILLED"
    assert run_status(ValueError("x")) == "FAILED"


def test_mlflow_tracker_records_nested_runs(tmp_path, monkeypatch):
    import mlflow
    import numpy as np

    from lmtransfer.tracking import MlflowTracker, tracked_run

    monkeypatch.chdir(tmp_path)
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "a.txt").write_text("x")
    with tracked_run(tracker, "exp", "parent", tags={"seed": 3}) as parent:
        tracker.log_params(parent, {"lr": 0.1, "path": tmp_path})
        for epoch in (1, 2):
            tracker.log_metrics(parent, {"val_top1": 0.5 * epoch, "skipped": None}, step=epoch)
        tracker.log_artifacts(parent, tmp_path / "reports", artifact_path="reports")
        tracker.log_dict(parent, {"k": 1}, "card.json")
        with tracked_run(tracker, "exp", "child", parent=parent) as child:
            tracker.log_curve(child, "auc", [0.5, np.nan, 0.7])
    client = mlflow.MlflowClient(tracker.uri)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.params["lr"] == "0.1" and run.data.tags["seed"] == "3"
    assert [m.value for m in client.get_metric_history(parent, "val_top1")] == [0.5, 1.0] and "skipped" not in run.data.metrics
    assert {a.path for a in client.list_artifacts(parent)} >= {"reports", "card.json"}
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == parent
    assert [(m.step, m.value) for m in client.get_metric_history(child, "auc")] == [(1, 0.5), (3, 0.7)]
    assert tracker.reopen(parent) and tracker.status(parent) == "RUNNING"
    assert tracker.status("no-such-run") is None and not tracker.reopen("no-such-run")


@pytest.mark.parametrize("error, status", [(KeyboardInterrupt, "KILLED"), (ValueError, "FAILED")])
def test_tracked_run_ends_in_the_state_it_stopped_in(tmp_path, error, status):
    from lmtransfer.tracking import MlflowTracker, tracked_run

    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(error):
        with tracked_run(tracker, "exp", "run") as run_id:
            raise error()
    assert tracker.status(run_id) == status


def test_null_tracker_records_nothing(tmp_path):
    from lmtransfer.tracking import NullTracker, make_tracker, tracked_run

    tracker = make_tracker(False)
    assert isinstance(tracker, NullTracker) and not tracker.enabled
    with tracked_run(tracker, "exp", "run") as run_id:
        tracker.log_metrics(run_id, {"a": 1.0}, step=1)
    assert tracker.status(run_id) is None and not list(tmp_path.iterdir())


def test_only_the_tracker_imports_mlflow():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "lmtransfer"
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if re.search(r"^\s*(import|from) mlflow", p.read_text(), re.M))
    assert users == ["tracking.py"]
