"""Typed view of ``params.yaml``: loaded once, validated at the boundary."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from lmtransfer.detection.detector import DetectConfig
from lmtransfer.detection.voting import VoterConfig
from lmtransfer.devices import ComputeParams
from lmtransfer.phantoms.head_mra import PhantomMRAConfig
from lmtransfer.phantoms.torso_ct import PhantomCTConfig
from lmtransfer.sampling.cache import PatchCacheConfig
from lmtransfer.stages.cifar_pretrain import CifarParams
from lmtransfer.stages.detect_eval import DetectEvalParams
from lmtransfer.stages.finetune import FinetuneParams
from lmtransfer.stages.ingest import DataParams, IngestParams
from lmtransfer.stages.lesion_patches import LesionParams
from lmtransfer.stages.patches import PatchesParams, SplitParams
from lmtransfer.stages.phantom_ct import PhantomCTParams
from lmtransfer.stages.phantom_mra import PhantomMRAParams
from lmtransfer.stages.pretrain import PretrainParams
from lmtransfer.stages.sim2real import Sim2RealParams
from lmtransfer.stages.train_voter import VoterParams
from lmtransfer.stages.transfer import TransferParams
from lmtransfer.stages.vessels import VesselsParams
from lmtransfer.training.train import TrainConfig
from lmtransfer.transfer.boosting import BoostConfig
from lmtransfer.transfer.cifar import CifarConfig
from lmtransfer.transfer.lesion_sources import LESION_SOURCES, PhantomLesions
from lmtransfer.transfer.lesions import LesionPatchConfig
from lmtransfer.transfer.vessels import VesselConfig
from lmtransfer.tuning.search import TuneConfig

class ConfigError(ValueError):
    """``params.yaml`` is missing, malformed or has unknown keys; the message says which."""


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    phantom_ct: PhantomCTParams = field(default_factory=PhantomCTParams)
    ingest: IngestParams = field(default_factory=IngestParams)
    patches: PatchesParams = field(default_factory=PatchesParams)
    split: SplitParams = field(default_factory=SplitParams)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    tune: TuneConfig = field(default_factory=TuneConfig)
    phantom_mra: PhantomMRAParams = field(default_factory=PhantomMRAParams)
    vessels: VesselsParams = field(default_factory=VesselsParams)
    lesion: LesionParams = field(default_factory=LesionParams)
    cifar: CifarParams = field(default_factory=CifarParams)
    transfer: TransferParams = field(default_factory=TransferParams)
    finetune: FinetuneParams = field(default_factory=FinetuneParams)
    voter: VoterParams = field(default_factory=VoterParams)
    detect: DetectEvalParams = field(default_factory=DetectEvalParams)
    sim2real: Sim2RealParams = field(default_factory=Sim2RealParams)
    compute: ComputeParams = field(default_factory=ComputeParams)


def _build(cls, values: dict[str, Any], where: str):
    """``cls(**values)`` after checking every key against the dataclass: known, of its declared type
    (elements of lists too), in range. Errors name the file, the section and the key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    hints = get_type_hints(cls)
    kwargs = {name: _check_range(name, _coerce(value, hints[name], f"{where}.{name}"), f"{where}.{name}")
              for name, value in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # the dataclass's own cross-field checks
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the declared type ``hint`` (bool, int, float, str, Path, tuples of them)."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (int, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if hint is int and value != int(value):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if get_origin(hint) is tuple:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            element_hints = [args[0]] * len(items)
        else:
            if len(items) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(items)} ({value!r})")
            element_hints = list(args)
        return tuple(_coerce(item, h, f"{where}[{i}]") for i, (item, h) in enumerate(zip(items, element_hints)))
    return value


# Ranges by key name: counts are at least 1; lengths, angles, rates and seeds are not negative;
# probabilities and fractions lie in [0, 1].
_AT_LEAST_ONE = {"workers", "threads", "batch_size", "n_cases", "max_epochs", "repeats", "n_trials", "max_voxels",
                 "epoch_patches", "pixels", "candidates", "landmarks", "bootstrap", "n_weak_learners"}


