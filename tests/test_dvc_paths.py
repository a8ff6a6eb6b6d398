"""Each path a stage reads or writes is named once (its ``paths(params, args)``, from params.yaml and
the command line) and dvc.yaml declares it: reads as the stage's deps, writes as its outs, metrics
or plots; and nothing is declared that the stage does not read or write."""

import shlex
from importlib import import_module
from pathlib import Path

import pytest
import yaml

from lmtransfer.cli import build_parser
from lmtransfer.config import load_params
from conftest import dvc_stages

ROOT = Path(__file__).resolve().parents[1]
DVC = dvc_stages()


def _names(entries) -> list[Path]:
    """Paths of a dvc.yaml list (plain strings or one-key mappings with options)."""
    return [Path(next(iter(e)) if isinstance(e, dict) else e) for e in entries or []]


def _related(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def stage_paths(stage: dict, params):
    """The stage module's own account of what ``stage['cmd']`` reads and writes."""
    args = build_parser().parse_args(shlex.split(stage["cmd"])[1:])
    module = import_module("lmtransfer.stages." + args.command.replace("-", "_"))
    return module.paths(params, args)


def undeclared(stage: dict, params) -> list[str]:
    """Disagreements between a stage's paths and its dvc.yaml entry (empty when they agree)."""
    where = stage_paths(stage, params)
    deps = [d for d in _names(stage.get("deps")) if not d.parts[0] == "src"]
    outs = _names(stage.get("outs")) + _names(stage.get("metrics")) + _names(stage.get("plots"))
    reads = [p for p in where.read() if ".." not in p.parts and not p.is_absolute()]  # files outside the project: not DVC's
    problems = [f"reads {p}, not a dep" for p in reads if not any(d == p or d in p.parents for d in deps)]
    problems += [f"writes {p}, not an out" for p in where.written() if not any(_related(o, p) for o in outs)]
    problems += [f"dep {d} is not read" for d in deps if not any(_related(d, p) for p in reads)]
    problems += [f"out {o} is not written" for o in outs if not any(o == p or p in o.parents for p in where.written())]
    return problems


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.mark.parametrize("name", sorted(DVC))
def test_dvc_yaml_declares_what_the_stage_reads_and_writes(name, params):
    assert undeclared(DVC[name], params) == [], f"stage {name} in dvc.yaml"


def test_a_stage_reads_what_the_stage_before_it_wrote(params):
    written = {p for stage in DVC.values() for p in stage_paths(stage, params).written()}
    assert stage_paths(DVC["transfer"], params).lesions in written
    assert stage_paths(DVC["patches"], params).manifest in written
    assert stage_paths(DVC["transfer"], params).lm_model == stage_paths(DVC["pretrain_60"], params).model


def test_a_missing_or_stale_declaration_is_found(params):
    stage = yaml.safe_load(yaml.safe_dump(DVC["transfer"]))
    stage["deps"] = [d for d in stage["deps"] if d != "models/cifar_cnn.pt"] + ["data/other"]
    stage["outs"] = stage["outs"] + ["reports/elsewhere.csv"]
    assert sorted(undeclared(stage, params)) == ["dep data/other is not read", "out reports/elsewhere.csv is not written",
                                                 "reads models/cifar_cnn.pt, not a dep"]


def _cached(entries) -> list[Path]:
    """Paths of a dvc.yaml list that DVC keeps in its cache (the default; ``cache: false`` opts out)."""
    kept = []
    for entry in entries or []:
        path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, None)
        if (options or {}).get("cache", True):
            kept.append(Path(path))
    return kept


def test_no_cached_output_is_also_a_git_file():
    """`dvc repro` refuses to save a stage whose cached output Git tracks ("already tracked by SCM")."""
    import subprocess

    tracked = [Path(p) for p in subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()]
    both = [f"{name}: {out}" for name, stage in DVC.items()
            for out in _cached(stage.get("outs")) + _cached(stage.get("metrics")) + _cached(stage.get("plots"))
            if any(_related(out, file) for file in tracked)]
    assert not both, both
