"""Versioned results: a commit pins its data and models (dvc.lock), `dvc metrics diff` shows what a
params change did, and a fresh clone pulls the trained model from the remote instead of retraining."""

import json
import subprocess

import pytest
import yaml

from scratch import Project, tiny_params


@pytest.mark.slow
def test_commit_diff_push_and_pull_without_retraining(tmp_path):
    project = Project(tmp_path / "project", tiny_params())
    remote = tmp_path / "remote"
    project.run(*project.dvc, "remote", "add", "-d", "shared", str(remote))
    project.run(*project.dvc, "repro", "-q", "pretrain_20")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "first")
    assert "dvc.lock" in project.run("git", "ls-files").stdout.split()

    params = yaml.safe_load((project.folder / "params.yaml").read_text())
    params["pretrain"]["max_epochs"] = 2
    (project.folder / "params.yaml").write_text(yaml.safe_dump(params))
    project.run(*project.dvc, "repro", "-q", "pretrain_20")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "two epochs")
    diff = json.loads(project.run(*project.dvc, "metrics", "diff", "HEAD~1", "--json").stdout)
    assert diff["reports/pretrain/lm20/headline.json"]["epochs"] == {"old": 1, "new": 2, "diff": 1}
    assert "data/manifest/headline.json" not in diff  # committed the first time, unchanged since
    assert "pretrain.max_epochs" in json.loads(project.run(*project.dvc, "params", "diff", "HEAD~1", "--json").stdout)["params.yaml"]
    plots = json.loads(project.run(*project.dvc, "plots", "diff", "HEAD~1", "--json", "--split").stdout)
    curves = plots["data"]["reports/pretrain/lm20/history.csv"]
    revisions = {rev for entry in curves for rev in entry.get("revisions", [])}
    assert {"HEAD~1", "workspace"} <= revisions  # the learning curve of both commits, side by side

    project.run(*project.dvc, "push", "-q")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project.folder), str(clone)], check=True, env=project.env)
    pull = subprocess.run([*project.dvc, "pull", "--with-deps", "pretrain_20"], cwd=clone, env=project.env, capture_output=True, text=True)
    assert pull.returncode == 0, pull.stderr
    model = "models/lm_cnn_lm20.pt"
    assert (clone / model).read_bytes() == (project.folder / model).read_bytes()
    again = subprocess.run([*project.dvc, "repro", "pretrain_20"], cwd=clone, env=project.env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout  # everything came from the remote: nothing is retrained


@pytest.mark.slow
def test_queued_dvc_experiments_log_into_the_projects_store(tmp_path):
    import mlflow

    params = tiny_params()
    params["pretrain"]["track"] = True
    project = Project(tmp_path / "project", params)
    project.run(*project.dvc, "repro", "-q", "patches")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "data")
    project.run(*project.dvc, "exp", "run", "--queue", "-n", "narrow", "-S", "pretrain.width=4", "pretrain_20")
    project.run(*project.dvc, "exp", "run", "--run-all")  # in a copy under .dvc/tmp/exps
    shown = json.loads(project.run(*project.dvc, "exp", "show", "--json").stdout)
    assert "narrow" in json.dumps(shown)

    client = mlflow.MlflowClient(f"sqlite:///{project.folder / 'mlruns' / 'mlflow.db'}")  # the project's store, not the copy's
    experiment = client.get_experiment_by_name("landmark-pretraining")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.data.tags.get("dvc_experiment") for r in runs] == ["narrow"]
    assert runs[0].data.params["train.width"] == "4"
    assert not list((project.folder / ".dvc" / "tmp").rglob("mlflow.db"))
