"""The pre-training step's bookkeeping on a toy patch cache: the MLflow run ends in the state the step did."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from lmtransfer.sampling.cache import PatchCacheConfig
from lmtransfer.tracking import MlflowTracker
from lmtransfer.training import pretrain
from lmtransfer.training.train import TrainConfig


def _toy_cache(folder):
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "background"]
    rows = [(case, name, 0) for case in ("c0", "c1", "c2") for name in names for _ in range(4)]
    index = pd.DataFrame(rows, columns=["case", "name", "variant"])
    index.insert(0, "row", np.arange(len(index)))
    patches = rng.integers(-1000, 1000, (len(index), 3, 32, 32)).astype(np.int16)
    return patches, index


@pytest.mark.parametrize("interrupt, status", [(KeyboardInterrupt, "KILLED"), (SystemExit, "KILLED"), (RuntimeError, "FAILED")])
def test_interrupted_step_is_not_recorded_as_finished(tmp_path, monkeypatch, interrupt, status):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(pretrain, "load_cache", _toy_cache)

    def stopped(*args, **kwargs):
        raise interrupt()

    monkeypatch.setattr(pretrain, "train_model", stopped)
    splits = {"train": ["c0"], "val": ["c1"], "test": ["c2"]}
    cfg = TrainConfig(depth=2, width=4, feature_dim=8, max_epochs=1, threads=1)
    with pytest.raises(interrupt):
        pretrain.run_step("lm3", 3, tmp_path, splits, PatchCacheConfig(), cfg, 0, tmp_path / "reports", tmp_path / "m.pt",
                          tracker=MlflowTracker())
    runs = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name(pretrain.EXPERIMENT).experiment_id])
    assert [r.info.status for r in runs] == [status]
    assert not (tmp_path / "m.pt").exists()
