"""The pipeline's stages, one module per `lmtransfer` subcommand (and DVC stage).

A stage module holds its params dataclass, its command-line options (:class:`Command`, a small
declarative table that ``cli.py`` turns into argparse) and ``run(args)``. Stages are the only
code that knows paths, prints, writes reports and chooses the tracker; the packages below them
take values and callbacks and return values.
"""

from __future__ import annotations

from dataclasses import dataclass
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
