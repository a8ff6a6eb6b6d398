"""Detection over many cases: result files that open in 3D Slicer, the shape model fitted on the
training cases, and a resumable per-case folder.

Detections are kept per case in a folder (``<case>.csv``, ``<case>.mrk.json`` and ``<case>.json``
with the patch count and the hash of the image it was made from), keyed by the model file and the
search settings: an interrupted run resumes with the cases it has not done (and those whose image has
changed since), a new model or setting starts over.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lmtransfer.detection.detector import DetectConfig, DetectionResult, LandmarkDetector
from lmtransfer.detection.evaluate import load_truth, score_case
from lmtransfer.detection.shape import ShapeModel
from lmtransfer.io.landmarks import write_slicer_json
from lmtransfer.io.manifest import read_manifest
from lmtransfer.io.volumes import content_hash
from lmtransfer.provenance import source_digest


def write_detections(result: DetectionResult, markups_path: Path, csv_path: Path | None = None) -> None:
    """Found landmarks as a 3D Slicer markups file (LPS mm); every kind, found or not, as CSV."""
    found = result.found
    markups_path.parent.mkdir(parents=True, exist_ok=True)
    write_slicer_json(markups_path, found["landmark"].tolist(), found[["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(),
                      [f"probability {p:.3f}" + ("" if np.isnan(q) else f", inconsistency {q:.2f}")
                       for p, q in zip(found["probability"], found["inconsistency"])])
    if csv_path is not None:
        table = result.table.assign(status=np.where(result.table["found"], "found", "not found"))
        table.drop(columns="found").to_csv(csv_path, index=False, float_format="%.3f")


def read_detections(csv_path: Path) -> pd.DataFrame:
    table = pd.read_csv(csv_path)
    table["found"] = table.pop("status") == "found"
    return table


def fit_shape_model(manifest_path: Path, train_cases: list[str], out_path: Path) -> ShapeModel:
    """Pairwise landmark offsets of the training cases (annotated positions from the manifest), saved as JSON."""
    manifest = load_truth(manifest_path)
    rows = manifest[manifest["case"].isin(train_cases)]
    shape = ShapeModel.fit(rows, sorted(rows["landmark"].unique()))
    shape.save(out_path)
    return shape


def image_paths(manifest_path: Path, cases: list[str]) -> dict[str, Path]:
    """The image of each case, from an ingest manifest; a case it lacks is named."""
    manifest = read_manifest(manifest_path)
    paths = manifest.drop_duplicates("case").set_index("case")["image_path"]
    missing = [c for c in cases if c not in paths.index]
    if missing:
        raise ValueError(f"{manifest_path}: case(s) {missing} of the split are not in the manifest")
    return {c: Path(paths[c]) for c in cases}


def detections_folder(folder: Path, model: Path, shape_model: Path, cfg: DetectConfig, voter: Path | None = None) -> Path:
    """``folder`` for per-case detections, emptied when the model, the voting network, the shape model,
    the search settings or the detector's code changed since its detections were made."""
    folder = Path(folder)
    code = source_digest(LandmarkDetector.__module__)   # the detector and all the lmtransfer code it imports
    inputs = (Path(model).read_bytes() + Path(shape_model).read_bytes() + json.dumps(asdict(cfg), sort_keys=True).encode()
              + code.encode() + (Path(voter).read_bytes() if voter else b""))
    key = hashlib.sha256(inputs).hexdigest()[:16]
    stamp = folder / "KEY"
    if folder.exists() and (not stamp.exists() or stamp.read_text().strip() != key):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key + "\n")
    return folder


def detect_cases(detector: LandmarkDetector, images: dict[str, Path], truth: pd.DataFrame, folder: Path, progress: bool = False,
                 on_case: Callable[[str, pd.DataFrame, float | None], None] | None = None) -> tuple[pd.DataFrame, list[float]]:
    """Detect and score every case of ``images`` (case -> volume) against ``truth``; cases already
    in ``folder`` are read back, not redone. Returns the scored rows of all cases and the seconds
    of each case detected in this call. ``on_case(case, detections, seconds or None)`` after each."""
    scored, seconds = [], []
    for case, image in images.items():
        table, elapsed = _detect_case(detector, case, image, Path(folder), progress)
        scored.append(score_case(case, table, truth[truth["case"] == case]))
        if elapsed is not None:
            seconds.append(elapsed)
        if on_case is not None:
            on_case(case, table, elapsed)
    return pd.concat(scored, ignore_index=True), seconds


def _detect_case(detector: LandmarkDetector, case: str, image: Path, folder: Path, progress: bool) -> tuple[pd.DataFrame, float | None]:
    """The case's detections and the seconds they took (None: kept from an earlier, interrupted run)."""
    csv_path, info_path = folder / f"{case}.csv", folder / f"{case}.json"
    image_sha256 = content_hash(image)
    if csv_path.exists() and info_path.exists() and json.loads(info_path.read_text()).get("image_sha256") == image_sha256:
        return read_detections(csv_path), None      # made from this very image before an interruption
    result = detector.detect_file(image, progress=progress)
    write_detections(result, folder / f"{case}.mrk.json", folder / f"{case}.csv.tmp")
    info = {"patches": result.patches_scored, "voxels": result.volume_voxels, "image": str(image), "image_sha256": image_sha256}
    info_path.write_text(json.dumps(info) + "\n")
    (folder / f"{case}.csv.tmp").replace(csv_path)  # last: a case counts as done only when complete
    # scored from the file, as a resumed run scores it: the same bytes whether or not the run was interrupted
    return read_detections(csv_path), result.seconds
