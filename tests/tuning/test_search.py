"""The Optuna study end to end on a tiny phantom: caches shared, trials tracked, resume, best setting."""

import json
from dataclasses import replace

import mlflow
import optuna
import pandas as pd
import pytest

from lmtransfer.io.manifest import build_manifest, write_outputs
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, generate_dataset
from lmtransfer.sampling.cache import PatchCacheConfig, build_patch_cache, file_hash, split_cases
from lmtransfer.tracking import MlflowTracker
from lmtransfer.training.train import TrainConfig
from lmtransfer.tuning.reports import heat_map_table, write_reports
from lmtransfer.tuning.search import TuneConfig, TuneInputs, finish_parent, run_study


def _study_with_reports(cfg: TuneConfig, inputs: TuneInputs, workers: int = 1) -> dict:
    """What `lmtransfer tune` does: run the study, write its reports, close its tracker run."""
    tracker = MlflowTracker()
    done = run_study(cfg, inputs, workers=workers, tracker=tracker)
    summary = write_reports(done.study, cfg.reports)
    finish_parent(tracker, done.parent_run, summary, cfg.reports)
    return summary


@pytest.mark.slow
def test_study_runs_resumes_and_tracks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    phantom = PhantomCTConfig(n_cases=4, spacing_inplane_mm=3.0, slice_mm_choices=(4.0,), slice_mm_weights=(1.0,),
                              fov_cut_probability=0.0)
    generate_dataset(phantom, tmp_path / "phantom", progress=False)
    manifest, report = build_manifest(tmp_path / "phantom" / "images", [tmp_path / "phantom" / "landmarks"], progress=False)
    write_outputs(manifest, report, tmp_path / "manifest")
    splits = split_cases(sorted(manifest["case"].unique()), (0.5, 0.25, 0.25), 0)
    base_patch = PatchCacheConfig(fov_mm=48.0, background_per_case=12, augmented_copies=1)
    manifest_path = tmp_path / "manifest" / "manifest.csv"
    pipeline_cache = build_patch_cache(manifest, file_hash(manifest_path), base_patch, tmp_path / "pipeline_patches", progress=False)
    inputs = TuneInputs(manifest_path, splits, base_patch, TrainConfig(feature_dim=32, batch_size=32), class_order_seed=0,
                        reuse_caches=(pipeline_cache,))
    cfg = TuneConfig(storage=f"sqlite:///{tmp_path / 'optuna.db'}", n_trials=3, landmarks=10, max_epochs=2, patience=2,
                     epoch_patches=192, fov_mm_choices=(32.0, 48.0), depth_choices=(2, 3), width_choices=(4,),
                     pruner_startup_trials=1, pruner_warmup_epochs=1, cache_dir=tmp_path / "caches", reports=tmp_path / "reports")

    first = _study_with_reports(cfg, inputs)
    assert first["trials"] == 3 and first["complete"] + first["pruned"] == 3
    trials = pd.read_csv(tmp_path / "reports" / "trials.csv")
    assert set(trials["fov_mm"]) <= {32.0, 48.0} and trials.loc[trials["state"] == "COMPLETE", "val_top1"].between(0, 1).all()
    caches = sorted(p.name for p in (tmp_path / "caches").iterdir()) if (tmp_path / "caches").exists() else []
    # one cache per field of view; the pipeline's own 48 mm cache is reused, not rebuilt
    assert caches == sorted({f"fov{f:g}mm_32px" for f in trials["fov_mm"] if f != 48.0})
    best = json.loads((tmp_path / "reports" / "best.json").read_text())
    assert best["val_top1"] == pytest.approx(trials["val_top1"].max(), abs=1e-5)
    assert (tmp_path / "reports" / "val_top1_fov_by_depth.png").stat().st_size > 5000

    # a later call, with two worker processes, resumes the same study: finished trials are kept and
    # only the missing ones run; a trial the second worker starts once the cap is taken is cancelled
    second = _study_with_reports(replace(cfg, n_trials=4), inputs, workers=2)
    study = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage)
    assert 4 <= second["trials"] == len(study.trials) <= 5
    assert second["complete"] + second["pruned"] == 4  # no overshoot
    assert all(t.user_attrs.get("cancelled") for t in study.trials if t.state.name == "FAIL")
    assert [t.state.name for t in study.trials[:3]] == trials.sort_values("trial")["state"].tolist()  # kept as they were
    assert all(t.params != study.trials[0].params for t in study.trials[3:])  # resumed workers draw new points

    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("landmark-tuning")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "optuna_study" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    ran = [t for t in study.trials if not t.user_attrs.get("cancelled")]
    assert len(parents) == 1 and len(children) == len(ran)  # the resumed study keeps its parent run; cancelled trials have none
    assert {r.data.tags["state"] for r in children} <= {"COMPLETE", "PRUNED"}
    assert "data.manifest_sha256" in parents[0].data.tags and "best_val_top1" in parents[0].data.metrics
    assert len(client.get_metric_history(children[0].info.run_id, "val_top1")) >= 1


def test_heat_map_keeps_the_best_complete_trial_per_cell():
    trials = pd.DataFrame({"state": ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"], "fov_mm": [32.0, 32.0, 48.0, 48.0],
                           "depth": [2, 2, 3, 3], "val_top1": [0.5, 0.7, 0.9, 0.6]})
    table = heat_map_table(trials)
    assert table.loc[32.0, 2] == 0.7 and table.loc[48.0, 3] == 0.6
