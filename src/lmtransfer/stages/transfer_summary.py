"""`lmtransfer transfer-summary`: one table over every transfer task (MRA aneurysm, CT lung nodule, ...)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmtransfer.stages import Command, StagePaths, option, reads, writes

COMMAND = Command(
    name="transfer-summary",
    help="one summary table over the transfer reports of every task",
    description="Reads each report folder's metrics.json and summary.csv (written by `lmtransfer transfer`) and writes one Markdown table: per "
                "task and feature source the AUC at 5/10/50/all weak learners with intervals, with the fewest training cases, "
                "and LM minus the source, then each task's sentences.",
    options=(
        option("reports", nargs="+", help="transfer report folders, one per task"),
        option("--out", default="reports/transfer_summary.md", help="the Markdown file to write"),
    ),
)


@dataclass(frozen=True)
class Paths(StagePaths):
    metrics: tuple[Path, ...] = reads()
    tables: tuple[Path, ...] = reads()
    out: Path = writes()


def paths(params, args) -> Paths:
    """Each report folder's metrics.json and summary.csv in, the summary out (all from the command line)."""
    return Paths(tuple(Path(r) / "metrics.json" for r in args.reports), tuple(Path(r) / "summary.csv" for r in args.reports),
                 Path(args.out))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    import pandas as pd

    from lmtransfer.transfer.report import combined_summary

    where = paths(None, args)
    tasks = {}
    for metrics, table in zip(where.metrics, where.tables):
        for path in (metrics, table):
            if not path.exists():
                raise FileNotFoundError(f"{path}: no transfer report here; run `lmtransfer transfer --out {path.parent}` first")
        try:
            tasks[str(metrics.parent)] = (json.loads(metrics.read_text()), pd.read_csv(table, dtype=str, keep_default_na=False))
        except (ValueError, pd.errors.ParserError) as exc:
            raise ValueError(f"{metrics.parent}: unreadable metrics.json or summary.csv ({exc})") from exc
    where.out.parent.mkdir(parents=True, exist_ok=True)
    where.out.write_text(combined_summary(tasks))
    print(f"{where.out}: {len(tasks)} task(s)")
    return 0
