"""Scoring detections against known landmark positions: error in mm, detection rate, false detections.

Per landmark kind in a case, three situations:

* present (inside the image) and found: localisation error = distance to the truth, mm;
* present and not found: a miss (lowers the detection rate);
* absent (outside the field of view) and found: a false detection.

Kinds the truth table does not list for a case are unknown there and not counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LPS = ["x_lps_mm", "y_lps_mm", "z_lps_mm"]
# first match wins; names of your own landmarks that match nothing fall in "other"
GROUP_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vertebrae", ("_body_centre",)),
    ("vessels", ("aort", "_origin", "_trunk", "iliac_bifurcation")),
    ("airways and lungs", ("carina", "bronchus", "lung_", "costophrenic")),
    ("organs", ("heart", "kidney", "liver", "spleen")),
    ("skeleton", ("jugular", "sternal", "sternoclavicular", "xiphoid", "iliac_crest", "asis", "pubic", "sacral", "femoral", "rib")),
)


def landmark_group(name: str) -> str:
    """Anatomical group of a landmark kind, for the per-group box plot."""
    for group, keys in GROUP_RULES:
        if any(key in name for key in keys):
            return group
    return "other"


def load_truth(path: Path) -> pd.DataFrame:
    """Known landmark positions: ``case, landmark, x_lps_mm, y_lps_mm, z_lps_mm, in_image``.

    Takes the phantom's ``landmarks_truth.csv`` (``x, y, z`` with ``space`` LPS, every kind with
    its ``in_image`` flag) or an ingest manifest (only annotated landmarks: no false detections
    can be counted from it).

    Raises:
        ValueError: missing columns or a space other than LPS, naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: landmark truth table not found")
    table = pd.read_csv(path)
    if set(LPS) <= set(table.columns):
        pass
    elif {"x", "y", "z"} <= set(table.columns):
        spaces = set(table.get("space", pd.Series(["LPS"])).astype(str).str.upper())
        if spaces != {"LPS"}:
            raise ValueError(f"{path}: truth positions must be in LPS mm, found spaces {sorted(spaces)}")
        table = table.rename(columns={"x": "x_lps_mm", "y": "y_lps_mm", "z": "z_lps_mm"})
    else:
        raise ValueError(f"{path}: needs columns x_lps_mm, y_lps_mm, z_lps_mm (or x, y, z with space LPS)")
    missing = {"case", "landmark"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    table["in_image"] = table["in_image"].astype(bool) if "in_image" in table.columns else True
    table["case"] = table["case"].astype(str)
    if table.loc[table["in_image"], LPS].isna().any().any():
        raise ValueError(f"{path}: a landmark inside the image has no position")
    return table[["case", "landmark", *LPS, "in_image"]].drop_duplicates(["case", "landmark"])


def score_case(case: str, detections: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One row per detected-able kind: ``case, landmark, group, present, found, probability, error_mm``.

    ``detections`` is a :class:`DetectionResult` table; ``truth`` this case's rows of :func:`load_truth`.
    """
    known = truth.set_index("landmark")
    rows = detections[detections["landmark"].isin(known.index)].copy()
    rows.insert(0, "case", case)
    rows["group"] = rows["landmark"].map(landmark_group)
    rows["present"] = rows["landmark"].map(known["in_image"]).astype(bool)
    truth_xyz = known.loc[rows["landmark"], LPS].to_numpy(dtype=float)
    error = np.linalg.norm(rows[LPS].to_numpy(dtype=float) - truth_xyz, axis=1)
    rows["error_mm"] = np.where(rows["present"] & rows["found"], error, np.nan)
    return rows[["case", "landmark", "group", "present", "found", "probability", "error_mm", *LPS]].reset_index(drop=True)


def summarise(scored: pd.DataFrame, hit_radius_mm: float) -> tuple[dict, pd.DataFrame]:
    """Overall metrics and the per-landmark table (sorted worst first by median error)."""
    present, absent = scored[scored["present"]], scored[~scored["present"]]
    errors = present["error_mm"].dropna()
    hits = present["found"] & (present["error_mm"] <= hit_radius_mm)
    metrics = {
        "cases": int(scored["case"].nunique()),
        "landmarks_present": int(len(present)),
        "landmarks_absent": int(len(absent)),
        "median_error_mm": _round(errors.median()),
        "p90_error_mm": _round(errors.quantile(0.9)),
        "mean_error_mm": _round(errors.mean()),
        "detection_rate": _round(present["found"].mean(), 4),
        f"detection_rate_within_{hit_radius_mm:g}mm": _round(hits.mean(), 4),
        "false_detections": int(absent["found"].sum()),
        "false_detection_rate": _round(absent["found"].mean(), 4) if len(absent) else None,
    }
    per = scored.groupby("landmark", sort=False)
    table = pd.DataFrame({
        "group": per["group"].first(),
        "present": per["present"].sum().astype(int),
        "detected": per.apply(lambda g: int((g["present"] & g["found"]).sum()), include_groups=False),
        "median_error_mm": per["error_mm"].median(),
        "p90_error_mm": per["error_mm"].quantile(0.9),
        "max_error_mm": per["error_mm"].max(),
        "absent": per["present"].apply(lambda s: int((~s).sum())),
        "false_detections": per.apply(lambda g: int((~g["present"] & g["found"]).sum()), include_groups=False),
    })
    table.insert(3, "detection_rate", table["detected"] / table["present"].replace(0, np.nan))
    table = table.sort_values("median_error_mm", ascending=False, na_position="last").reset_index()
    return metrics, table


def _round(value: float, digits: int = 2) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)
