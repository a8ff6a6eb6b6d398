"""`lmtransfer transfer-summary`: one table over the transfer reports of several tasks."""

import json

from lmtransfer.cli import main


def _metrics(dataset, lm, cifar):
    return {"dataset": dataset, "lm_auc_at_10": lm, "lm_auc_at_10_ci": [lm - 0.05, lm + 0.05], "cifar_auc_at_10": cifar,
            "cifar_auc_at_10_ci": [cifar - 0.04, cifar + 0.04], "lm_minus_cifar_at_10": round(lm - cifar, 4), "lm_vs_cifar_p_at_10": 0.2,
            "lm_auc_10cases_at_10": lm - 0.1, "cifar_auc_10cases_at_10": cifar - 0.1, "verdict": "landmark pre-training made no detectable difference here"}


def test_one_row_per_task_and_source_and_each_tasks_verdict(tmp_path, capsys):
    for folder, dataset, lm, cifar in (("mra", "phantom_mra", 0.7, 0.75), ("lung", "phantom_lung_nodules", 0.9, 0.8)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "metrics.json").write_text(json.dumps(_metrics(dataset, lm, cifar)))
    out = tmp_path / "summary.md"
    assert main(["transfer-summary", str(tmp_path / "mra"), str(tmp_path / "lung"), "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| MRA") or line.startswith("| CT")]
    assert len(rows) == 4
    assert "| CT lung nodule (in-domain)" in text and "0.900 [0.850, 0.950]" in text and "+0.100 (0.200)" in text
    assert "0.800 (10 cases)" in text and text.count("no detectable difference") == 2


def test_a_missing_report_is_named(tmp_path, capsys):
    assert main(["transfer-summary", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s.md")]) != 0
    assert "nowhere/metrics.json" in capsys.readouterr().err
