"""The ``lmtransfer`` command: a table of subcommands over the stage modules (``lmtransfer.stages``)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback

from lmtransfer import __version__
from lmtransfer.memory import keep_freed_memory

# the stage modules under lmtransfer.stages, in the order `lmtransfer --help` lists them (kept here, not in
# the stages package, so that adding a subcommand changes no file a DVC stage depends on)
MODULES = ("phantom_ct", "landmarks_from_seg", "ingest", "patches", "pretrain", "tune", "realism", "phantom_mra", "vessels",
           "lesion_patches", "cifar_pretrain", "transfer", "transfer_summary", "finetune", "train_voter", "detect", "detect_eval", "sim2real")


def build_parser() -> argparse.ArgumentParser:
    """One subparser per stage module, its options read from the module's :class:`~lmtransfer.stages.Command`."""
    parser = argparse.ArgumentParser(
        prog="lmtransfer",
        description="Landmark pre-training of CNNs on 3D CT and transfer to lesion recognition. "
        "Each subcommand is one pipeline job; settings come from params.yaml, options override them.",
    )
    parser.add_argument("--version", action="version", version=f"lmtransfer {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print the full traceback too (also: LMTRANSFER_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in MODULES:
        stage = importlib.import_module(f"lmtransfer.stages.{name}")
        command = stage.COMMAND
        p = sub.add_parser(command.name, help=command.help, description=command.description)
        for flags, kwargs in command.options:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(func=stage.run)
    return parser


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    from lmtransfer.config import ConfigError
    from lmtransfer.io.volumes import VolumeReadError
    from lmtransfer.transfer.cifar import CifarSourceError

    args = build_parser().parse_args(argv)
    keep_freed_memory()  # large temporaries reuse the heap instead of fresh zeroed pages (lmtransfer.memory)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # `kill` and DVC's cancel send SIGTERM: unwind like Ctrl-C, so runs are closed as KILLED
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, VolumeReadError, CifarSourceError, FileNotFoundError, ValueError, RuntimeError) as exc:
        if args.debug or os.environ.get("LMTRANSFER_DEBUG"):
            traceback.print_exc()
        print(f"lmtransfer {args.command}: error: {exc}", file=sys.stderr)
        if not isinstance(exc, (ConfigError, VolumeReadError, CifarSourceError, FileNotFoundError)):
            print(f"lmtransfer {args.command}: (`lmtransfer --debug {args.command} ...` shows where it came from)", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)  # called in-process (tests, notebooks): leave no handler behind


if __name__ == "__main__":
    sys.exit(main())
