"""Provenance helpers: run end states and credentials kept out of everything logged."""

from pathlib import Path

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


def test_stores_of_a_dvc_experiment_copy_are_the_projects(tmp_path):
    from lmtransfer.tracking import local_store, workspace_root

    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmp1a2b" / "sub"
    copy.mkdir(parents=True)
    assert workspace_root(copy) == tmp_path / "project"
    assert workspace_root(tmp_path) == tmp_path
    assert local_store("sqlite:///mlruns/mlflow.db", copy) == f"sqlite:///{tmp_path / 'project' / 'mlruns' / 'mlflow.db'}"
    assert local_store("sqlite:////abs/x.db", copy) == "sqlite:////abs/x.db"
    assert local_store("postgresql://u@h/db", copy) == "postgresql://u@h/db"


def test_experiments_open_as_model_training_and_runs_name_their_dvc_experiment(tmp_path, monkeypatch):
    from lmtransfer.tracking import MlflowTracker

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "wider-net")
    tracker = MlflowTracker("sqlite:///mlflow.db")  # relative: anchored at the project folder
    run_id = tracker.start_run("landmark-pretraining", "lm20", tags={"seed": 0})
    experiment = tracker.client.get_experiment_by_name("landmark-pretraining")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert tracker.client.get_run(run_id).data.tags["dvc_experiment"] == "wider-net"
    assert (tmp_path / "mlflow.db").is_file() and experiment.artifact_location.startswith((tmp_path / "mlruns").as_uri())


def test_the_champion_resolves_from_the_registry_to_the_checkpoint(tmp_path, monkeypatch):
    import torch

    from lmtransfer.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
    from lmtransfer.models.mini_vgg import MiniVGG
    from lmtransfer.tracking import CHECKPOINT_ARTIFACTS, MlflowTracker, model_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = MiniVGG(3, depth=2, width=4, feature_dim=8)
    save_checkpoint(tmp_path / "m.pt", model, ModelCard(architecture="mini-VGG", config=dict(model.config), class_names=("a", "b", "background"),
                                                          normalisation={"hu_window": [-1000, 1000]}))
    tracker = MlflowTracker()
    run_id = tracker.start_run("landmark-pretraining", "lm2")
    tracker.log_model(run_id, model, "lm-cnn", torch.zeros(1, 3, 32, 32).numpy(), {})
    tracker.log_artifact(run_id, tmp_path / "m.pt", artifact_path=CHECKPOINT_ARTIFACTS)
    tracker.end_run(run_id)
    tracker.set_alias("lm-cnn", "champion", run_id)

    fetched = model_file("models:/lm-cnn@champion")
    assert fetched.read_bytes() == (tmp_path / "m.pt").read_bytes() and fetched.is_relative_to(tmp_path / "models" / "registry")
    loaded, card = load_checkpoint(fetched)  # weights-only, like any other checkpoint file
    assert card.class_names == ("a", "b", "background")
    assert model_file("models:/lm-cnn/1").read_bytes() == fetched.read_bytes()
    with pytest.raises(ValueError, match="models:/lm-cnn@nobody: not in the model registry"):
        model_file("models:/lm-cnn@nobody")
    assert model_file("models/lm_cnn_lm60.pt") == Path("models/lm_cnn_lm60.pt")
