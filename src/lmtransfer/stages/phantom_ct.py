"""`lmtransfer phantom-ct`: generate the built-in torso CT phantom set (volumes in HU + 64 landmarks in LPS mm)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lmtransfer.phantoms.torso_ct import PhantomCTConfig
from lmtransfer.stages import Command, StagePaths, option, stage_params, writes

COMMAND = Command(
    name="phantom-ct",
    help="generate the built-in torso CT phantom set (volumes in HU + 64 landmarks in LPS mm)",
    description=(
        "Render N procedural torso CT cases: int16 HU volumes (.nii.gz), tissue label maps, landmarks inside "
        "each image as 3D Slicer markups (LPS mm), per-case parameters. Deterministic from the seed; cases "
        "already written with the same settings are kept, so an interrupted run resumes."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section phantom_ct)"),
        option("--n-cases", type=int, help="number of cases (default: params)"),
        option("--seed", type=int, help="random seed (default: params)"),
        option("--spacing-inplane-mm", type=float, help="in-plane spacing, e.g. 0.7 for clinical resolution"),
        option("--out", help="output folder (default: params)"),
        option("--workers", type=int, help="processes (default: params)"),
        option("--preview", action="store_true", help="also save PNGs of three planes with landmarks"),
        option("--quiet", action="store_true", help="no progress bar"),
    ),
)


@dataclass(frozen=True)
class PhantomCTParams:
    """The ``phantom_ct`` section of params.yaml."""

    phantom: PhantomCTConfig = field(default_factory=PhantomCTConfig)
    workers: int = 2
    preview_cases: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Paths(StagePaths):
    out_dir: Path = writes()


def paths(params, args) -> Paths:
    """The folder the phantom set is written to: ``--out``, or the collection's ``data.folder`` when
    ``data.source`` is the phantom (never a folder of your own scans)."""
    if not args.out and params.data.source != "phantom":
        raise ValueError(f"data.source is {params.data.source}: the phantom is not rendered into data.folder ({params.data.folder}); "
                         "name a folder with --out")
    return Paths(out_dir=Path(args.out or params.data.folder))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.phantoms.torso_ct import case_id, generate_dataset, write_index

    everything = stage_params(args)
    params, out_dir = everything.phantom_ct, paths(everything, args).out_dir
    cfg = params.phantom
    if args.n_cases is not None:
        cfg = replace(cfg, n_cases=args.n_cases)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if args.spacing_inplane_mm is not None:
        cfg = replace(cfg, spacing_inplane_mm=args.spacing_inplane_mm)
    workers = args.workers or params.workers
    start = time.perf_counter()
    table = generate_dataset(cfg, out_dir, workers=workers, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    print(f"{len(table)} cases in {out_dir} ({elapsed:.1f} s); "
          f"landmarks inside the image per case: {table['landmarks_in_image'].min()}-{table['landmarks_in_image'].max()} of 64")
    if args.preview:
        import numpy as np
        import SimpleITK as sitk

        from lmtransfer.phantoms.preview import save_preview

        for index in params.preview_cases:
            if index >= cfg.n_cases:
                continue
            cid = case_id(index)
            meta = json.loads((out_dir / "meta" / f"{cid}.json").read_text())
            visible = {k: np.array(v["lps_mm"]) for k, v in meta["landmarks"].items() if v["in_image"]}
            image = sitk.ReadImage(str(out_dir / "images" / f"{cid}.nii.gz"))
            path = save_preview(image, visible, out_dir / "previews" / f"{cid}.png", title=f"{cid} ({meta['phase']} phase)")
            print(f"preview: {path}")
    write_index(out_dir, cfg.n_cases)
    return 0
