"""`lmtransfer patches`: cut the 2.5D patch cache (landmarks + background) and the case splits."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmtransfer.sampling.cache import PatchCacheConfig
from lmtransfer.stages import Command, StagePaths, option, reads, stage_params, writes

COMMAND = Command(
    name="patches",
    help="cut the 2.5D patch cache (landmarks + background) and the case splits",
    description=(
        "Cut every landmark-centred and background 2.5D patch (axial, coronal, sagittal planes, resampled to "
        "fov_mm) from the manifest's volumes once, into data/patches (int16 HU array + index), and fix the "
        "train/validation/test cases. Resumes per case."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (sections patches, split)"),
        option("--manifest", help="manifest.csv from `lmtransfer ingest`"),
        option("--out", help="cache folder"),
        option("--splits", help="where to write the case splits (JSON)"),
        option("--workers", type=int, help="processes"),
        option("--quiet", action="store_true", help="no progress bar"),
    ),
)


@dataclass(frozen=True)
class PatchesParams:
    """The ``patches`` section of params.yaml."""

    patch: PatchCacheConfig = field(default_factory=PatchCacheConfig)
    out_dir: Path = Path("data/patches")
    workers: int = 2


@dataclass(frozen=True)
class SplitParams:
    """The ``split`` section of params.yaml."""

    fractions: tuple[float, ...] = (0.7, 0.15, 0.15)
    seed: int = 0
    out: Path = Path("data/splits.json")


@dataclass(frozen=True)
class Paths(StagePaths):
    manifest: Path = reads()
    out_dir: Path = writes()
    splits: Path = writes()


def paths(params, args) -> Paths:
    """The ingest stage's manifest in; the patch cache and the case splits out."""
    return Paths(Path(args.manifest or params.ingest.manifest), Path(args.out or params.patches.out_dir),
                 Path(args.splits or params.split.out))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    import pandas as pd

    from lmtransfer.sampling.cache import build_patch_cache, file_hash, split_cases
    from lmtransfer.io.manifest import read_manifest

    params = stage_params(args)
    stage, where = params.patches, paths(params, args)
    manifest_path = where.manifest
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: manifest not found; run `lmtransfer ingest` first")
    manifest = read_manifest(manifest_path)
    out_dir = where.out_dir
    start = time.perf_counter()
    build_patch_cache(manifest, file_hash(manifest_path), stage.patch, out_dir, workers=args.workers or stage.workers, progress=not args.quiet)
    splits = split_cases(sorted(manifest.loc[manifest["in_image"].astype(bool), "case"].unique()), params.split.fractions, params.split.seed)
    split_path = where.splits
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split_path.write_text(json.dumps(splits, indent=1) + "\n")
    index = pd.read_csv(out_dir / "index.csv")
    print(f"patch cache: {out_dir} ({len(index)} patches, {index['name'].nunique()} names, "
          f"{time.perf_counter() - start:.1f} s); splits: {split_path} "
          f"({len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])} cases)")
    return 0
