"""The pipeline's stages, one module per `lmtransfer` subcommand (and DVC stage).

A stage module holds its params dataclass, its command-line options (:class:`Command`, a small
declarative table that ``cli.py`` turns into argparse) and ``run(args)``. Stages are the only
code that knows paths, prints, writes reports and chooses the tracker; the packages below them
take values and callbacks and return values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

def option(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One command-line option: argparse's ``add_argument`` arguments, kept as data."""
    return flags, kwargs


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, description and options."""

    name: str
    help: str
    description: str
    options: tuple[tuple[tuple[str, ...], dict[str, Any]], ...]


def stage_device(args, params):
    """The resolved device: ``--device`` when given, else ``compute.device`` of params.yaml."""
    from lmtransfer.devices import resolve_device

    return resolve_device(getattr(args, "device", None) or params.compute.device)


def stage_params(args):
    """The validated parameter file named by ``--params`` (imported late: config imports the stages).

    Without ``--params`` (or with the default ``params.yaml`` where there is none), every setting
    takes its default, so a command whose options say everything runs outside a project."""
    from lmtransfer.config import default_params, load_params

    path = getattr(args, "params", None) or "params.yaml"
    if path == "params.yaml" and not Path(path).exists():
        return default_params()
    return load_params(path)


HEADLINE_JSON = "headline.json"


def write_headline(metrics: dict, keys: dict[str, str], path: Path) -> dict:
    """Write the few figures ``dvc metrics show`` and ``dvc exp show`` print for a stage and return them.

    ``keys`` maps a short column name to a key of the stage's full ``metrics`` (which stays beside
    it, in Git and in MLflow). Stages share column names where the meaning is the same (``top1``,
    ``auc_lm``, ``cases``), so the table DVC prints, one row per file and one column per distinct
    key, stays a screen wide. Keys the metrics lack (a disabled stage) are left out.
    """
    headline = {short: metrics[long] for short, long in keys.items() if long in metrics}
    path.write_text(json.dumps(headline, indent=2) + "\n")
    return headline


def reads() -> Any:
    """A :class:`StagePaths` field the stage reads (a path, a tuple of paths, or None)."""
    return field(metadata={"io": "read"})


def writes() -> Any:
    """A :class:`StagePaths` field the stage writes (a file or a folder it fills)."""
    return field(metadata={"io": "write"})


@dataclass(frozen=True)
class StagePaths:
    """Every path a stage reads or writes, worked out once from params.yaml and the command line by
    the stage's ``paths(params, args)``; ``run`` uses these and nothing else, and a test checks them
    against the stage's deps and outs in dvc.yaml."""

    def _marked(self, kind: str) -> list[Path]:
        found = []
        for f in fields(self):
            if f.metadata.get("io") == kind:
                value = getattr(self, f.name)
                found += [Path(v) for v in (value if isinstance(value, (tuple, list)) else (value,)) if v]
        return found

    def read(self) -> list[Path]:
        return self._marked("read")

    def written(self) -> list[Path]:
        return self._marked("write")
