"""Seconds per volume of `lmtransfer detect`, and how they grow with volume size, side by side.

One phantom torso rendered three ways: the default grid (1.2 mm in-plane), the same anatomy on a
clinical 0.7 mm grid (about 3x the voxels, same physical size), and the upper half of the
default volume (half the physical size). The search works in mm, so its patch count follows
the physical size of the body, not the voxel count; the body mask and reading follow voxels.
Also one versus two threads on the default volume, the coarse grid scored whole versus screened
on a lattice twice as coarse, and the default search (offset voting, then refinement) versus the
grid scan, with the error against the truth on the first held-out test cases.

Uses models/lm_cnn_lm60.pt (and the shape model) when it exists, else an untrained model of the default architecture
(the work done is the same: the refinement visits a fixed number of points per landmark kind).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lmtransfer.detection.detector import DetectConfig, LandmarkDetector
from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, render_case

MODEL = Path("models/lm_cnn_lm60.pt")
SHAPE = Path("models/landmark_shape.json")
VOTER = Path("models/lm_voter.pt")
TEST_CASES = 3


def detector(config: DetectConfig) -> tuple[LandmarkDetector, str]:
    if MODEL.exists():
        from lmtransfer.detection.shape import ShapeModel

        shape = ShapeModel.load(SHAPE) if SHAPE.exists() else None
        return LandmarkDetector.from_checkpoint(MODEL, config, shape), str(MODEL) + (f" + {SHAPE}" if shape else "")
    from lmtransfer.sampling.cache import BACKGROUND, PatchCacheConfig
    from lmtransfer.training.pretrain import model_card
    from lmtransfer.training.train import TrainConfig

    train = TrainConfig()
    model = train.build(61, PatchCacheConfig().pixels)
    names = [f"landmark_{i}" for i in range(60)] + [BACKGROUND]
    return LandmarkDetector(model, model_card(model, names, PatchCacheConfig(), train), config), "untrained default mini-VGG (61 classes)"


def run(det: LandmarkDetector, image: sitk.Image) -> tuple[float, int]:
    volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
    result = det.detect(volume, geometry, progress=False)
    return result.seconds, result.patches_scored


def main() -> None:
    default_cfg = DetectConfig()
    det, source = detector(default_cfg)
    cases = {
        "default 1.2 mm grid": render_case(0, PhantomCTConfig()).image,
        "clinical 0.7 mm grid": render_case(0, PhantomCTConfig(spacing_inplane_mm=0.7)).image,
    }
    full = cases["default 1.2 mm grid"]
    cases["upper half, 1.2 mm"] = full[:, :, full.GetSize()[2] // 2 :]
    print(f"detection, {source}; coarse {default_cfg.coarse_step_mm} mm, refine {list(default_cfg.refine_steps_mm)} mm, "
          f"{default_cfg.candidates} candidates, {default_cfg.threads} threads")
    timings = {}
    for name, image in cases.items():
        seconds, patches = run(det, image)
        voxels = int(np.prod(image.GetSize()))
        timings[name] = (seconds, patches, voxels)
        print(f"  {name:22s} {voxels / 1e6:6.1f} Mvoxel  {patches:6d} patches  {seconds:6.2f} s/volume  {patches / seconds:6.0f} patches/s")
    base, fine, half = timings["default 1.2 mm grid"], timings["clinical 0.7 mm grid"], timings["upper half, 1.2 mm"]
    print(f"  0.7 vs 1.2 mm grid: {fine[2] / base[2]:.1f}x voxels -> {fine[0] / base[0]:.2f}x time")
    print(f"  half vs whole body: {half[1] / base[1]:.2f}x patches -> {half[0] / base[0]:.2f}x time")
    one = LandmarkDetector(det.model, det.card, replace(default_cfg, threads=1))
    one.shape = det.shape
    seconds_one, _ = run(one, full)
    seconds_two, _ = run(det, full)
    print(f"  network threads: 1 -> {seconds_one:.2f} s, 2 -> {seconds_two:.2f} s (speed-up {seconds_one / seconds_two:.2f}x; "
          "patches are cut in a helper thread in both, so one network thread already keeps two cores busy)")
    screened = LandmarkDetector(det.model, det.card, replace(default_cfg, screen_factor=2))
    screened.shape = det.shape
    volume, geometry = sitk.GetArrayFromImage(full).T, Geometry.from_sitk(full)
    whole, lattice = (d.detect(volume, geometry, progress=False) for d in (det, screened))
    lps = ["x_lps_mm", "y_lps_mm", "z_lps_mm"]
    same = np.isclose(whole.table[lps].to_numpy(float), lattice.table[lps].to_numpy(float), atol=1e-3, equal_nan=True).all(axis=1)
    print(f"  screening (factor 2, top {screened.config.screen_top}): whole grid {whole.patches_scored} patches {whole.seconds:.2f} s -> {lattice.patches_scored} "
          f"patches {lattice.seconds:.2f} s ({whole.seconds / lattice.seconds:.2f}x); same position for {same.sum()} of {len(same)} kinds")
    voting_versus_grid(det)
    from bench_training import devices_present

    others = [d for d in devices_present() if d.type != "cpu"]
    for device in others:
        on_device = LandmarkDetector(det.model, det.card, default_cfg, det.shape, device)
        seconds_device, patches = run(on_device, full)
        print(f"  {device}: {seconds_device:.2f} s/volume, {patches / seconds_device:.0f} patches/s "
              f"({seconds_two / seconds_device:.1f}x the CPU's speed)")
    if not others:
        print("  no GPU on this machine: detection ran on the CPU only")


def voting_versus_grid(det: LandmarkDetector) -> None:
    """The default search (voting, with and without its centroid step) and the grid scan on the first held-out test cases: s/volume, patches, error."""
    import json

    import pandas as pd

    from lmtransfer.detection.evaluate import load_truth, score_case

    splits, truth_path = Path("data/splits.json"), Path("data/phantom_ct/landmarks_truth.csv")
    if not (VOTER.exists() and MODEL.exists() and splits.exists() and truth_path.exists()):
        print(f"  voting vs grid: needs {VOTER}, {MODEL} and the phantom's test cases (`dvc repro train_voter`); skipped")
        return
    cases = json.loads(splits.read_text())["test"][:TEST_CASES]
    truth = load_truth(truth_path)
    config = replace(det.config, threads=DetectConfig().threads)
    searches = {"grid scan": LandmarkDetector(det.model, det.card, config, det.shape),
                "voting": LandmarkDetector.from_checkpoint(MODEL, config, det.shape, voter=VOTER),
                "voting, no centroid": LandmarkDetector.from_checkpoint(MODEL, replace(config, centroid_mm=0.0), det.shape, voter=VOTER)}
    for name in ("grid scan", "voting, no centroid"):
        searches[name].shape = searches["voting"].shape
    rows = {name: [] for name in searches}
    for case in cases:
        image = sitk.ReadImage(f"data/phantom_ct/images/{case}.nii.gz")
        volume, geometry = sitk.GetArrayFromImage(image).T, Geometry.from_sitk(image)
        for name, search in searches.items():  # side by side, case by case
            result = search.detect(volume, geometry, progress=False)
            scored = score_case(case, result.table, truth[truth["case"] == case])
            rows[name].append((result.seconds, result.patches_scored, scored))
    summary = {}
    for name, runs in rows.items():
        errors = pd.concat([r[2] for r in runs])["error_mm"].dropna()
        summary[name] = (np.mean([r[0] for r in runs]), np.mean([r[1] for r in runs]), errors.median(), errors.quantile(0.9))
        print(f"  {name:19s} on test cases {', '.join(cases)}: {summary[name][0]:6.2f} s/volume  {summary[name][1]:7.0f} patches  "
              f"median error {summary[name][2]:.2f} mm  90th percentile {summary[name][3]:.2f} mm")
    grid, vote = summary["grid scan"], summary["voting"]
    print(f"  voting vs grid scan: {grid[0] / vote[0]:.2f}x faster, {grid[1] / vote[1]:.2f}x fewer patches")
    plain = summary["voting, no centroid"]
    print(f"  the centroid step: median error {plain[2]:.2f} -> {vote[2]:.2f} mm, {vote[0] / plain[0]:.2f}x the time")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
