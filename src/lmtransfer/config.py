"""Typed view of ``params.yaml``: loaded once, validated at the boundary."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from lmtransfer.phantoms.torso_ct import PhantomCTConfig


class ConfigError(ValueError):
    """``params.yaml`` is missing, malformed or has unknown keys; the message says which."""


@dataclass(frozen=True)
class PhantomCTParams:
    phantom: PhantomCTConfig = field(default_factory=PhantomCTConfig)
    out_dir: Path = Path("data/phantom_ct")
    workers: int = 2
    preview_cases: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class IngestParams:
    images: Path = Path("data/phantom_ct/images")
    landmarks: tuple[Path, ...] = (Path("data/phantom_ct/landmarks"),)
    out_dir: Path = Path("data/manifest")
    verify_voxels: bool = True
    workers: int = 2
    strict: bool = False


@dataclass(frozen=True)
class Params:
    phantom_ct: PhantomCTParams = field(default_factory=PhantomCTParams)
    ingest: IngestParams = field(default_factory=IngestParams)


def _build(cls, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if isinstance(default, Path):
            value = Path(value)
        elif isinstance(default, tuple):
            items = value if isinstance(value, (list, tuple)) else [value]
            value = tuple(Path(v) if default and isinstance(default[0], Path) else v for v in items)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{name}: expected true or false, got {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
            raise ConfigError(f"{where}.{name}: expected a number, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read ``params.yaml``; sections and keys not given take the defaults above."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameter file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    sections = dict(raw)
    phantom_raw = dict(sections.pop("phantom_ct", {}) or {})
    stage_keys = {f.name for f in fields(PhantomCTParams)} - {"phantom"}
    stage = {k: phantom_raw.pop(k) for k in list(phantom_raw) if k in stage_keys}
    phantom = _build(PhantomCTConfig, phantom_raw, f"{path}: phantom_ct")
    phantom_params = _build(PhantomCTParams, stage, f"{path}: phantom_ct")
    ingest = _build(IngestParams, sections.pop("ingest", {}) or {}, f"{path}: ingest")
    # sections of later stages are read by their own loaders
    return Params(phantom_ct=replace(phantom_params, phantom=phantom), ingest=ingest)
