"""The command line is a table over the stage modules: every subcommand parses, every DVC stage has its module."""

import importlib
from pathlib import Path

import pytest
import yaml

from lmtransfer.cli import build_parser, main
from lmtransfer.cli import MODULES
from conftest import dvc_stages

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", MODULES)
def test_every_subcommand_has_help_and_a_runner(module, capsys):
    stage = importlib.import_module(f"lmtransfer.stages.{module}")
    assert stage.COMMAND.name == module.replace("_", "-") and callable(stage.run)
    with pytest.raises(SystemExit) as done:
        main([stage.COMMAND.name, "--help"])
    assert done.value.code == 0 and stage.COMMAND.description.split()[0] in capsys.readouterr().out


def test_every_dvc_stage_runs_a_stage_module():
    stages = dvc_stages()
    commands = {stage["cmd"].split()[1] for stage in stages.values()}
    assert commands <= {m.replace("_", "-") for m in MODULES}
    assert {p.stem for p in (ROOT / "src" / "lmtransfer" / "stages").glob("*.py")} - {"__init__"} == set(MODULES)


def test_options_reach_the_runner():
    args = build_parser().parse_args(["phantom-ct", "--n-cases", "3", "--spacing-inplane-mm", "0.7", "--quiet"])
    assert (args.n_cases, args.spacing_inplane_mm, args.quiet, args.params) == (3, 0.7, True, "params.yaml")
    assert args.func is importlib.import_module("lmtransfer.stages.phantom_ct").run


def test_main_leaves_the_sigterm_handler_as_it_found_it(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    bad = tmp_path / "params.yaml"
    bad.write_text("ingest:\n  workers: 0\n")
    assert main(["ingest", "--params", str(bad)]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
