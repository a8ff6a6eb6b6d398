"""A killed tune run: its trials are recovered at once, and nothing logged carries the database password."""

import subprocess
import sys

import mlflow
import pytest
from optuna.trial import TrialState

from lmtransfer.tracking import MlflowTracker
from lmtransfer.tuning import search
from lmtransfer.tuning.search import TuneConfig, TuneInputs, open_study, process_owner, recover_dead_trials


@pytest.fixture
def tracked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # an earlier test may have pointed MLflow elsewhere
    return tmp_path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_trial_of_a_dead_process_is_failed_requeued_and_its_run_killed(tracked):
    study = open_study(TuneConfig(storage=f"sqlite:///{tracked / 'optuna.db'}"))
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("t")
    owners = {"dead": process_owner(_dead_pid()), "alive": process_owner(), "elsewhere": {**process_owner(), "host": "other-machine"}}
    runs = {}
    for name, owner in owners.items():
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.set_user_attr("owner", owner)
        runs[name] = client.create_run(experiment).info.run_id
        trial.set_user_attr("mlflow_run", runs[name])

    assert recover_dead_trials(study, MlflowTracker()) == [0]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]
    assert trials[3].system_attrs["fixed_params"] == trials[0].params and trials[3].user_attrs["retry_of"] == 0
    assert client.get_run(runs["dead"]).info.status == "KILLED"
    assert client.get_run(runs["alive"]).info.status == "RUNNING"
    assert recover_dead_trials(study, MlflowTracker()) == []  # nothing left to recover


def test_storage_password_is_not_logged(tracked):
    manifest = tracked / "manifest.csv"
    manifest.write_text("case\n")
    cfg = TuneConfig(storage="postgresql://lab:hunter2@db.example/optuna")
    local = open_study(TuneConfig(storage=f"sqlite:///{tracked / 'optuna.db'}"))
    run_id = search._parent_run(MlflowTracker(), local, cfg, TuneInputs(manifest, {"train": []}, None, None, 0))
    run = mlflow.MlflowClient().get_run(run_id)
    logged = " ".join(f"{k}={v}" for k, v in {**run.data.params, **run.data.tags}.items())
    assert "hunter2" not in logged
    assert run.data.params["tune.storage"] == "postgresql://lab:***@db.example/optuna"


def test_a_trial_another_worker_recovered_first_is_left_to_it(tracked, monkeypatch):
    # two workers list the dead trial as RUNNING; the first fails and re-queues it, the second must skip it
    # (it stopped with "Trial#0 has already finished and can not be updated" in a CI run)
    study = open_study(TuneConfig(storage=f"sqlite:///{tracked / 'optuna.db'}"))
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.set_user_attr("owner", process_owner(_dead_pid()))
    stale = study.get_trials(states=(TrialState.RUNNING,))
    assert recover_dead_trials(study) == [0]               # the first worker
    monkeypatch.setattr(study, "get_trials", lambda deepcopy=True, states=None: stale if states == (TrialState.RUNNING,) else [])
    assert recover_dead_trials(study) == []                # the second, with its list read before
    monkeypatch.undo()
    assert sum(t.user_attrs.get("retry_of") == 0 for t in study.get_trials()) == 1
