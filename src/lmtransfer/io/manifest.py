"""The validated manifest: one row per (case, landmark) with image geometry and both coordinate frames.

Nothing is dropped silently: every image or landmark that is not used gets a row in the
report, with the file and the problem.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lmtransfer.parallel import process_pool
from lmtransfer.io.coords import Geometry
from lmtransfer.io.landmarks import (
    LANDMARK_SUFFIXES,
    LandmarkFileError,
    case_id_from_landmark_path,
    landmarks_to_lps,
    read_landmarks,
)
from lmtransfer.io.volumes import (
    DEFAULT_MAX_VOXELS,
    VolumeReadError,
    case_id_from_path,
    content_hash,
    find_volumes,
    read_geometry,
    read_volume,
)

MANIFEST_COLUMNS = [
    "case", "image_path", "image_sha256", "spacing_i_mm", "spacing_j_mm", "spacing_k_mm", "size_i", "size_j", "size_k",
    "orientation", "landmark", "x_lps_mm", "y_lps_mm", "z_lps_mm", "i", "j", "k", "in_image", "source",
]
REPORT_COLUMNS = ["severity", "case", "file", "problem"]


@dataclass
class IngestReport:
    """Problems met while building the manifest (``error``: something not used; ``warning``: used, but look)."""

    rows: list[dict] = field(default_factory=list)

    def add(self, severity: str, case: str | None, file: object, problem: str) -> None:
        self.rows.append({"severity": severity, "case": case or "", "file": str(file), "problem": problem})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=REPORT_COLUMNS)

    @property
    def n_errors(self) -> int:
        return sum(r["severity"] == "error" for r in self.rows)


def _probe_volume(path: Path, verify_voxels: bool, max_voxels: int = DEFAULT_MAX_VOXELS) -> tuple[Geometry, str]:
    """The volume's geometry and the hash of its bytes (the manifest's ``image_sha256``: what is cut from
    an image is redone when the image changes, even where its geometry and landmarks do not)."""
    geometry = Geometry.from_sitk(read_volume(path, max_voxels)) if verify_voxels else read_geometry(path, max_voxels)
    return geometry, content_hash(path)


def collect_landmark_files(sources: list[Path]) -> list[Path]:
    """Landmark files given directly or found (non-recursively) inside given folders."""
    files: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files.extend(sorted(p for p in source.iterdir() if p.name.lower().endswith(LANDMARK_SUFFIXES)))
        elif source.exists():
            files.append(source)
        else:
            raise FileNotFoundError(f"{source}: landmark file or folder does not exist")
    return files


def build_manifest(
    images_dir: Path,
    landmark_sources: list[Path],
    *,
    derived_sources: list[Path] = (),
    verify_voxels: bool = True,
    workers: int = 1,
    progress: bool = True,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> tuple[pd.DataFrame, IngestReport]:
    """Read every volume's geometry and every landmark file; validate and join them by case.

    Args:
        images_dir: folder of volume files and/or DICOM-series subfolders; case id = file stem.
        landmark_sources: landmark files and/or folders of them. Files without a ``case`` column
            belong to the case named like the file (``case_007.mrk.json`` -> ``case_007``).
        derived_sources: landmark files (or folders) derived from label maps: a (case, kind) they
            give is used only where ``landmark_sources`` do not give it (an annotation wins).
        verify_voxels: read every voxel (finds truncated files and NaNs) instead of headers only.
        workers: processes used to read volumes.
        max_voxels: volumes declaring more voxels are refused from their header (an error row).

    Returns:
        The manifest (columns :data:`MANIFEST_COLUMNS`) and the report of problems.
    """
    report = IngestReport()
    volume_paths = find_volumes(Path(images_dir))
    if not volume_paths:
        raise FileNotFoundError(f"{images_dir}: no volumes found (.nii.gz, .nii, .nrrd, .mha, .mhd or DICOM folders)")
    geometries: dict[str, tuple[Path, Geometry, str]] = {}
    results = map_cases(
        _probe_volume, volume_paths, [verify_voxels] * len(volume_paths), [max_voxels] * len(volume_paths), workers=workers,
        progress=progress, desc="reading volumes",
    )
    for path, result in zip(volume_paths, results):
        case = case_id_from_path(path)
        if isinstance(result, VolumeReadError):
            report.add("error", case, path, str(result).removeprefix(f"{path}: "))
        elif case in geometries:
            report.add("error", case, path, f"case id also used by {geometries[case][0]}; rename one")
        else:
            geometries[case] = (path, *result)

    landmarks = _read_all_landmarks(collect_landmark_files(landmark_sources), report)
    if derived_sources:
        derived = _read_all_landmarks(collect_landmark_files(list(derived_sources)), report)
        given = pd.MultiIndex.from_frame(landmarks[["case", "landmark"]])
        derived = derived[~pd.MultiIndex.from_frame(derived[["case", "landmark"]]).isin(given)]
        landmarks = pd.concat([landmarks, derived], ignore_index=True) if len(landmarks) else derived.reset_index(drop=True)
    parts = [pd.DataFrame(columns=MANIFEST_COLUMNS)]
    for case, group in landmarks.groupby("case", sort=True):
        if case not in geometries:
            file_list = ", ".join(sorted({s.rsplit(':', 1)[0].split('#')[0] for s in group["source"].unique()}))
            report.add("error", case, file_list, f"{len(group)} landmark(s) for a case with no readable image")
            continue
        parts.append(_validate_case(case, group, *geometries[case], report))
    with_landmarks = set(landmarks["case"])
    for case, (path, *_) in geometries.items():
        if case not in with_landmarks:
            report.add("warning", case, path, "image has no landmarks")
    manifest = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True).sort_values(["case", "landmark"], kind="stable")
    manifest["in_image"] = manifest["in_image"].astype(bool)
    return manifest.reset_index(drop=True), report


def map_cases(function, *iterables, workers: int, progress: bool, desc: str,
              errors: tuple[type[BaseException], ...] = (VolumeReadError,)) -> list:
    """Apply ``function`` to zipped arguments (one case each), in processes when ``workers > 1``, with
    a progress bar; an exception of ``errors`` is returned in that case's place, so one bad file
    costs that case only."""

    def guarded(args):
        try:
            return function(*args)
        except errors as exc:
            return exc

    arguments = list(zip(*iterables))
    bar = tqdm(total=len(arguments), desc=desc, unit="case", disable=not progress)
    results = []
    if workers > 1:
        with process_pool(workers) as pool:
            futures = [pool.submit(function, *args) for args in arguments]
            for future in futures:
                try:
                    results.append(future.result())
                except errors as exc:
                    results.append(exc)
                bar.update()
    else:
        for args in arguments:
            results.append(guarded(args))
            bar.update()
    bar.close()
    return results


def _read_all_landmarks(files: list[Path], report: IngestReport) -> pd.DataFrame:
    frames = []
    for path in files:
        try:
            frame = read_landmarks(path)
        except (LandmarkFileError, OSError) as exc:
            report.add("error", case_id_from_landmark_path(path), path, str(exc).removeprefix(f"{path}: "))
            continue
        except Exception as exc:  # noqa: BLE001 - a reader gap must cost this file, never the whole ingest
            report.add("error", case_id_from_landmark_path(path), path, f"unreadable landmark file ({type(exc).__name__}: {exc})")
            continue
        if frame.empty:
            report.add("warning", case_id_from_landmark_path(path), path, "landmark file holds no points")
            continue
        frame["case"] = frame["case"].fillna(case_id_from_landmark_path(path))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["case", "landmark", "x", "y", "z", "space", "source"])
    return pd.concat(frames, ignore_index=True)


MAX_ABS_COORDINATE_MM = 1e6  # a kilometre from the scanner's origin is a broken file, not a position


def _validate_case(case: str, group: pd.DataFrame, image_path: Path, geometry: Geometry, image_sha256: str,
                   report: IngestReport) -> pd.DataFrame:
    """The usable landmarks of one case as manifest rows; every other one gets a report row. Vectorised:
    a case with a million points costs seconds, not minutes."""
    group = group.reset_index(drop=True)
    names = group["landmark"].fillna("").astype(str).to_numpy(dtype=object)
    sources = group["source"].astype(str).to_numpy(dtype=object)
    coordinates = group[["x", "y", "z"]].to_numpy(dtype=float)
    finite = np.isfinite(coordinates).all(axis=1)
    points_lps = np.full_like(coordinates, np.nan)
    if finite.any():
        with np.errstate(over="ignore", invalid="ignore"):
            points_lps[finite] = landmarks_to_lps(group[finite], geometry)
    with np.errstate(over="ignore", invalid="ignore"):
        ijk = geometry.lps_to_index(points_lps)
    representable = finite & np.isfinite(ijk).all(axis=1) & (np.abs(points_lps) <= MAX_ABS_COORDINATE_MM).all(axis=1)
    inside = np.zeros(len(group), dtype=bool)
    inside[representable] = geometry.contains_index(ijk[representable])
    unnamed = names == ""
    candidate = ~unnamed & representable
    first = pd.Series(names).where(candidate).duplicated(keep="first").to_numpy() & candidate
    keep = candidate & ~first

    def problems(mask: np.ndarray, message) -> None:
        for index in np.flatnonzero(mask):
            report.add("error", case, sources[index], message(index))

    problems(unnamed, lambda i: "landmark without a name; not used")
    problems(~unnamed & ~finite, lambda i: f"landmark {names[i]!r} has a missing, NaN or infinite coordinate; not used")
    problems(~unnamed & finite & ~representable,
             lambda i: f"landmark {names[i]!r} has a coordinate beyond {MAX_ABS_COORDINATE_MM:g} mm "
                       f"({coordinates[i].tolist()} as given); not used")
    if first.any():
        first_source = dict(zip(names[keep], sources[keep]))
        problems(first, lambda i: f"duplicate landmark {names[i]!r} (first given at {first_source[names[i]]}); the first is kept")
    for index in np.flatnonzero(keep & ~inside):
        report.add(
            "warning", case, sources[index],
            f"landmark {names[index]!r} at LPS {np.round(points_lps[index], 1).tolist()} mm lies outside the image "
            f"(voxel {np.round(ijk[index], 1).tolist()}, size {list(geometry.size_ijk)}); kept with in_image=False",
        )
    rows = pd.DataFrame({
        "case": case, "image_path": str(image_path), "image_sha256": image_sha256,
        "spacing_i_mm": geometry.spacing_mm[0], "spacing_j_mm": geometry.spacing_mm[1], "spacing_k_mm": geometry.spacing_mm[2],
        "size_i": geometry.size_ijk[0], "size_j": geometry.size_ijk[1], "size_k": geometry.size_ijk[2],
        "orientation": geometry.orientation, "landmark": names[keep],
        "x_lps_mm": points_lps[keep, 0], "y_lps_mm": points_lps[keep, 1], "z_lps_mm": points_lps[keep, 2],
        "i": ijk[keep, 0], "j": ijk[keep, 1], "k": ijk[keep, 2], "in_image": inside[keep], "source": sources[keep],
    }, columns=MANIFEST_COLUMNS)
    return rows


# what `write_outputs` writes into its folder: the manifest, the problem report, the summary
MANIFEST_CSV, REPORT_CSV, SUMMARY_JSON = "manifest.csv", "ingest_report.csv", "ingest_summary.json"
OUTPUT_FILES = (MANIFEST_CSV, REPORT_CSV, SUMMARY_JSON)


def read_manifest(path: Path) -> pd.DataFrame:
    """A manifest written by :func:`write_outputs`; its image paths are absolute or relative to the
    manifest's folder (so a project, or the manifest with its images, can move), returned usable from here."""
    path = Path(path)
    manifest = pd.read_csv(path, dtype={"case": str, "image_sha256": str})
    manifest["image_path"] = [p if os.path.isabs(p) else os.path.normpath(os.path.join(path.parent, p))
                              for p in manifest["image_path"].astype(str)]
    return manifest


