"""Landmark file readers: CSV tables, 3D Slicer markups (.mrk.json, legacy .fcsv), VerSe centroids.

Every reader returns a :class:`pandas.DataFrame` with one row per point and the columns
``case`` (``None`` where the file does not say), ``landmark``, ``x``, ``y``, ``z``,
``space`` (``"LPS"``, ``"RAS"`` or ``"IJK"``) and ``source`` (file and line or point number).
Conversion to LPS mm happens later, once the image geometry is known (voxel input needs it);
see :func:`lmtransfer.io.coords.to_lps`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lmtransfer.io.coords import Geometry, to_lps

COLUMNS = ["case", "landmark", "x", "y", "z", "space", "source"]
LANDMARK_SUFFIXES = (".mrk.json", "_ctd.json", ".fcsv", ".csv")
_SPACES = {"LPS": "LPS", "RAS": "RAS", "IJK": "IJK", "VOXEL": "IJK"}

# VerSe label ids (VerSe'19/'20 convention) -> vertebra names.
VERSE_LABELS: dict[int, str] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i + 7: f"T{i}" for i in range(1, 13)},
    **{i + 19: f"L{i}" for i in range(1, 7)},
    26: "S1",
    28: "T13",
}


class LandmarkFileError(ValueError):
    """A landmark file as a whole cannot be used; the message names the file and the problem."""


def read_landmarks(path: Path) -> pd.DataFrame:
    """Read any supported landmark file, choosing the reader by its name."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".mrk.json"):
        return read_slicer_json(path)
    if name.endswith("_ctd.json"):
        return read_verse_json(path)
    if name.endswith(".fcsv"):
        return read_fcsv(path)
    if name.endswith(".csv"):
        return read_csv(path)
    raise LandmarkFileError(f"{path}: unknown landmark file type; expected one of {', '.join(LANDMARK_SUFFIXES)}")


def case_id_from_landmark_path(path: Path) -> str:
    """Case identifier implied by a per-case landmark file name (``case_007.mrk.json`` -> ``case_007``)."""
    name = Path(path).name
    for suffix in LANDMARK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for axis in "xyz":
        frame[axis] = pd.to_numeric(frame[axis], errors="coerce").astype(float)
    return frame


def _space(value: object, path: Path, where: str = "") -> str:
    key = str(value).strip().upper()
    if key not in _SPACES:
        raise LandmarkFileError(f"{path}: {where}unknown coordinate system {value!r}; expected LPS, RAS or IJK/voxel")
    return _SPACES[key]


def read_csv(path: Path, chunk_rows: int = 200_000) -> pd.DataFrame:
    """CSV with a header ``[case,]landmark,x,y,z[,space]``; space defaults to LPS mm.

    Without a ``case`` column the file holds one case, named after the file. Read in chunks of
    ``chunk_rows`` with vectorised parsing, so a table of millions of points costs seconds and
    little more memory than the result.
    """
    path = Path(path)
    parts = []
    try:
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, chunksize=chunk_rows)
        first_line = 2
        for chunk in reader:
            parts.append(_csv_chunk(chunk, path, first_line))
            first_line += len(chunk)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LandmarkFileError(f"{path}: not a readable CSV table ({exc})") from exc
    if not parts:
        return _frame([])
    return pd.concat(parts, ignore_index=True)


def _csv_chunk(table: pd.DataFrame, path: Path, first_line: int) -> pd.DataFrame:
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = {"landmark", "x", "y", "z"} - set(table.columns)
    if missing:
        raise LandmarkFileError(
            f"{path}: missing column(s) {sorted(missing)}; expected case,landmark,x,y,z[,space]"
        )
    lines = np.arange(first_line, first_line + len(table))
    if "space" in table.columns:
        given = table["space"].str.strip().str.upper().replace("", "LPS")
        space = given.map(_SPACES)
        unknown = space.isna().to_numpy()
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise LandmarkFileError(f"{path}: line {lines[row]}: unknown coordinate system {table['space'].iloc[row]!r}; "
                                    "expected LPS, RAS or IJK/voxel")
    else:
        space = pd.Series("LPS", index=table.index)
    case = table["case"].replace("", None) if "case" in table.columns else pd.Series(None, index=table.index, dtype=object)
    frame = pd.DataFrame({
        "case": case.to_numpy(dtype=object),
        "landmark": table["landmark"].str.strip().to_numpy(dtype=object),
        **{axis: pd.to_numeric(table[axis].str.strip(), errors="coerce").to_numpy(dtype=float) for axis in "xyz"},
        "space": space.to_numpy(dtype=object),
        "source": (f"{path}:" + pd.Series(lines).astype(str)).to_numpy(dtype=object),
    })
    return frame[COLUMNS]


