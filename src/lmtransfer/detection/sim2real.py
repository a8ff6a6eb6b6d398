"""The landmark CNN on real CT: patch classification at landmarks derived from a real segmentation,
background specificity at real body points far from them, and detection error per kind.

This is the measure of how far the phantom is from real anatomy. The real scans are only ever
evaluated on, never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from lmtransfer.detection.body import body_mask
from lmtransfer.detection.detector import BACKGROUND, LandmarkDetector
from lmtransfer.detection.evaluate import LPS, score_case
from lmtransfer.io.coords import Geometry


@dataclass(frozen=True)
class CaseResult:
    """One real case: per derived landmark (``patches``), per background point (``background``), the
    detection scored against the derived landmarks (``detection``, :func:`score_case` rows), and those
    landmarks as the truth table the scoring and the overlay read (``truth``)."""

    case: str
    patches: pd.DataFrame
    background: pd.DataFrame
    detection: pd.DataFrame
    truth: pd.DataFrame


def background_points(volume_ijk: np.ndarray, geometry: Geometry, avoid_lps_mm: np.ndarray, count: int,
                      min_distance_mm: float, seed: int, body_hu: float = -300.0) -> np.ndarray:
    """``count`` random points (LPS mm) inside the body, at least ``min_distance_mm`` from every point
    of ``avoid_lps_mm``; fewer when the body has no more room. Seeded: the same points every run."""
    body = body_mask(volume_ijk, geometry, body_hu, margin_mm=0.0)
    rng = np.random.default_rng(seed)
    tree = cKDTree(avoid_lps_mm) if len(avoid_lps_mm) else None
    found: list[np.ndarray] = []
    for _ in range(20):
        ijk = rng.uniform(-0.5, np.asarray(geometry.size_ijk) - 0.5, size=(4 * count, 3))
        lps = geometry.index_to_lps(ijk)
        keep = body.contains(lps)
        if tree is not None:
            keep &= tree.query(lps)[0] >= min_distance_mm
        found.append(lps[keep])
        if sum(map(len, found)) >= count:
            break
    return np.concatenate(found)[:count]


def evaluate_case(detector: LandmarkDetector, case: str, volume_ijk: np.ndarray, geometry: Geometry, derived: pd.DataFrame,
                  background_count: int, min_distance_mm: float, seed: int, progress: bool = False) -> CaseResult:
    """Score ``detector`` on one real volume (HU, ``[i, j, k]``) against ``derived`` landmarks
    (columns ``landmark, x, y, z`` in LPS mm, the derived rows of :func:`derive_landmarks`)."""
    names = detector.class_names
    known = derived[derived["landmark"].isin(names)].reset_index(drop=True)
    points = known[["x", "y", "z"]].to_numpy(float)
    p = detector.probabilities(volume_ijk, geometry, points) if len(known) else np.zeros((0, len(names)))
    true = np.array([names.index(n) for n in known["landmark"]], dtype=int)
    order = np.argsort(-p, axis=1)
    rank = np.argmax(order == true[:, None], axis=1) if len(known) else np.zeros(0, int)
    patches = known[["landmark", "x", "y", "z"]].assign(
        case=case, predicted=[names[i] for i in order[:, 0]] if len(known) else [],
        p_true=p[np.arange(len(known)), true], rank=rank + 1, top1=rank == 0, top5=rank < 5)
    patches["called_background"] = patches["predicted"] == BACKGROUND

    others = background_points(volume_ijk, geometry, derived[["x", "y", "z"]].to_numpy(float), background_count,
                               min_distance_mm, seed)
    q = detector.probabilities(volume_ijk, geometry, others)
    background = pd.DataFrame(others, columns=["x", "y", "z"]).assign(
        case=case, predicted=[names[i] for i in np.argmax(q, axis=1)], p_background=q[:, names.index(BACKGROUND)])

    found = detector.detect(volume_ijk, geometry, progress=progress, name=case).table
    truth = known.rename(columns=dict(zip("xyz", LPS)))[["landmark", *LPS]].assign(in_image=True)
    detection = score_case(case, found, truth)
    return CaseResult(case, patches[["case", *patches.columns.drop("case")]], background, detection, truth)


def summarise(results: list[CaseResult], hit_radius_mm: float) -> dict:
    """Overall figures over every case (patch accuracy pools the landmarks of all cases)."""
    patches = pd.concat([r.patches for r in results], ignore_index=True)
    background = pd.concat([r.background for r in results], ignore_index=True)
    detection = pd.concat([r.detection for r in results], ignore_index=True)
    errors = detection["error_mm"].dropna()

    def share(values) -> float | None:
        return round(float(np.mean(values)), 4) if len(values) else None

    return {
        "cases": len(results),
        "landmarks": int(len(patches)),
        "landmark_kinds": int(patches["landmark"].nunique()),
        "patch_top1": share(patches["top1"]),
        "patch_top5": share(patches["top5"]),
        "landmark_called_background": share(patches["called_background"]),
        "background_points": int(len(background)),
        "background_specificity": share(background["predicted"] == BACKGROUND),
        "detected": share(detection["found"]),
        "detected_within_radius": share(detection["found"] & (detection["error_mm"] <= hit_radius_mm)),
        "hit_radius_mm": hit_radius_mm,
        "detection_median_error_mm": round(float(errors.median()), 1) if len(errors) else None,
        "per_case": {r.case: {"landmarks": int(len(r.patches)), "patch_top1": share(r.patches["top1"]),
                              "background_specificity": share(r.background["predicted"] == BACKGROUND),
                              "detected": int(r.detection["found"].sum())} for r in results},
    }