def write_outputs(manifest: pd.DataFrame, report: IngestReport, out_dir: Path, derived_dir: Path | None = None) -> dict:
    """Write ``manifest.csv``, ``ingest_report.csv`` and ``ingest_summary.json`` (:data:`OUTPUT_FILES`); return the
    summary (``derived_landmarks``: the rows that came from files in ``derived_dir``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = manifest.assign(image_path=[p if os.path.isabs(p) else os.path.relpath(p, out_dir) for p in manifest["image_path"].astype(str)])
    stored.to_csv(out_dir / MANIFEST_CSV, index=False, float_format="%.4f")
    report.frame().to_csv(out_dir / REPORT_CSV, index=False)
    summary = {
        "cases": int(manifest["case"].nunique()) if len(manifest) else 0,
        "landmarks": int(len(manifest)),
        "landmark_kinds": int(manifest["landmark"].nunique()) if len(manifest) else 0,
        "outside_image": int((~manifest["in_image"].astype(bool)).sum()) if len(manifest) else 0,
        "derived_landmarks": int(manifest["source"].astype(str).str.startswith(str(derived_dir) + "/").sum())
        if derived_dir is not None and len(manifest) else 0,
        "errors": report.n_errors,
        "warnings": len(report.rows) - report.n_errors,
    }
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
