"""The headline files `dvc metrics show` reads: short shared keys, the full metrics left beside them."""

import json
from pathlib import Path

import yaml

from lmtransfer.stages import HEADLINE_JSON, write_headline

ROOT = Path(__file__).resolve().parents[2]


def test_the_headline_renames_the_chosen_figures_and_leaves_out_missing_ones(tmp_path):
    metrics = {"test_top1": 0.91, "test_top5": 0.99, "epochs": 7, "val_top1": 0.9}
    written = write_headline(metrics, {"top1": "test_top1", "epochs": "epochs", "auc": "absent"}, tmp_path / HEADLINE_JSON)
    assert written == {"top1": 0.91, "epochs": 7}
    assert json.loads((tmp_path / HEADLINE_JSON).read_text()) == written


def test_dvc_declares_only_headlines_as_metrics_and_keeps_the_full_files_as_outputs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {name: [next(iter(m)) for m in stage["metrics"]] for name, stage in stages.items() if "metrics" in stage}
    assert len(declared) == 13
    for name, files in declared.items():
        assert [Path(f).name for f in files] == [HEADLINE_JSON], name
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages[name]["outs"]]
        full = Path(files[0]).with_name("ingest_summary.json" if name == "ingest" else "metrics.json")
        assert str(full) in outs, f"{name}: {full} is not an output"
