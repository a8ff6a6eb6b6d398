"""`make server`: a tracking server on loopback with a database backend and proxied artifacts; with
MLFLOW_TRACKING_URI pointing at it, runs, metrics and artifacts land there."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(backend: str, artifacts: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`make server` on a free loopback port; returns the process and its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(["make", "-s", "-C", str(ROOT), "server", f"BACKEND={backend}", f"ARTIFACTS={artifacts}", f"PORT={port}"],
                               stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"the tracking server did not start:\n{log.read_text()}")
        time.sleep(0.5)


def stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_runs_and_artifacts_go_to_the_server(tmp_path, monkeypatch):
    from lmtransfer.tracking import MlflowTracker, tracked_run

    process, url = start_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts", tmp_path / "server.log")
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        (tmp_path / "report.txt").write_text("figures")
        tracker = MlflowTracker()
        with tracked_run(tracker, "transfer-auc", "lm-split0") as run_id:
            tracker.log_curve(run_id, "auc", [0.6, 0.7, 0.8])
            tracker.log_artifact(run_id, tmp_path / "report.txt", artifact_path="reports")
        run = tracker.client.get_run(run_id)
        assert run.info.status == "FINISHED" and [m.value for m in tracker.client.get_metric_history(run_id, "auc")] == [0.6, 0.7, 0.8]
        assert tracker.client.get_experiment_by_name("transfer-auc").tags["mlflow.experimentKind"] == "custom_model_development"
        stored = list((tmp_path / "server-artifacts").rglob("report.txt"))  # the server holds the file, not the client's folder
        assert len(stored) == 1 and stored[0].read_text() == "figures"
        assert not (tmp_path / "mlruns").exists()
    finally:
        stop_server(process)
