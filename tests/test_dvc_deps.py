"""`dvc.yaml` lists the code every stage runs: edit any module a stage imports and DVC re-runs it."""

import ast
from pathlib import Path

import pytest
import yaml

from lmtransfer.provenance import PACKAGE_ROOT, module_closure, module_file
from conftest import dvc_stages

ROOT = Path(__file__).resolve().parents[1]
STAGES = dvc_stages()
# config.py only parses and checks params.yaml (DVC tracks the values themselves) and imports every
# stage for their params dataclasses: followed, it would make every stage depend on all the code.
NOT_FOLLOWED = ("lmtransfer.config",)


def stage_code(stage: dict) -> list[Path]:
    """Source files of the stage module behind `lmtransfer SUBCOMMAND` and all it imports, transitively."""
    module = "lmtransfer.stages." + stage["cmd"].split()[1].replace("-", "_")
    assert module_file(module), f"{stage['cmd']}: no stage module {module}"
    return module_closure([module], exclude=NOT_FOLLOWED)


def _is_code_free(init: Path) -> bool:
    """A package ``__init__.py`` holding only a docstring and ``__version__`` cannot change an output."""
    body = ast.parse(init.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) or
               isinstance(n, ast.Assign) and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["__version__"] for n in body)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(name):
    stage = STAGES[name]
    deps = [ROOT / d for d in stage.get("deps", []) if d.startswith("src/")]
    code = stage_code(stage)
    assert any(p.name == "cli.py" for p in module_closure(["lmtransfer.cli"]))  # the walk itself works
    missing = [p for p in code if not any(p == d or d in p.parents for d in deps)
               and not (p.name == "__init__.py" and _is_code_free(p))]
    assert not missing, f"stage {name}: add to its deps in dvc.yaml: {[str(p.relative_to(ROOT)) for p in missing]}"


def test_every_dep_exists():
    for name, stage in STAGES.items():
        for dep in stage.get("deps", []):
            if dep.startswith("src/"):
                assert (ROOT / dep).exists(), f"stage {name}: dep {dep} does not exist"


def test_phantom_fingerprints_cover_the_code_they_run():
    from lmtransfer.phantoms.head_mra import PhantomMRAConfig
    from lmtransfer.phantoms.torso_ct import PhantomCTConfig
    from lmtransfer.provenance import source_digest

    assert source_digest("lmtransfer.phantoms.torso_ct") in PhantomCTConfig().fingerprint()
    assert source_digest("lmtransfer.phantoms.head_mra") in PhantomMRAConfig().fingerprint()
    mra_code = {p.relative_to(PACKAGE_ROOT).as_posix() for p in module_closure(["lmtransfer.phantoms.head_mra"])}
    assert {"phantoms/noise.py", "phantoms/dataset.py", "phantoms/shapes.py"} <= mra_code  # what the MRA phantom runs
    assert "phantoms/torso_ct.py" not in mra_code  # the shared noise lives in its own module now
