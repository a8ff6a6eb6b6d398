"""The MLflow UI a newcomer sees, in a real browser (Debian's headless Chromium): through the links
we print (`make ui`, `make server`), our experiments open on their runs, not on MLflow 3's GenAI
trace overview, and a nested transfer run shows its `auc` curve over weak learners. Screenshots go
to reports/browser/ (CI artifacts).

MLflow 3.17 picks the view from a workspace-wide "GenAI | Model training" switch (default GenAI),
not from the experiment's ``mlflow.experimentKind`` tag (which we set too): the links carry
``?workflowType=machine_learning``."""

import shutil
import time
from pathlib import Path

import pytest

from test_server import start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]
MODEL_TRAINING = "workflowType=machine_learning"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not installed")]


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--window-size=1500,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _wait_for_text(browser, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in browser.find_element("tag name", "body").text:
        assert time.monotonic() < deadline, f"{text!r} never appeared on {browser.current_url}"
        time.sleep(0.5)


def test_experiments_open_on_their_runs_and_show_the_auc_curve(tmp_path, monkeypatch):
    from lmtransfer.tracking import MlflowTracker, tracked_run

    store = f"sqlite:///{tmp_path / 'ui.db'}"
    monkeypatch.chdir(tmp_path)
    tracker = MlflowTracker(store)
    with tracked_run(tracker, "landmark-pretraining", "lm20") as run_id:
        tracker.log_curve(run_id, "val_top1", [0.5, 0.8, 0.9])
    with tracked_run(tracker, "transfer-auc", "figure-3") as parent:
        with tracked_run(tracker, "transfer-auc", "lm-split0", parent=parent) as child:
            tracker.log_curve(child, "auc", [0.6, 0.7, 0.75, 0.8])
    shots = ROOT / "reports" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    process, url = start_server(store, tmp_path / "artifacts", tmp_path / "ui.log")
    browser = _browser()
    try:
        for name, run in (("landmark-pretraining", "lm20"), ("transfer-auc", "figure-3")):
            experiment = tracker.client.get_experiment_by_name(name).experiment_id
            browser.get(f"{url}/#/experiments/{experiment}?{MODEL_TRAINING}")
            _wait_for_text(browser, run)
            time.sleep(1)
            browser.save_screenshot(str(shots / f"{name}.png"))
            assert "/runs" in browser.current_url and "No data available" not in browser.find_element("tag name", "body").text
        transfer = tracker.client.get_experiment_by_name("transfer-auc").experiment_id
        browser.get(f"{url}/#/experiments/{transfer}/runs/{child}/model-metrics?{MODEL_TRAINING}")
        _wait_for_text(browser, "auc")
        time.sleep(2)
        browser.save_screenshot(str(shots / "transfer-auc-nested-run.png"))
    finally:
        browser.quit()
        stop_server(process)
    assert all((shots / f).stat().st_size > 10_000 for f in ("landmark-pretraining.png", "transfer-auc.png", "transfer-auc-nested-run.png"))
