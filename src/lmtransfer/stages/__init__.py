"""The pipeline's stages, one module per `lmtransfer` subcommand (and DVC stage).

A stage module holds its params dataclass, its command-line options (:class:`Command`, a small
declarative table that ``cli.py`` turns into argparse) and ``run(args)``. Stages are the only
code that knows paths, prints, writes reports and chooses the tracker; the packages below them
take values and callbacks and return values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# subcommand modules in the order `lmtransfer --help` lists them
MODULES = ("phantom_ct", "ingest", "patches", "pretrain", "tune", "realism", "phantom_mra", "vessels", "lesion_patches",
           "cifar_pretrain", "transfer", "finetune", "detect", "detect_eval")


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
    """The validated ``params.yaml`` named by ``--params`` (imported late: config imports the stages)."""
    from lmtransfer.config import load_params

    return load_params(args.params)


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
