"""Shared test helpers: small images with chosen geometry, the path to ../shared/data, a Slicer markups check."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import SimpleITK as sitk

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]


def dvc_stages(root: Path = ROOT) -> dict[str, dict]:
    """``dvc.yaml``'s stages as DVC itself resolves them with ``root``'s ``params.yaml``: ``foreach``
    stages expanded (``phantom_ct@torso``; none where the list is empty), ``${...}`` filled in."""
    import yaml
    from dvc.parsing import DataResolver
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return DataResolver(repo, str(root), yaml.safe_load((Path(root) / "dvc.yaml").read_text())).resolve()["stages"]


def make_image(size=(12, 10, 8), spacing=(0.8, 1.1, 2.5), origin=(-20.0, 35.0, -110.0), direction=None, dtype=np.int16) -> sitk.Image:
    """A volume whose voxel values encode their index (value = i + 100 j + 10000 k, modulo dtype)."""
    i, j, k = np.meshgrid(*(np.arange(s) for s in size), indexing="ij")
    values = (i + 100 * j + 1000 * k).transpose(2, 1, 0).astype(dtype)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    return image


def oblique_direction() -> np.ndarray:
    """A proper rotation that mixes all three axes (an oblique acquisition)."""
    a, b = np.deg2rad(25.0), np.deg2rad(-40.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


DIRECTIONS = {
    "identity": np.eye(3),
    "flipped_y": np.diag([1.0, -1.0, 1.0]),
    "ras_like": np.diag([-1.0, -1.0, 1.0]),
    "permuted": np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    "oblique": oblique_direction(),
}


class PicklePayload:
    """Unpickling this creates the file ``target``: the harmless stand-in for a shell command in a
    doctored checkpoint or pickle. A reader that runs no code leaves ``target`` absent."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"{SHARED_DATA} is missing: tests need ../shared/data beside the project")
    return SHARED_DATA


# The parts of 3D Slicer's markups schema (v1.0.3) that a point list uses, written out here so
# the test runs offline: required keys, enumerations, and the shapes of positions and matrices.
_VECTOR = {"type": "array", "items": {"type": "number"}}
SLICER_MARKUPS_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "required": ["@schema", "markups"],
    "properties": {
        "@schema": {"type": "string", "pattern": "markups-schema-v1\\.0\\.[0-9]+\\.json"},
        "markups": {"type": "array", "items": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"enum": ["Fiducial", "Line", "Angle", "Curve", "ClosedCurve", "Plane", "ROI"]},
                "coordinateSystem": {"enum": ["LPS", "RAS"]},
                "coordinateUnits": {"enum": ["mm", "um"]},
                "locked": {"type": "boolean"},
                "fixedNumberOfControlPoints": {"type": "boolean"},
                "labelFormat": {"type": "string"},
                "lastUsedControlPointNumber": {"type": "integer", "minimum": 0},
                "controlPoints": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "label": {"type": "string"}, "description": {"type": "string"},
                        "associatedNodeID": {"type": "string"},
                        "position": {**_VECTOR, "minItems": 3, "maxItems": 3},
                        "orientation": {**_VECTOR, "minItems": 9, "maxItems": 9},
                        "selected": {"type": "boolean"}, "locked": {"type": "boolean"}, "visibility": {"type": "boolean"},
                        "positionStatus": {"enum": ["undefined", "preview", "defined"]},
                    },
                }},
                "measurements": {"type": "array"},
            },
        }},
    },
}


def validate_markups(path) -> dict:
    """The file is JSON that Slicer's markups schema accepts, with every point defined."""
    document = json.loads(path.read_text())
    jsonschema.validate(document, SLICER_MARKUPS_SCHEMA)
    points = document["markups"][0]["controlPoints"]
    assert all(p["positionStatus"] == "defined" and np.isfinite(p["position"]).all() for p in points)
    assert len({p["id"] for p in points}) == len(points)
    return document
