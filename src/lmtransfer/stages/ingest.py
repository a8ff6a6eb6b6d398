"""`lmtransfer ingest`: validate volumes + landmark files and write the manifest and a problem report."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lmtransfer.io.manifest import MANIFEST_CSV, OUTPUT_FILES
from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_params, write_headline, writes

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

    @property
    def manifest(self) -> Path:
        """The manifest the later stages read."""
        return Path(self.out_dir) / MANIFEST_CSV

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Manifest, problem report and summary, in ``out_dir``."""
        return tuple(Path(self.out_dir) / name for name in OUTPUT_FILES)


@dataclass(frozen=True)
class Paths(StagePaths):
    images: Path = reads()
    landmarks: tuple[Path, ...] = reads()
    manifest: Path = writes()
    report: Path = writes()
    summary: Path = writes()
    headline: Path = writes()


def paths(params, args) -> Paths:
    """Volumes and landmark files in; the manifest, problem report and summary out (``ingest`` or the command line)."""
    stage = replace(params.ingest, out_dir=Path(args.out)) if args.out else params.ingest
    return Paths(Path(args.images or stage.images), tuple(Path(p) for p in (args.landmarks or stage.landmarks)), *stage.outputs, Path(stage.out_dir) / HEADLINE_JSON)


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.io.manifest import build_manifest, write_outputs

    everything = stage_params(args)
    params, where = everything.ingest, paths(everything, args)
    images, landmarks, out_dir = where.images, list(where.landmarks), where.manifest.parent
    verify = params.verify_voxels if args.verify is None else args.verify
    manifest, report = build_manifest(images, landmarks, verify_voxels=verify, workers=args.workers or params.workers,
                                      progress=not args.quiet, max_voxels=params.max_voxels)
    summary = write_outputs(manifest, report, out_dir)
    write_headline(summary, {"cases": "cases", "errors": "errors"}, where.headline)
    print(f"manifest: {where.manifest} ({summary['cases']} cases, {summary['landmarks']} landmarks, "
          f"{summary['landmark_kinds']} kinds, {summary['outside_image']} outside the image)")
    print(f"report: {where.report} ({summary['errors']} errors, {summary['warnings']} warnings)")
    for row in report.rows[:20]:
        print(f"  {row['severity']}: {row['file']}: {row['problem']}")
    if len(report.rows) > 20:
        print(f"  ... {len(report.rows) - 20} more in the report")
    strict = params.strict if args.strict is None else args.strict
    return 1 if strict and report.n_errors else 0