def _number(text: object) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        return float("nan")


def read_slicer_json(path: Path) -> pd.DataFrame:
    """3D Slicer markups JSON (``.mrk.json``); honours ``coordinateSystem`` (LPS or RAS)."""
    path = Path(path)
    document = _load_json(path)
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list):
        raise LandmarkFileError(f"{path}: no 'markups' list; not a 3D Slicer markups file")
    rows = []
    for m, markup in enumerate(markups, start=1):
        if not isinstance(markup, dict):
            raise LandmarkFileError(f"{path}: markups[{m}] is {type(markup).__name__}, expected an object")
        # Slicer writes RAS when the key is absent in old files; current files always say.
        space = _space(markup.get("coordinateSystem", "RAS"), path)
        units = str(markup.get("coordinateUnits", "mm")).lower()
        if units != "mm":
            raise LandmarkFileError(f"{path}: coordinate units {units!r} are not supported; expected mm")
        points = markup.get("controlPoints", [])
        if not isinstance(points, list):
            raise LandmarkFileError(f"{path}: markups[{m}].controlPoints is {type(points).__name__}, expected a list")
        for number, point in enumerate(points, start=1):
            if not isinstance(point, dict):
                raise LandmarkFileError(f"{path}: markups[{m}].controlPoints[{number}] is {type(point).__name__}, expected an object")
            position = point.get("position")
            if position is None:
                position = [None, None, None]
            if not isinstance(position, list) or len(position) != 3:
                raise LandmarkFileError(f"{path}: point {number} ({point.get('label', '')!r}): position {position!r} "
                                        "is not a list of three numbers")
            rows.append(
                {
                    "case": None,
                    "landmark": str(point.get("label", "")).strip(),
                    "x": _coordinate(position[0]),
                    "y": _coordinate(position[1]),
                    "z": _coordinate(position[2]),
                    "space": space,
                    "source": f"{path}#point{number}",
                }
            )
    return _frame(rows)


def _coordinate(value: object) -> float:
    """A number from JSON (NaN for anything else: reported per point by the manifest)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def read_fcsv(path: Path) -> pd.DataFrame:
    """Legacy 3D Slicer fiducial CSV (``.fcsv``), with its ``# CoordinateSystem`` header line."""
    path = Path(path)
    space = "RAS"  # Slicer's default before the header line existed
    columns = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID"]
    rows = []
    with path.open(newline="") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                key, value = key.strip().lower(), value.strip()
                if key == "coordinatesystem":
                    # Slicer 4.x wrote 0 for RAS and 1 for LPS.
                    space = _space({"0": "RAS", "1": "LPS"}.get(value, value), path)
                elif key == "columns":
                    columns = [c.strip() for c in value.split(",")]
                continue
            if not line.strip():
                continue
            values = next(csv.reader([line]))
            record = dict(zip(columns, values))
            rows.append(
                {
                    "case": None,
                    "landmark": record.get("label", "").strip(),
                    "x": _number(record.get("x", "nan")),
                    "y": _number(record.get("y", "nan")),
                    "z": _number(record.get("z", "nan")),
                    "space": space,
                    "source": f"{path}:{line_number}",
                }
            )
    return _frame(rows)


def read_verse_json(path: Path) -> pd.DataFrame:
    """VerSe vertebra centroids (``*_ctd.json``).

    The file is a list whose first item gives the axis codes (e.g. ``{"direction": ["P","I","R"]}``)
    of the voxel frame the centroids are written in; the other items are
    ``{"label": id, "X": .., "Y": .., "Z": ..}`` in voxels of the image reoriented to those codes.
    The points are returned as ``space="IJK"`` with the axis codes kept in ``source``; the
    manifest maps them back to the image's own index order with :func:`verse_to_image_index`.
    Vertebrae are named as our kinds, ``<V>_body_centre`` (``L1_body_centre``), so VerSe cases
    train and score with the rest. VerSe gives one centroid per vertebra label; where that is the
    whole vertebra's centroid, it lies about 6 mm posterior of the body centre as derived here
    (measured on L1-L5 of the shared abdomen scan), a bias the README states.
    """
    path = Path(path)
    document = _load_json(path)
    if not isinstance(document, list) or not document or not isinstance(document[0], dict) or "direction" not in document[0]:
        raise LandmarkFileError(f"{path}: expected a list starting with {{'direction': [...]}} (VerSe centroid file)")
    direction = document[0]["direction"]
    codes = [str(c).upper() for c in direction] if isinstance(direction, list) else []
    if sorted(_AXIS_OF[c] for c in codes if c in _AXIS_OF) != [0, 1, 2] or len(codes) != 3:
        raise LandmarkFileError(f"{path}: unknown coordinate system direction {codes}; expected axis codes like P,I,R")
    rows = []
    for number, item in enumerate(document[1:], start=1):
        if not isinstance(item, dict):
            raise LandmarkFileError(f"{path}: item {number} is {type(item).__name__}, expected an object with label, X, Y, Z")
        label = item.get("label")
        whole = isinstance(label, (int, float)) and not isinstance(label, bool) and np.isfinite(label) and label == int(label)
        if not whole:
            raise LandmarkFileError(f"{path}: item {number}: label {label!r} is not a whole number (a VerSe vertebra id)")
        name = VERSE_LABELS.get(int(label))
        rows.append(
            {
                "case": None,
                "landmark": f"{name}_body_centre" if name else f"verse_label_{int(label)}",
                "x": _coordinate(item.get("X")),
                "y": _coordinate(item.get("Y")),
                "z": _coordinate(item.get("Z")),
                "space": "VERSE:" + "".join(codes),
                "source": f"{path}#item{number}",
            }
        )
    return _frame(rows)


