"""`lmtransfer lesion-patches`: cut lesion and normal 2.5D patches (MRA phantom, MedMNIST 3D .npz or LUNA16 folder)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from lmtransfer.stages import Command, StagePaths, option, reads, stage_params, writes
from lmtransfer.transfer.lesion_sources import LESION_SOURCES
from lmtransfer.transfer.lesions import LesionPatchConfig

COMMAND = Command(
    name="lesion-patches",
    help="cut lesion and normal 2.5D patches (MRA phantom, MedMNIST 3D .npz or LUNA16 folder)",
    description=(
        "Lesion (label 1) and normal look-alike (label 0) patches by case, in [-1, 1], cut by the same "
        "sampler as the landmark patches. Sources (lesion.source in params.yaml, settings under lesion.<source>): "
        + "; ".join(f"{name}: {(cls.__doc__ or '').split('.')[0].strip()}" for name, cls in LESION_SOURCES.items()) + "."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section lesion)"),
        option("--source", choices=sorted(LESION_SOURCES), help="override lesion.source"),
        option("--out", help="output folder"),
        option("--quiet", action="store_true", help="no progress bar"),
    ),
)


@dataclass(frozen=True)
class LesionParams:
    """The ``lesion`` section of params.yaml: the patch settings, the chosen source and every
    source's own settings (``lesion.medmnist.*``, ``lesion.luna16.*``; the phantom's folders are the
    ``phantom_mra`` and ``vessels`` stages' outputs)."""

    patch: LesionPatchConfig = field(default_factory=LesionPatchConfig)
    source: str = "phantom"
    sources: Mapping[str, Any] = field(default_factory=dict)   # one settings object per source, filled by config.load_params
    out_dir: Path = Path("data/lesion_patches")
    workers: int = 2

    def __post_init__(self) -> None:
        if self.source not in LESION_SOURCES:
            raise ValueError(f"lesion.source must be one of {sorted(LESION_SOURCES)}, got {self.source!r}")

    def settings(self, source: str | None = None) -> Any:
        """The settings of ``source`` (default: ``lesion.source``)."""
        return self.sources[source or self.source]


@dataclass(frozen=True)
class Paths(StagePaths):
    inputs: tuple[Path, ...] = reads()
    out_dir: Path = writes()


def paths(params, args) -> Paths:
    """What the chosen source reads in; the lesion set out."""
    stage = params.lesion
    return Paths(stage.settings(args.source).inputs(), Path(args.out or stage.out_dir))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.transfer.lesions import save_lesion_set

    everything = stage_params(args)
    params, where = everything.lesion, paths(everything, args)
    source = args.source or params.source
    start = time.perf_counter()
    lesions = params.settings(source).build(params.patch, params.workers, progress=not args.quiet)
    out = save_lesion_set(lesions, where.out_dir)
    summary = lesions.summary()
    print(f"lesion patches ({source}): {summary['cases']} cases, {summary['lesion_patches']} lesion and {summary['normal_patches']} "
          f"normal patches (+{summary['augmented_lesion_copies']} augmented lesion copies), {summary['normal_by_kind']}; "
          f"{out} ({time.perf_counter() - start:.1f} s)")
    return 0