def _check_range(name: str, value: Any, where: str) -> Any:
    numbers = [v for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if name in _AT_LEAST_ONE and any(v < 1 for v in numbers):
        raise ConfigError(f"{where}: must be at least 1, got {value!r}")
    # a tuple of lengths may be a position interval (``slab_mm: [-36, 40]``): only lists of choices or steps are checked
    length_like = not isinstance(value, tuple) or "choices" in name or "steps" in name
    if length_like and (name.endswith(("_mm", "_deg", "_s", "_seed")) or "_mm_" in name
                        or name in {"lr", "weight_decay", "seed", "patience", "dropout"}) and any(v < 0 for v in numbers):
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    if ("probability" in name or "fraction" in name) and name != "fractions" and any(not 0 <= v <= 1 for v in numbers):
        raise ConfigError(f"{where}: must lie in [0, 1], got {value!r}")
    return value


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
    return parse_params(raw, str(path))


def default_params() -> Params:
    """Every setting at its default: what a command uses when there is no ``params.yaml``."""
    return parse_params({}, "defaults")


def parse_params(raw: dict, path: str) -> Params:
    """The sections of a parameter file (``path`` names it in errors), validated."""
    sections = dict(raw)
    # one thread setting for every stage: the library configs that run networks take it from ``compute``
    moved = [name for name, section in raw.items() if name != "compute" and isinstance(section, dict) and "threads" in section]
    if moved:
        raise ConfigError(f"{path}: {', '.join(f'{name}.threads' for name in moved)}: the CPU threads are one setting now, "
                          "compute.threads")
    phantom_values = sections.pop("phantom_ct", {}) or {}
    if isinstance(phantom_values, dict) and "out_dir" in phantom_values:
        raise ConfigError(f"{path}: phantom_ct.out_dir: the phantom renders into data.folder now (one name for the collection's folder)")
    phantom = _nested(PhantomCTParams, "phantom", PhantomCTConfig, phantom_values, f"{path}: phantom_ct")
    patches = _nested(PatchesParams, "patch", PatchCacheConfig, sections.pop("patches", {}), f"{path}: patches")
    pretrain = _nested(PretrainParams, "train", TrainConfig, sections.pop("pretrain", {}), f"{path}: pretrain")
    ingest_values = sections.pop("ingest", {}) or {}
    moved = sorted({"images", "landmarks"} & set(ingest_values) if isinstance(ingest_values, dict) else ())
    if moved:
        raise ConfigError(f"{path}: ingest.{'/'.join(moved)}: what is read is the data section now: data.folder holds images/, "
                          "landmarks/ and/or segmentations/ (with data.source: folder for your own scans)")
    ingest = _build(IngestParams, ingest_values, f"{path}: ingest")
    data = _build(DataParams, sections.pop("data", {}) or {}, f"{path}: data")
    split = _build(SplitParams, sections.pop("split", {}) or {}, f"{path}: split")
    tune = _build(TuneConfig, sections.pop("tune", {}) or {}, f"{path}: tune")
    later = {
        "phantom_mra": _nested(PhantomMRAParams, "phantom", PhantomMRAConfig, sections.pop("phantom_mra", {}), f"{path}: phantom_mra"),
        "vessels": _nested(VesselsParams, "vessel", VesselConfig, sections.pop("vessels", {}), f"{path}: vessels"),
        "cifar": _nested(CifarParams, "cifar", CifarConfig, sections.pop("cifar", {}), f"{path}: cifar"),
        "transfer": _nested(TransferParams, "boost", BoostConfig, sections.pop("transfer", {}), f"{path}: transfer"),
        "finetune": _build(FinetuneParams, sections.pop("finetune", {}) or {}, f"{path}: finetune"),
        "voter": _nested(VoterParams, "voter", VoterConfig, sections.pop("voter", {}), f"{path}: voter"),
        "detect": _nested(DetectEvalParams, "detect", DetectConfig, sections.pop("detect", {}), f"{path}: detect"),
        "sim2real": _build(Sim2RealParams, sections.pop("sim2real", {}) or {}, f"{path}: sim2real"),
        "compute": _build(ComputeParams, sections.pop("compute", {}) or {}, f"{path}: compute"),
    }
    threads = later["compute"].threads
    pretrain = replace(pretrain, train=replace(pretrain.train, threads=threads))
    later["cifar"] = replace(later["cifar"], cifar=replace(later["cifar"].cifar, threads=threads))
    later["detect"] = replace(later["detect"], detect=replace(later["detect"].detect, threads=threads))
    later["voter"] = replace(later["voter"], voter=replace(later["voter"].voter, threads=threads))
    # the phantom lesion source reads what the MRA phantom and vessel stages wrote: named there, once
    later["lesion"] = _lesion(sections.pop("lesion", {}), f"{path}: lesion",
                              {"phantom": PhantomLesions(later["phantom_mra"].out_dir, later["vessels"].out_dir)})
    if sections:
        raise ConfigError(f"{path}: unknown section(s) {sorted(sections)}")
    return Params(data=data, phantom_ct=phantom, ingest=ingest, patches=patches, split=split, pretrain=pretrain, tune=tune, **later)


def _lesion(values: dict | None, where: str, derived: dict) -> LesionParams:
    """The ``lesion`` section: patch settings, ``source``, and one nested mapping per registered source;
    sources in ``derived`` take their settings from other sections, not from here."""
    values = dict(values or {})
    old = sorted(k for k in values if k.startswith(("medmnist_", "luna_", "phantom_dir", "vessels_dir")))
    if old:
        raise ConfigError(f"{where}: {old}: each lesion source has its own settings now: lesion.medmnist.npz, "
                          "lesion.medmnist.positive_labels, lesion.luna16.dir, .candidates, .hu_window, .max_negatives_per_case; "
                          "the phantom reads phantom_mra.out_dir and vessels.out_dir")
    if values.get("phantom"):
        raise ConfigError(f"{where}.phantom: the phantom source has no settings of its own (it reads phantom_mra.out_dir and "
                          "vessels.out_dir)")
    values.pop("phantom", None)
    sources = {name: derived[name] if name in derived else _build(settings, values.pop(name, None) or {}, f"{where}.{name}")
               for name, settings in LESION_SOURCES.items()}
    return replace(_nested(LesionParams, "patch", LesionPatchConfig, values, where), sources=sources)


def _nested(outer, inner_name: str, inner, values: dict | None, where: str):
    """A stage section whose keys are split between the stage (``outer``) and a settings dataclass (``inner``)."""
    values = dict(values or {})
    stage_keys = {f.name for f in fields(outer)} - {inner_name}
    stage = {k: values.pop(k) for k in list(values) if k in stage_keys}
    return replace(_build(outer, stage, where), **{inner_name: _build(inner, values, where)})
