"""Same params, same seed: the same bytes. Killed at any long stage: the same result after a rerun.

Two scratch projects run the whole tiny pipeline with `dvc repro`; every output hash in
`dvc.lock` and every metric must agree. A third project is killed (SIGKILL, the whole process
group) in the middle of each long stage, rerun, and must end with the same hashes as an
uninterrupted run. The Optuna search is killed while a trial runs and rerun at once.
"""

from __future__ import annotations

import pandas as pd
import pytest
from optuna.trial import TrialState

from scratch import Project

LONG_STAGES = {
    # stage: when it is mid-way (a file that appears while it works)
    "phantom_ct@torso": lambda root: any((root / "data" / "phantom_ct" / "meta").glob("case_*.json")),
    "patches": lambda root: any((root / "data" / "patches" / "cases").glob("*.npz")),
    "pretrain_20": lambda root: (root / "reports" / "pretrain" / "lm20").is_dir(),
    "detect_eval": lambda root: (root / "models" / "landmark_shape.json").exists(),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Project:
    project = Project(tmp_path_factory.mktemp("reference") / "project")
    project.run(*project.dvc, "repro")
    return project


@pytest.mark.slow
def test_two_runs_give_identical_outputs_and_metrics(reference, tmp_path):
    second = Project(tmp_path / "second")
    second.run(*second.dvc, "repro")
    first_lock, second_lock = reference.lock(), second.lock()
    assert first_lock.keys() == second_lock.keys()
    differ = sorted(path for path in first_lock if first_lock[path] != second_lock[path])
    assert not differ, f"outputs differ between two runs with the same params: {differ}"
    assert reference.metrics() == second.metrics()


@pytest.mark.slow
def test_killed_stages_resume_to_the_same_result(reference, tmp_path):
    project = Project(tmp_path / "killed")
    for stage, midway in LONG_STAGES.items():
        project.kill_when((*project.dvc, "repro", stage), midway)
        project.run(*project.dvc, "repro", stage)
    project.run(*project.dvc, "repro")
    expected, got = reference.lock(), project.lock()
    differ = sorted(path for path in expected if expected[path] != got.get(path))
    assert not differ, f"outputs differ from an uninterrupted run after kills: {differ}"


def _trials(project: Project) -> pd.DataFrame:
    import optuna

    study = optuna.load_study(study_name="lm-cnn-search", storage=f"sqlite:///{project.folder / 'optuna' / 'tune.db'}")
    rows = [{"state": t.state.name, "value": t.value, **t.params} for t in study.trials if t.state != TrialState.FAIL]
    states = {t.state for t in study.trials}
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    return pd.DataFrame(rows).sort_index(axis=1)


@pytest.mark.slow
def test_killed_search_recovers_its_trial_at_once(reference, tmp_path):
    """Killed while a trial runs and rerun at once (inside the heartbeat's grace period): the trial is
    re-run, the study reaches n_trials, nothing stays RUNNING, and the trials equal an uninterrupted search's."""
    import mlflow

    reference.run(*reference.lmtransfer, "tune", "--dry-run")
    project = Project(tmp_path / "tune")
    project.run(*project.dvc, "repro", "patches")

    def second_trial_training(root):  # running, with its MLflow run open
        import sqlite3

        db = root / "optuna" / "tune.db"
        if not db.exists():
            return False
        try:
            with sqlite3.connect(db, timeout=1) as con:
                return con.execute(
                    "select count(*) from trials t join trial_user_attributes a on a.trial_id = t.trial_id "
                    "where t.number = 1 and t.state = 'RUNNING' and a.key = 'mlflow_run'").fetchone()[0] == 1
        except sqlite3.Error:
            return False

    project.kill_when((*project.lmtransfer, "tune", "--dry-run"), second_trial_training)
    rerun = project.run(*project.lmtransfer, "tune", "--dry-run")
    assert "left running by a killed process" in rerun.stdout
    pd.testing.assert_frame_equal(_trials(project), _trials(reference))
    mlflow.set_tracking_uri(f"sqlite:///{project.folder / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["landmark-tuning"])
    assert "RUNNING" not in set(runs["status"])
    assert sorted(runs["status"]) == ["FINISHED"] * 3 + ["KILLED"]  # the study, two trials, the killed one
