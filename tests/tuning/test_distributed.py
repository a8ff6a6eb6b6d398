"""Distributed tuning for real: two `lmtransfer tune` processes (standing in for two machines) on one
Optuna study in PostgreSQL, tracking to an `mlflow server` on the same PostgreSQL; one worker is
SIGKILLed mid-trial and a restarted worker takes over."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from postgres import PostgresServer, server_binaries
from scratch import tiny_params
from test_server import start_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(server_binaries() is None,
                                                    reason="PostgreSQL server binaries (initdb, pg_ctl) are not installed")]


def _lmtransfer(folder: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lmtransfer.cli", *args], cwd=folder, env=env, start_new_session=True,
                            stdout=open(folder / f"log_{time.monotonic_ns()}.txt", "w"), stderr=subprocess.STDOUT)


def _wait_for(condition, what: str, timeout_s: float = 300.0):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


def test_two_workers_share_a_postgresql_study_and_survive_a_kill(tmp_path):
    import mlflow
    import optuna
    from optuna.trial import TrialState

    server = PostgresServer().start()
    tracking = None
    try:
        study_url, mlflow_url = server.create_database("optuna"), server.create_database("mlflow")
        tracking, tracking_url = start_server(mlflow_url, tmp_path / "artifacts", tmp_path / "mlflow-server.log")
        params = tiny_params()
        params["tune"].update(n_trials=4, storage=study_url, timeout_s=900, apply_best=False, pruner_startup_trials=10)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_url}
        for stage in ("phantom-ct", "ingest", "patches"):
            assert _lmtransfer(tmp_path, env, stage, "--quiet").wait() == 0, stage

        first = _lmtransfer(tmp_path, env, "tune", "--dry-run")
        study = _wait_for(lambda: _study(optuna, study_url), "the study")
        _wait_for(lambda: study.user_attrs.get("mlflow_parent_run") or study.set_user_attr("_poll", time.time()), "the parent run")
        second = _lmtransfer(tmp_path, env, "tune", "--dry-run")
        victim = _wait_for(lambda: next((t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                                         if t.user_attrs.get("owner", {}).get("pid") == first.pid and "mlflow_run" in t.user_attrs),
                                        None), "a tracked trial of the first worker")
        os.killpg(first.pid, signal.SIGKILL)  # the first machine dies mid-trial
        first.wait()
        restarted = _lmtransfer(tmp_path, env, "tune", "--dry-run")  # ... and comes back
        assert second.wait(timeout=900) == 0 and restarted.wait(timeout=900) == 0

        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == 4  # n_trials reached, no overshoot
        killed = next(t for t in trials if t.number == victim.number)
        assert killed.state == TrialState.FAIL and not killed.user_attrs.get("cancelled")
        retry = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
        assert len(retry) == 1 and retry[0].params == killed.params and retry[0] in finished  # re-run, once
        assert not [t for t in trials if t.state == TrialState.RUNNING]

        client = mlflow.MlflowClient(tracking_url)
        experiment = client.get_experiment_by_name("landmark-tuning")
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        parents = [r for r in runs if "optuna_study" in r.data.tags]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
        by_trial = {}
        for run in children:
            by_trial.setdefault(int(run.data.tags["optuna.trial"]), []).append(run)
        assert sorted(by_trial) == sorted(t.number for t in trials if not t.user_attrs.get("cancelled"))
        assert all(len(found) == 1 for found in by_trial.values())  # one nested run per trial, none duplicated
        assert by_trial[victim.number][0].info.status == "KILLED"  # marked on the restart, not left RUNNING
        assert all(r.info.status == "FINISHED" for n, (r,) in by_trial.items() if n != victim.number)
    finally:
        if tracking is not None:
            stop_server(tracking)
        server.stop()


def _study(optuna, url):
    try:
        return optuna.load_study(study_name="lm-cnn-search", storage=url)
    except KeyError:
        return None
