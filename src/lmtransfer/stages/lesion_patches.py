"""`lmtransfer lesion-patches`: cut lesion and normal 2.5D patches (MRA phantom, MedMNIST 3D .npz or LUNA16 folder)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lmtransfer.stages import Command, option, stage_params
from lmtransfer.transfer.lesions import LesionPatchConfig

COMMAND = Command(
    name="lesion-patches",
    help="cut lesion and normal 2.5D patches (MRA phantom, MedMNIST 3D .npz or LUNA16 folder)",
    description=(
        "Lesion (label 1) and normal look-alike (label 0) patches by case, in [-1, 1], cut by the same "
        "sampler as the landmark patches. Sources: the MRA phantom on its extracted vessels, a MedMNIST 3D "
        ".npz, or a LUNA16-style folder with a candidates CSV (lesion.source in params.yaml)."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section lesion)"),
        option("--source", choices=["phantom", "medmnist", "luna16"], help="override lesion.source"),
        option("--out", help="output folder"),
        option("--quiet", action="store_true", help="no progress bar"),
    ),
)


@dataclass(frozen=True)
class LesionParams:
    """The ``lesion`` section of params.yaml."""

    patch: LesionPatchConfig = field(default_factory=LesionPatchConfig)
    source: str = "phantom"                      # phantom | medmnist | luna16
    phantom_dir: Path = Path("data/phantom_mra")
    vessels_dir: Path = Path("data/vessels")
    medmnist_npz: str = ""                       # a MedMNIST 3D .npz (lesion.source: medmnist)
    medmnist_positive_labels: tuple[int, ...] = (1,)
    luna_dir: str = ""                           # folder of .mhd/.nii.gz volumes named by seriesuid
    luna_candidates: str = ""                    # candidates CSV: seriesuid, coordX, coordY, coordZ (world mm), class
    luna_hu_window: tuple[float, ...] = (-1000.0, 400.0)
    luna_max_negatives_per_case: int = 40
    out_dir: Path = Path("data/lesion_patches")
    workers: int = 2


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.transfer.datasets import luna_lesion_set, medmnist_lesion_set
    from lmtransfer.transfer.lesions import phantom_lesion_set, save_lesion_set

    params = stage_params(args).lesion
    source = args.source or params.source
    start = time.perf_counter()
    if source == "phantom":
        lesions = phantom_lesion_set(params.phantom_dir, params.vessels_dir, params.patch, params.workers, progress=not args.quiet)
    elif source == "medmnist":
        if not params.medmnist_npz:
            raise FileNotFoundError("lesion.source is medmnist but lesion.medmnist_npz is empty in params.yaml")
        lesions = medmnist_lesion_set(Path(params.medmnist_npz), params.medmnist_positive_labels, params.patch.pixels)
    else:
        if not (params.luna_dir and params.luna_candidates):
            raise FileNotFoundError("lesion.source is luna16: set lesion.luna_dir and lesion.luna_candidates in params.yaml")
        lesions = luna_lesion_set(Path(params.luna_dir), Path(params.luna_candidates), params.patch, tuple(params.luna_hu_window),
                                  params.luna_max_negatives_per_case)
    out = save_lesion_set(lesions, Path(args.out or params.out_dir))
    summary = lesions.summary()
    print(f"lesion patches ({source}): {summary['cases']} cases, {summary['lesion_patches']} lesion and {summary['normal_patches']} "
          f"normal patches (+{summary['augmented_lesion_copies']} augmented lesion copies), {summary['normal_by_kind']}; "
          f"{out} ({time.perf_counter() - start:.1f} s)")
    return 0
