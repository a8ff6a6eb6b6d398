"""`lmtransfer ingest`: validate volumes + landmark files and write the manifest and a problem report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmtransfer.stages import Command, option, stage_params

COMMAND = Command(
    name="ingest",
    help="validate volumes + landmark files and write the manifest and a problem report",
    description=(
        "Read volumes (NIfTI, NRRD, MHA/MHD, DICOM series folders) and landmark files (CSV "
        "case,landmark,x,y,z[,space]; 3D Slicer .mrk.json and .fcsv; VerSe *_ctd.json), convert every "
        "landmark to LPS mm and voxel index, and write manifest.csv, ingest_report.csv (every problem, with "
        "file and reason) and ingest_summary.json."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section ingest)"),
        option("--images", help="folder of volumes / DICOM series folders"),
        option("--landmarks", nargs="+", help="landmark files or folders"),
        option("--out", help="output folder"),
        option("--workers", type=int, help="processes reading volumes"),
        option("--verify", dest="verify", action="store_true", default=None, help="read every voxel (finds truncated files, NaN)"),
        option("--no-verify", dest="verify", action="store_false", help="read headers only (fast)"),
        option("--strict", dest="strict", action="store_true", default=None, help="exit 1 when the report has errors"),
        option("--quiet", action="store_true", help="no progress bar"),
    ),
)


@dataclass(frozen=True)
class IngestParams:
    """The ``ingest`` section of params.yaml."""

    images: Path = Path("data/phantom_ct/images")
    landmarks: tuple[Path, ...] = (Path("data/phantom_ct/landmarks"),)
    out_dir: Path = Path("data/manifest")
    verify_voxels: bool = True
    workers: int = 2
    strict: bool = False
    max_voxels: int = 800_000_000   # volumes declaring more are refused from the header


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.io.manifest import build_manifest, write_outputs

    params = stage_params(args).ingest
    images = Path(args.images or params.images)
    landmarks = [Path(p) for p in (args.landmarks or params.landmarks)]
    out_dir = Path(args.out or params.out_dir)
    verify = params.verify_voxels if args.verify is None else args.verify
    manifest, report = build_manifest(images, landmarks, verify_voxels=verify, workers=args.workers or params.workers,
                                      progress=not args.quiet, max_voxels=params.max_voxels)
    summary = write_outputs(manifest, report, out_dir)
    print(f"manifest: {out_dir / 'manifest.csv'} ({summary['cases']} cases, {summary['landmarks']} landmarks, "
          f"{summary['landmark_kinds']} kinds, {summary['outside_image']} outside the image)")
    print(f"report: {out_dir / 'ingest_report.csv'} ({summary['errors']} errors, {summary['warnings']} warnings)")
    for row in report.rows[:20]:
        print(f"  {row['severity']}: {row['file']}: {row['problem']}")
    if len(report.rows) > 20:
        print(f"  ... {len(report.rows) - 20} more in the report")
    strict = params.strict if args.strict is None else args.strict
    return 1 if strict and report.n_errors else 0
