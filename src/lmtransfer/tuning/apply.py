"""Write a tuned setting back into ``params.yaml``, keeping its comments and layout.

Only the value of each ``section.key`` line changes, so ``git diff`` / ``dvc params diff`` show
exactly what the search changed and ``dvc repro`` re-runs the stages that depend on it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

# study parameter -> params.yaml key
PARAM_KEYS = {"fov_mm": "patches.fov_mm", "depth": "pretrain.depth", "width": "pretrain.width",
              "lr": "pretrain.lr", "weight_decay": "pretrain.weight_decay"}


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e6:
            return f"{value:.1f}"
        return f"{value:.6g}" if "e" not in f"{value:.6g}" else f"{value:.3e}"
    return str(value)


def set_values(path: Path, updates: dict[str, object]) -> dict[str, tuple[object, object]]:
    """Set ``{"section.key": value}`` in the YAML file at ``path``; returns ``{key: (old, new)}``.

    Raises:
        KeyError: a section or key is not in the file (nothing is written then).
    """
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)
    changes: dict[str, tuple[object, object]] = {}
    for dotted, value in updates.items():
        section, key = dotted.split(".", 1)
        start = next((i for i, line in enumerate(lines) if re.match(rf"^{re.escape(section)}:\s*(#.*)?$", line)), None)
        if start is None:
            raise KeyError(f"{path}: no section {section!r}")
        for i in range(start + 1, len(lines)):
            if re.match(r"^\S", lines[i]):
                raise KeyError(f"{path}: no key {key!r} in section {section!r}")
            match = re.match(rf"^(\s+{re.escape(key)}:\s*)([^#\n]*?)(\s*#.*)?(\n?)$", lines[i])
            if match:
                new_text = format_value(value)
                pad = match.group(3) or ""
                if pad and len(new_text) < len(match.group(2)):  # keep comments aligned where possible
                    pad = " " * (len(match.group(2)) - len(new_text)) + pad
                lines[i] = f"{match.group(1)}{new_text}{pad}{match.group(4)}"
                changes[dotted] = (yaml.safe_load(match.group(2)), yaml.safe_load(new_text))
                break
        else:
            raise KeyError(f"{path}: no key {key!r} in section {section!r}")
    text = "".join(lines)
    yaml.safe_load(text)  # still valid YAML
    temporary = path.with_name(f".tmp_{os.getpid()}_{path.name}")
    temporary.write_text(text)
    os.replace(temporary, path)  # atomic: a kill leaves the old file or the new one, never half of it
    return changes


NATIVE_FOV_KEY = "lesion.native_fov_mm"   # the lesion set's native patches follow the landmark CNN's field of view


def apply_best(path: Path, best_params: dict) -> dict[str, tuple[object, object]]:
    """Write the study's best parameters to their ``params.yaml`` keys; a new field of view also goes
    to ``lesion.native_fov_mm`` when native patches are cut (non-zero), so they stay the CNN's own."""
    updates = {PARAM_KEYS[k]: v for k, v in best_params.items() if k in PARAM_KEYS}
    if "fov_mm" in best_params:
        section, key = NATIVE_FOV_KEY.split(".")
        if (yaml.safe_load(Path(path).read_text()) or {}).get(section, {}).get(key):
            updates[NATIVE_FOV_KEY] = best_params["fov_mm"]
    return set_values(path, updates)
