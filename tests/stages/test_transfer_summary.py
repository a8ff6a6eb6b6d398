"""`lmtransfer transfer-summary`: one table over the transfer reports of several tasks."""

import json

from lmtransfer.cli import main


def _metrics(dataset, lm, cifar):
    return {"dataset": dataset, "weak_learners_max": 300, "lm_auc_at_10": lm, "lm_auc_at_10_ci": [lm - 0.05, lm + 0.05], "cifar_auc_at_10": cifar,
            "cifar_auc_at_10_ci": [cifar - 0.04, cifar + 0.04], "lm_minus_cifar_at_10": round(lm - cifar, 4), "lm_vs_cifar_p_at_10": 0.2,
            "lm_auc_10cases_at_10": lm - 0.1, "cifar_auc_10cases_at_10": cifar - 0.1, "verdict": "landmark pre-training made no detectable difference here"}


def test_one_row_per_task_and_source_and_each_tasks_verdict(tmp_path, capsys):
    for folder, dataset, lm, cifar in (("mra", "phantom_mra", 0.7, 0.75), ("lung", "phantom_lung_nodules", 0.9, 0.8)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "metrics.json").write_text(json.dumps(_metrics(dataset, lm, cifar)))
        (tmp_path / folder / "summary.csv").write_text(
            "source,auc_at_10,fewest_cases,auc_fewest_cases,lm_minus_source\n"
            f'lm,"{lm:.3f} [{lm - 0.05:.3f}, {lm + 0.05:.3f}]",10,"{lm - 0.1:.3f} [0.5, 0.9]",-\n'
            f'cifar,"{cifar:.3f} [{cifar - 0.04:.3f}, {cifar + 0.04:.3f}]",10,"{cifar - 0.1:.3f} [0.5, 0.9]","{lm - cifar:+.3f} [-0.1, 0.2] (0.200)"\n')
    out = tmp_path / "summary.md"
    assert main(["transfer-summary", str(tmp_path / "mra"), str(tmp_path / "lung"), "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| MRA") or line.startswith("| CT")]
    assert len(rows) == 4
    assert "| CT lung nodule (in-domain)" in text and "0.900 [0.850, 0.950]" in text and "+0.100 [-0.1, 0.2] (0.200)" in text
    assert "0.700 [0.5, 0.9] (10 cases)" in text and text.count("no detectable difference") == 2
    assert "AUC, fewest training cases (10 learners)" in text and "| 0.700 [0.650, 0.750] |" in text   # the cells as written


def test_a_broken_table_is_named(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "summary.csv").write_text('source,a\n"lm,1\n')   # a quote left open
    assert main(["transfer-summary", str(tmp_path), "--out", str(tmp_path / "s.md")]) != 0
    assert "summary.csv" in capsys.readouterr().err


def test_a_missing_report_is_named(tmp_path, capsys):
    assert main(["transfer-summary", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s.md")]) != 0
    assert "nowhere/metrics.json" in capsys.readouterr().err


def test_a_task_without_few_label_curves_shows_dashes(tmp_path):
    from lmtransfer.transfer.report import combined_summary
    import pandas as pd

    full = pd.DataFrame({"source": ["lm"], "auc_at_10": ["0.7 [0.6, 0.8]"], "fewest_cases": ["10"], "auc_fewest_cases": ["0.6 [0.5, 0.7]"]})
    bare = pd.DataFrame({"source": ["lm"], "auc_at_10": ["0.9 [0.8, 1.0]"]})
    text = combined_summary({"a": ({"dataset": "phantom_mra", "weak_learners_max": 300}, full),
                             "b": ({"dataset": "x", "weak_learners_max": 300}, bare)})
    assert "| 0.6 [0.5, 0.7] (10 cases) |" in text and "| x [b] | lm | 0.9 [0.8, 1.0] | - |" in text
