"""The shape model of pairwise landmark offsets."""

from __future__ import annotations

import numpy as np
import pytest

from lmtransfer.detection.shape import ShapeModel
from toy_detection import _shape_cases


def test_shape_model_learns_offsets_and_flags_the_odd_one_out(tmp_path):
    shape = ShapeModel.fit(_shape_cases(), ["a", "b", "c", "d"])
    assert shape.offset_mm[0, 1] == pytest.approx([0.0, 0.0, 40.0], abs=1.5)
    assert (shape.spread_mm[~np.eye(4, dtype=bool)] >= 3.0).all()  # the floor
    positions = np.array([[100.0, 0, 0], [100.0, 0, 40], [130.0, 0, 20], [100.0, 50, 0]])
    everyone = np.ones(4, dtype=bool)
    good = shape.inconsistency(positions, np.arange(4), positions, everyone)
    assert (good < 1.0).all()
    moved = positions.copy()
    moved[2] += [0, 0, 45.0]  # "c" detected on the wrong structure
    scores = shape.inconsistency(moved, np.arange(4), moved, everyone)
    assert scores[2] > 5 and (np.delete(scores, 2) < 2).all()
    assert shape.predicted(moved, np.array([True, True, False, True]))[2] == pytest.approx([130.0, 0, 20], abs=2.0)
    shape.save(tmp_path / "shape.json")
    back = ShapeModel.load(tmp_path / "shape.json").subset(["d", "x", "a"])
    assert back.offset_mm[0, 2] == pytest.approx(-shape.offset_mm[0, 3], abs=0.01)
    assert np.isinf(back.spread_mm[1]).all()  # an unknown kind gets no constraints
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not a landmark shape model"):
        ShapeModel.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="at least 2 cases"):
        ShapeModel.fit(_shape_cases(n=1), ["a", "b"])

