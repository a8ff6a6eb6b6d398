"""`lmtransfer phantom-mra`: generate the built-in head MRA phantom set (TOF-like volumes, artery tree, aneurysms)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lmtransfer.phantoms.head_mra import PhantomMRAConfig
from lmtransfer.stages import Command, StagePaths, option, stage_params, writes

COMMAND = Command(
    name="phantom-mra",
    help="generate the built-in head MRA phantom set (TOF-like volumes, artery tree, aneurysms)",
    description=(
        "Render N time-of-flight-MRA-like head volumes with a circle-of-Willis artery tree and saccular "
        "aneurysms at bifurcations: int16 images, label maps (vessel 5, aneurysm 6), aneurysm centres as 3D "
        "Slicer markups, look-alike sites (bifurcations, bends, crossings). Resumes; --preview writes MIP "
        "PNGs."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section phantom_mra)"),
        option("--n-cases", type=int, help="number of cases (default: params)"),
        option("--out", help="output folder"),
        option("--workers", type=int, help="processes"),
        option("--preview", action="store_true", help="also save maximum intensity projections"),
        option("--quiet", action="store_true", help="no progress bar"),
    ),
)


@dataclass(frozen=True)
class PhantomMRAParams:
    """The ``phantom_mra`` section of params.yaml."""

    phantom: PhantomMRAConfig = field(default_factory=PhantomMRAConfig)
    out_dir: Path = Path("data/phantom_mra")
    workers: int = 2
    preview_cases: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Paths(StagePaths):
    out_dir: Path = writes()


def paths(params, args) -> Paths:
    """The folder the MRA phantom set is written to (``--out`` or ``phantom_mra.out_dir``)."""
    return Paths(out_dir=Path(args.out or params.phantom_mra.out_dir))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    import numpy as np
    import SimpleITK as sitk

    from lmtransfer.phantoms.dataset import case_id
    from lmtransfer.phantoms.head_mra import generate_dataset, save_mip_preview

    everything = stage_params(args)
    params, out_dir = everything.phantom_mra, paths(everything, args).out_dir
    cfg = params.phantom if args.n_cases is None else replace(params.phantom, n_cases=args.n_cases)
    start = time.perf_counter()
    table = generate_dataset(cfg, out_dir, workers=args.workers or params.workers, progress=not args.quiet)
    print(f"{len(table)} MRA cases in {out_dir} ({time.perf_counter() - start:.1f} s); {int((table['aneurysms'] > 0).sum())} with "
          f"aneurysms, {int(table['aneurysms'].sum())} aneurysms in all")
    if args.preview:
        for index in params.preview_cases:
            if index < cfg.n_cases:
                cid = case_id(index)
                meta = json.loads((out_dir / "meta" / f"{cid}.json").read_text())
                centres = np.array([a["centre_lps_mm"] for a in meta["aneurysm_list"]]).reshape(-1, 3)
                path = save_mip_preview(sitk.ReadImage(str(out_dir / "images" / f"{cid}.nii.gz")), centres,
                                        out_dir / "previews" / f"{cid}_mip.png", f"{cid}: {len(centres)} aneurysm(s) circled")
                print(f"preview: {path}")
    return 0
