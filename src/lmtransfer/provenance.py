"""Which code made an output: the lmtransfer source files a module imports, transitively, and their digest.

Used by the phantoms' resume fingerprints (a case written by other code is rendered again) and
by the test that every DVC stage lists the code it runs among its deps. Imports are read from
the source text (``ast``), function-local ones included, so nothing is imported to find them.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent  # src/lmtransfer


def module_file(name: str) -> Path | None:
    """The source file of ``lmtransfer.x.y`` (a module or a package's ``__init__.py``), or None."""
    parts = name.split(".")
    if parts[0] != "lmtransfer":
        return None
    path = PACKAGE_ROOT.joinpath(*parts[1:])
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_modules(tree: ast.AST) -> set[str]:
    """``lmtransfer`` modules imported anywhere in ``tree`` (``from lmtransfer.a import b`` counts
    ``lmtransfer.a.b`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "lmtransfer")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "lmtransfer":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}"))
    return found


def module_closure(modules: Iterable[str], exclude: Iterable[str] = ()) -> list[Path]:
    """Source files of ``modules`` and of every lmtransfer module they import, transitively
    (packages' ``__init__.py`` included), sorted; ``exclude`` modules are neither listed nor followed."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    skip = set(exclude)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or name in skip or path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imported_modules(ast.parse(path.read_text())))
    return sorted(set(seen.values()))


def source_digest(module: str) -> str:
    """Hash of the source of ``module`` and all the lmtransfer code it imports."""
    digest = hashlib.sha256()
    for path in module_closure([module]):
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
