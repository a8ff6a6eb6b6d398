"""`lmtransfer ingest`: validate volumes + landmark files and write the manifest and a problem report."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from lmtransfer.io.manifest import MANIFEST_CSV, OUTPUT_FILES
from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_params, write_headline, writes

COMMAND = Command(
    name="ingest",
    help="validate volumes + landmark files (or derive landmarks from label maps) and write the manifest and a problem report",
    description=(
        "Read volumes (NIfTI, NRRD, MHA/MHD, DICOM series folders) and landmark files (CSV "
        "case,landmark,x,y,z[,space]; 3D Slicer .mrk.json and .fcsv; VerSe *_ctd.json), convert every "
        "landmark to LPS mm and voxel index, and write manifest.csv, ingest_report.csv (every problem, with "
        "file and reason) and ingest_summary.json. With --segmentations (or a segmentations/ folder in "
        "data.folder), landmarks are also derived from each case's label map (as `landmarks-from-seg` does) "
        "for the kinds its landmark files do not give."
    ),
    options=(
        option("--params", help="parameter file (sections data, ingest; default params.yaml when it exists)"),
        option("--images", help="folder of volumes / DICOM series folders (default: data.folder/images)"),
        option("--landmarks", nargs="+", help="landmark files or folders (default: data.folder/landmarks when it exists)"),
        option("--segmentations", help="folder of label maps named as their volumes (default: data.folder/segmentations when it exists)"),
        option("--labels", help="the label maps' table: totalsegmentator_v2 or a CSV id,name (default: data.label_table)"),
        option("--out", help="output folder"),
        option("--workers", type=int, help="processes reading volumes and deriving landmarks"),
        option("--verify", dest="verify", action="store_true", default=None, help="read every voxel (finds truncated files, NaN)"),
        option("--no-verify", dest="verify", action="store_false", help="read headers only (fast)"),
        option("--strict", dest="strict", action="store_true", default=None, help="exit 1 when the report has errors"),
        option("--quiet", action="store_true", help="no progress bar"),
    ),
)

SOURCES = ("phantom", "folder")
PHANTOMS = ("torso",)   # the phantom stages `data.render` may list (dvc.yaml's `phantom_ct` foreach)


@dataclass(frozen=True)
class DataParams:
    """The ``data`` section of params.yaml: where the CT collection the landmark CNN learns from comes from.

    ``folder`` holds ``images/`` (volumes or DICOM series folders) and ``landmarks/`` (landmark
    files) and/or ``segmentations/`` (one label map per image, named like it, with the labels of
    ``label_table``). With ``source: phantom`` that folder is what the torso phantom renders; with
    ``folder`` it is yours, and the phantom is not rendered. DVC has no conditional stages, so
    ``render`` (the phantom stages ``dvc repro`` runs) says the same as ``source`` and is checked
    against it.
    """

    source: str = "phantom"
    render: tuple[str, ...] = PHANTOMS
    folder: Path = Path("data/phantom_ct")
    label_table: str = "totalsegmentator_v2"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"data.source must be one of {list(SOURCES)}, got {self.source!r}")
        unknown = sorted(set(self.render) - set(PHANTOMS))
        if unknown:
            raise ValueError(f"data.render: unknown phantom(s) {unknown}; known: {list(PHANTOMS)}")
        wanted = PHANTOMS if self.source == "phantom" else ()
        if tuple(self.render) != wanted:
            raise ValueError(f"data.render must be {list(wanted)} with data.source {self.source} (it tells DVC whether the "
                             f"phantom stage runs), got {list(self.render)}")
        from lmtransfer.anatomy.labels import BUILT_IN

        if self.label_table not in BUILT_IN and Path(self.folder) not in Path(self.label_table).parents:
            raise ValueError(f"data.label_table {self.label_table}: a table of your own (CSV id,name) goes in data.folder "
                             f"({self.folder}), which DVC tracks; built in: {', '.join(BUILT_IN)}")

    @property
    def images(self) -> Path:
        return Path(self.folder) / "images"

    @property
    def landmarks(self) -> Path:
        return Path(self.folder) / "landmarks"

    @property
    def segmentations(self) -> Path:
        return Path(self.folder) / "segmentations"


@dataclass(frozen=True)
class IngestParams:
    """The ``ingest`` section of params.yaml (what is read: the ``data`` section)."""

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

    @property
    def derived(self) -> Path:
        """Landmarks derived from label maps, one CSV (and its derivation report) per case."""
        return Path(self.out_dir) / "derived"


@dataclass(frozen=True)
class Paths(StagePaths):
    images: Path = reads()
    landmarks: tuple[Path, ...] = reads()
    segmentations: Path | None = reads()
    label_table: Path | None = reads()
    manifest: Path = writes()
    report: Path = writes()
    summary: Path = writes()
    headline: Path = writes()
    derived: Path = writes()


def paths(params, args) -> Paths:
    """Volumes, landmark files and label maps in (``data`` or the command line); the manifest,
    problem report, summary and derived landmarks out."""
    from lmtransfer.anatomy.labels import BUILT_IN

    data = params.data
    stage = replace(params.ingest, out_dir=Path(args.out)) if args.out else params.ingest
    if args.images:   # everything from the command line: data.folder's subfolders only when named
        landmarks = tuple(Path(p) for p in args.landmarks or ())
        segmentations = Path(args.segmentations) if args.segmentations else None
    else:
        landmarks = tuple(Path(p) for p in args.landmarks) if args.landmarks else tuple(p for p in (data.landmarks,) if p.is_dir())
        segmentations = Path(args.segmentations) if args.segmentations else (data.segmentations if data.segmentations.is_dir() else None)
    table = args.labels or data.label_table
    return Paths(Path(args.images or data.images), landmarks, segmentations,
                 None if segmentations is None or table in BUILT_IN else Path(table), *stage.outputs,
                 Path(stage.out_dir) / HEADLINE_JSON, stage.derived)


DERIVED_SUFFIXES = (".csv", ".csv.tmp", ".json")


def _derive_case(label_map: Path, case: str, table_spec: str, out_dir: Path, code_and_table: str) -> dict:
    """Derive one case's landmarks into ``out_dir/<case>.csv`` (kept when its key, the label map's bytes
    with ``code_and_table``, matches: a resumed ingest skips the cases it finished); the derivation summary."""
    import pandas as pd

    from lmtransfer.anatomy.derive import derive_landmarks
    from lmtransfer.anatomy.labels import LabelTable
    from lmtransfer.io.volumes import read_volume

    key = code_and_table
    if label_map.is_file():   # a DICOM series folder is keyed by code and table only
        key = hashlib.sha256(code_and_table.encode() + label_map.read_bytes()).hexdigest()[:16]
    report = out_dir / f"{case}.json"
    if report.exists() and (out_dir / f"{case}.csv").exists():
        done = json.loads(report.read_text())
        if done.get("key") == key:
            return done
    derived, summary = derive_landmarks(read_volume(label_map), LabelTable.resolve(table_spec))
    found = derived[derived["derived"]] if not summary["inconsistencies"] else derived.iloc[:0]
    rows = pd.DataFrame({"case": case, "landmark": found["landmark"], "x": found["x"], "y": found["y"], "z": found["z"],
                         "space": "LPS"})
    rows.to_csv(out_dir / f"{case}.csv.tmp", index=False, float_format="%.3f")
    (out_dir / f"{case}.csv.tmp").replace(out_dir / f"{case}.csv")
    summary = {"case": case, "source": str(label_map), "key": key, **summary}
    report.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def derive_folder(segmentations: Path, table_spec: str, out_dir: Path, workers: int, progress: bool) -> list[tuple[str, str, str, str]]:
    """Landmarks from every label map in ``segmentations``, one CSV per case in ``out_dir`` (stale
    ones removed); the problems as ``(severity, case, file, problem)`` for the ingest report."""
    from lmtransfer.anatomy.derive import derivation_warnings
    from lmtransfer.anatomy.labels import LabelTable
    from lmtransfer.io.manifest import map_cases
    from lmtransfer.io.volumes import case_id_from_path, find_volumes
    from lmtransfer.provenance import source_digest

    table = LabelTable.resolve(table_spec)   # a bad table is named before any work
    maps = find_volumes(Path(segmentations))
    if not maps:
        raise FileNotFoundError(f"{segmentations}: no label maps found (.nii.gz, .nii, .nrrd, .mha, .mhd)")
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = [case_id_from_path(p) for p in maps]
    for stale in out_dir.iterdir():
        if not any(stale.name.removesuffix(suffix) in cases for suffix in DERIVED_SUFFIXES if stale.name.endswith(suffix)):
            stale.unlink()
    code_and_table = f"{source_digest('lmtransfer.anatomy.derive')}\0{json.dumps(sorted(table.names.items()))}\0"
    results = map_cases(_derive_case, maps, cases, [table_spec] * len(maps), [out_dir] * len(maps), [code_and_table] * len(maps),
                        workers=workers, progress=progress, desc="deriving landmarks", errors=(Exception,))
    problems = []
    for path, case, result in zip(maps, cases, results):
        if isinstance(result, Exception):
            problems.append(("error", case, str(path), str(result).removeprefix(f"{path}: ")))
            continue
        if result["inconsistencies"]:
            problems.append(("error", case, str(path), "derived landmarks contradict anatomy (" + "; ".join(result["inconsistencies"])
                             + f"); does the label table {table.source} fit this map? None of them is used"))
        problems += [("warning", case, str(path), warning) for warning in derivation_warnings(result)]
    return problems


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.io.manifest import build_manifest, write_outputs

    everything = stage_params(args)
    params, where = everything.ingest, paths(everything, args)
    out_dir = where.manifest.parent
    workers = args.workers or params.workers
    if not where.landmarks and where.segmentations is None:
        raise FileNotFoundError(f"{where.images.parent}: no landmarks/ or segmentations/ folder (nor --landmarks, --segmentations): "
                                "nothing says where the landmarks are")
    problems, derived = [], where.segmentations is not None
    if derived:
        problems = derive_folder(where.segmentations, args.labels or everything.data.label_table, where.derived, workers, not args.quiet)
    else:  # no label maps: an empty folder (a DVC output either way), nothing left from an earlier run
        shutil.rmtree(where.derived, ignore_errors=True)
        where.derived.mkdir(parents=True)
    verify = params.verify_voxels if args.verify is None else args.verify
    manifest, report = build_manifest(where.images, list(where.landmarks), derived_sources=[where.derived] if derived else [],
                                      verify_voxels=verify, workers=workers, progress=not args.quiet, max_voxels=params.max_voxels)
    for problem in problems:
        report.add(*problem)
    summary = write_outputs(manifest, report, out_dir, where.derived if derived else None)
    write_headline(summary, {"cases": "cases", "errors": "errors"}, where.headline)
    print(f"manifest: {where.manifest} ({summary['cases']} cases, {summary['landmarks']} landmarks, "
          f"{summary['landmark_kinds']} kinds, {summary['outside_image']} outside the image"
          + (f", {summary['derived_landmarks']} derived from label maps)" if derived else ")"))
    print(f"report: {where.report} ({summary['errors']} errors, {summary['warnings']} warnings)")
    for row in report.rows[:20]:
        print(f"  {row['severity']}: {row['file']}: {row['problem']}")
    if len(report.rows) > 20:
        print(f"  ... {len(report.rows) - 20} more in the report")
    strict = params.strict if args.strict is None else args.strict
    return 1 if strict and report.n_errors else 0
