"""Typed view of ``params.yaml``: loaded once, validated at the boundary."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from lmtransfer.phantoms.torso_ct import PhantomCTConfig
from lmtransfer.sampling.cache import PatchCacheConfig
from lmtransfer.training.train import TrainConfig
from lmtransfer.tuning.search import TuneConfig


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
class PatchesParams:
    patch: PatchCacheConfig = field(default_factory=PatchCacheConfig)
    manifest: Path = Path("data/manifest/manifest.csv")
    out_dir: Path = Path("data/patches")
    workers: int = 2


@dataclass(frozen=True)
class SplitParams:
    fractions: tuple[float, ...] = (0.7, 0.15, 0.15)
    seed: int = 0
    out: Path = Path("data/splits.json")


@dataclass(frozen=True)
class PretrainParams:
    train: TrainConfig = field(default_factory=TrainConfig)
    class_order_seed: int = 0
    track: bool = True


@dataclass(frozen=True)
class Params:
    phantom_ct: PhantomCTParams = field(default_factory=PhantomCTParams)
    ingest: IngestParams = field(default_factory=IngestParams)
    patches: PatchesParams = field(default_factory=PatchesParams)
    split: SplitParams = field(default_factory=SplitParams)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    tune: TuneConfig = field(default_factory=TuneConfig)


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
        elif isinstance(default, (int, float)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{where}.{name}: expected a number, got {value!r}")
            if isinstance(default, float):
                value = float(value)
            elif value != int(value):
                raise ConfigError(f"{where}.{name}: expected a whole number, got {value!r}")
            else:
                value = int(value)
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
    phantom = _nested(PhantomCTParams, "phantom", PhantomCTConfig, sections.pop("phantom_ct", {}), f"{path}: phantom_ct")
    patches = _nested(PatchesParams, "patch", PatchCacheConfig, sections.pop("patches", {}), f"{path}: patches")
    pretrain = _nested(PretrainParams, "train", TrainConfig, sections.pop("pretrain", {}), f"{path}: pretrain")
    ingest = _build(IngestParams, sections.pop("ingest", {}) or {}, f"{path}: ingest")
    split = _build(SplitParams, sections.pop("split", {}) or {}, f"{path}: split")
    tune = _build(TuneConfig, sections.pop("tune", {}) or {}, f"{path}: tune")
    # sections of later stages are read by their own loaders
    return Params(phantom_ct=phantom, ingest=ingest, patches=patches, split=split, pretrain=pretrain, tune=tune)


def _nested(outer, inner_name: str, inner, values: dict | None, where: str):
    """A stage section whose keys are split between the stage (``outer``) and a settings dataclass (``inner``)."""
    values = dict(values or {})
    stage_keys = {f.name for f in fields(outer)} - {inner_name}
    stage = {k: values.pop(k) for k in list(values) if k in stage_keys}
    return replace(_build(outer, stage, where), **{inner_name: _build(inner, values, where)})
