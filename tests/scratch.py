"""Scratch copies of the project with every stage on a configuration small enough for CI.

Used by the pipeline, determinism and fault-injection tests: each gets its own folder with the
real ``dvc.yaml`` and ``src/``, a Git and DVC repository, and tiny ``params.yaml`` values.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["phantom_ct"].update(n_cases=5, spacing_inplane_mm=3.0, slice_mm_choices=[4.0], slice_mm_weights=[1.0], workers=1,
                                preview_cases=[0], fov_cut_probability=0.0)
    params["ingest"]["workers"] = 1
    params["patches"].update(background_per_case=16, augmented_copies=1, workers=1)
    params["pretrain"].update(width=8, depth=2, feature_dim=32, max_epochs=1, epoch_patches=256, step_epochs={})   # max_epochs for every step
    params["tune"].update(n_trials=2, landmarks=10, max_epochs=1, epoch_patches=128, fov_mm_choices=[32.0], depth_choices=[2],
                          width_choices=[4])
    params["phantom_mra"].update(n_cases=8, spacing_inplane_mm=1.0, slice_mm_choices=[1.2], workers=1, preview_cases=[0])
    params["vessels"]["workers"] = 1
    params["lesion"].update(negatives_per_case=12, positive_copies=2, workers=1)
    params["lesion"]["lung_nodules"].update(n_cases=4, spacing_mm=4.0, negatives_per_case=8)
    params["cifar"].update(source=str(SHARED_DATA / "cifar10_subset.npz"), max_epochs=1)
    params["transfer"].update(folds=2, repeats=1, few_label_cases=[3], n_weak_learners=20, bootstrap=100)
    params["finetune"].update(max_epochs=1, epoch_patches=128, few_label_cases=[3])
    params["compute"]["threads"] = 1
    params["voter"].update(width=4, depth=2, feature_dim=16, max_epochs=1, epoch_patches=128, per_landmark=1, background_per_case=8,
                           workers=1)
    params["detect"].update(coarse_step_mm=16.0, refine_steps_mm=[4.0], candidates=1, max_cases=1)
    shared = params["sim2real"]  # the real cases, from ../shared wherever the scratch project lies
    for key in ("images", "segmentations", "label_tables"):
        shared[key] = [str(SHARED_DATA / Path(v).relative_to("../shared/data")) if v.startswith("../shared/") else v for v in shared[key]]
    shared["background_per_case"] = 50
    return params


class Project:
    """A scratch project; :meth:`run` runs a command in it and fails the test with its output."""

    def __init__(self, folder: Path, params: dict | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True)
        for name in ("dvc.yaml", "pyproject.toml"):
            shutil.copy(ROOT / name, self.folder / name)
        shutil.copytree(ROOT / "src", self.folder / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        (self.folder / "data").mkdir()
        shutil.copy(ROOT / "data" / ".gitignore", self.folder / "data" / ".gitignore")
        (self.folder / "params.yaml").write_text(yaml.safe_dump(params or tiny_params()))
        self.env = {**os.environ, "DVC_NO_ANALYTICS": "1",
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.run("git", "init", "-q")
        self.run(*self.dvc, "init", "-q")
        self.run(*self.dvc, "config", "core.analytics", "false")

    dvc = (sys.executable, "-m", "dvc")
    lmtransfer = (sys.executable, "-m", "lmtransfer.cli")

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        done = subprocess.run(cmd, cwd=self.folder, env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def kill_when(self, cmd: tuple[str, ...], ready, timeout_s: float = 300.0) -> None:
        """Start ``cmd``, SIGKILL it and all its processes as soon as ``ready(folder)`` is true."""
        process = subprocess.Popen(cmd, cwd=self.folder, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        deadline = time.monotonic() + timeout_s
        try:
            while not ready(self.folder):
                assert process.poll() is None, f"{' '.join(cmd)} ended (rc {process.returncode}) before it could be killed"
                assert time.monotonic() < deadline, f"{' '.join(cmd)}: not ready to be killed after {timeout_s} s"
                time.sleep(0.05)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def lock(self) -> dict[str, str]:
        """Every stage output of ``dvc.lock`` and its hash."""
        lock = yaml.safe_load((self.folder / "dvc.lock").read_text())
        return {out["path"]: out.get("md5") for stage in lock["stages"].values() for out in stage.get("outs", [])}

    def metrics(self) -> dict:
        shown = json.loads(self.run(*self.dvc, "metrics", "show", "--json").stdout)
        return {path: files.get("data") for path, files in shown[""]["data"].items()}