# Axis codes in the nibabel/RAS sense: the letter is where the axis points.
_AXIS_OF = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
_POSITIVE_RAS = {"R", "A", "S"}


def verse_to_image_index(points: np.ndarray, codes: str, direction: np.ndarray, size_ijk: tuple[int, int, int]) -> np.ndarray:
    """Map VerSe centroid voxels (in the frame named by ``codes``) to the image's own (i, j, k).

    Args:
        points: (n, 3) centroid coordinates as written in the file.
        codes: three axis codes, e.g. ``"PIR"``.
        direction: the image's LPS direction matrix (column c = axis c).
        size_ijk: the image size.
    """
    ras_direction = direction * np.array([[-1.0], [-1.0], [1.0]])
    image_codes = []
    for column in range(3):
        axis = int(np.argmax(np.abs(ras_direction[:, column])))
        positive = ras_direction[axis, column] > 0
        image_codes.append("RAS"[axis] if positive else "LPI"[axis])
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    out = np.empty_like(points)
    for file_axis, code in enumerate(codes):
        image_axis = next(c for c, ic in enumerate(image_codes) if _AXIS_OF[ic] == _AXIS_OF[code])
        same_way = (code in _POSITIVE_RAS) == (image_codes[image_axis] in _POSITIVE_RAS)
        values = points[:, file_axis]
        # The VerSe reference utilities flip with ``size - value``; keep their convention.
        out[:, image_axis] = values if same_way else size_ijk[image_axis] - values
    return out


def _load_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LandmarkFileError(f"{path}: not valid JSON ({exc})") from exc


def write_slicer_json(path: Path, names: list[str], points_lps_mm: np.ndarray, descriptions: list[str] | None = None) -> None:
    """Write points as a 3D Slicer markups point list in LPS mm (opens in Slicer 4.11+)."""
    control_points = []
    for number, (name, point) in enumerate(zip(names, np.asarray(points_lps_mm, dtype=float)), start=1):
        control_points.append(
            {
                "id": str(number),
                "label": name,
                "description": descriptions[number - 1] if descriptions else "",
                "associatedNodeID": "",
                "position": [round(float(v), 3) for v in point],
                "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                "selected": True,
                "locked": False,
                "visibility": True,
                "positionStatus": "defined",
            }
        )
    document = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "locked": False,
                "fixedNumberOfControlPoints": False,
                "labelFormat": "%N-%d",
                "lastUsedControlPointNumber": len(control_points),
                "controlPoints": control_points,
                "measurements": [],
            }
        ],
    }
    Path(path).write_text(json.dumps(document, indent=2))


def landmarks_to_lps(frame: pd.DataFrame, geometry: Geometry) -> np.ndarray:
    """Positions of ``frame``'s rows (any supported space) in LPS mm, using the image ``geometry``."""
    points = frame[["x", "y", "z"]].to_numpy(dtype=float).reshape(-1, 3)
    out = np.full_like(points, np.nan)
    for space, rows in frame.groupby("space", sort=False).groups.items():
        positions = np.flatnonzero(frame.index.isin(rows))
        if str(space).startswith("VERSE:"):
            ijk = verse_to_image_index(points[positions], str(space)[6:], geometry.direction, geometry.size_ijk)
            out[positions] = geometry.index_to_lps(ijk)
        else:
            out[positions] = to_lps(points[positions], str(space), geometry)
    return out
