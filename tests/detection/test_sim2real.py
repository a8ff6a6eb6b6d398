"""Sim-to-real scoring: patch classes at derived landmarks, specificity far from them, detection error."""

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy.spatial import cKDTree

from lmtransfer.detection.detector import DetectConfig, LandmarkDetector
from lmtransfer.detection.sim2real import background_points, evaluate_case, summarise
from lmtransfer.io.coords import Geometry
from toy_detection import BLOBS_LPS, CARD, CentreIntensityNet, toy_ct


def _case(derived):
    image = toy_ct()
    volume = sitk.GetArrayFromImage(image).T
    detector = LandmarkDetector(CentreIntensityNet(), CARD, DetectConfig(coarse_step_mm=8.0, threads=1, batch_size=100))
    return evaluate_case(detector, "toy", volume, Geometry.from_sitk(image), derived, 40, 20.0, seed=3)


def _derived(**points) -> pd.DataFrame:
    return pd.DataFrame([{"landmark": k, "x": v[0], "y": v[1], "z": v[2]} for k, v in points.items()])


def test_patches_at_the_right_places_score_top1_and_background_is_recognised():
    derived = _derived(bright=BLOBS_LPS["bright"], dark=BLOBS_LPS["dark"], carina=[0.0, 0.0, 0.0])  # carina: unknown to the model
    result = _case(derived)
    assert list(result.patches["landmark"]) == ["bright", "dark"]
    assert result.patches["top1"].all() and (result.patches["rank"] == 1).all()
    assert len(result.background) == 40
    metrics = summarise([result], hit_radius_mm=10.0)
    assert (metrics["patch_top1"], metrics["patch_top5"]) == (1.0, 1.0)
    assert metrics["background_specificity"] >= 0.9   # the stand-in net mistakes a few body-edge patches for "dark"
    assert metrics["detected"] == 1.0 and metrics["detection_median_error_mm"] < 4.0


def test_landmarks_in_the_wrong_place_are_counted_wrong():
    swapped = _case(_derived(bright=BLOBS_LPS["dark"], dark=BLOBS_LPS["bright"]))
    assert not swapped.patches["top1"].any() and (swapped.patches["rank"] > 1).all()
    metrics = summarise([swapped], hit_radius_mm=10.0)
    assert metrics["patch_top1"] == 0.0 and metrics["detected_within_radius"] == 0.0


def test_background_points_lie_in_the_body_far_from_the_landmarks_and_repeat_with_the_seed():
    image = toy_ct()
    volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
    avoid = np.array(list(BLOBS_LPS.values()))
    points = background_points(volume, geometry, avoid, 100, 25.0, seed=1)
    assert len(points) == 100 and cKDTree(avoid).query(points)[0].min() >= 25.0
    assert (np.abs(points[:, 0]) < 39).all() and (np.abs(points[:, 1]) < 31).all()   # the toy body is |x| < 38, |y| < 30
    assert np.array_equal(points, background_points(volume, geometry, avoid, 100, 25.0, seed=1))
