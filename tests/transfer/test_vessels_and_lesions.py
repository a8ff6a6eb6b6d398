"""Vessel extraction on a tiny MRA phantom, and the lesion patch set cut on its vessels."""

import numpy as np
import pandas as pd
import pytest

from lmtransfer.phantoms.head_mra import PhantomMRAConfig, generate_dataset
from lmtransfer.transfer.lesions import LesionPatchConfig, load_lesion_set, phantom_lesion_set, save_lesion_set
from lmtransfer.transfer.vessels import VesselConfig, dice, extract_dataset, extract_vessels

SMALL = PhantomMRAConfig(n_cases=2, spacing_inplane_mm=1.0, slice_mm_choices=(1.2,), aneurysm_case_fraction=1.0)


@pytest.fixture(scope="module")
def mra(tmp_path_factory):
    root = tmp_path_factory.mktemp("mra")
    generate_dataset(SMALL, root / "phantom", workers=1, progress=False)
    return root


def test_vesselness_finds_a_tube_not_a_plate():
    z, y, x = np.mgrid[:40, :40, :40].astype(float)
    tube = np.exp(-((y - 20) ** 2 + (x - 12) ** 2) / (2 * 1.5**2))
    plate = np.exp(-((x - 30) ** 2) / (2 * 1.5**2))
    volume = 100 + 500 * tube + 300 * plate + np.random.default_rng(0).normal(0, 5, tube.shape)
    volume[:, :, :2] = volume[:, :, -2:] = 0  # a "head" boundary
    mask, info = extract_vessels(volume, (1.0, 1.0, 1.0), VesselConfig(head_margin_mm=2.0, head_threshold_fraction=0.1))
    assert mask[20, 20, 12] and not mask[20, 20, 30]
    assert info["seed_voxels"] > 0


def test_extraction_errors_are_clear():
    with pytest.raises(ValueError, match="NaN"):
        extract_vessels(np.full((8, 8, 8), np.nan), (1, 1, 1))
    with pytest.raises(ValueError, match="constant"):
        extract_vessels(np.zeros((8, 8, 8)), (1, 1, 1))


def test_dice():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    assert dice(a, a) == 1.0 and dice(a, ~a) == 0.0 and dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_extraction_matches_phantom_vessels_and_resumes(mra):
    out = mra / "vessels"
    table = extract_dataset(mra / "phantom" / "images", out, VesselConfig(), mra / "phantom" / "labels", progress=False)
    assert len(table) == 2 and (table["dice"] > 0.6).all()
    assert (table["aneurysm_voxels_found"] > 0.5).all()  # domes are grown into, not suppressed
    stamp = (out / "masks" / "case_000.nii.gz").stat().st_mtime_ns
    again = extract_dataset(mra / "phantom" / "images", out, VesselConfig(), mra / "phantom" / "labels", progress=False)
    assert (out / "masks" / "case_000.nii.gz").stat().st_mtime_ns == stamp
    assert again["dice"].tolist() == table["dice"].tolist()


def test_a_mask_is_extracted_again_when_its_image_or_the_code_changes(mra, tmp_path, monkeypatch):
    """Kept masks are reused only for the image, labels, settings and code they were made from: a case
    whose image changed (a re-rendered phantom, a corrected scan) is redone, the others are kept."""
    import shutil

    import SimpleITK as sitk

    import lmtransfer.transfer.vessels as vessels

    images = tmp_path / "images"
    shutil.copytree(mra / "phantom" / "images", images)
    out = tmp_path / "vessels"
    first = extract_dataset(images, out, VesselConfig(), mra / "phantom" / "labels", progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "masks").glob("*.nii.gz")}
    image = sitk.ReadImage(str(images / "case_001.nii.gz"))
    darker = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) * 0.5).astype(np.int16))   # less inflow: fewer vessels
    darker.CopyInformation(image)
    sitk.WriteImage(darker, str(images / "case_001.nii.gz"), useCompression=True)
    again = extract_dataset(images, out, VesselConfig(), mra / "phantom" / "labels", progress=False)
    assert (out / "masks" / "case_000.nii.gz").stat().st_mtime_ns == stamps["case_000.nii.gz"]     # kept
    assert (out / "masks" / "case_001.nii.gz").stat().st_mtime_ns != stamps["case_001.nii.gz"]     # redone
    assert len(again) == 2 and again.loc[1, "inputs_sha256"] != first.loc[1, "inputs_sha256"]
    monkeypatch.setattr(vessels, "source_digest", lambda module: "other code")
    extract_dataset(images, out, VesselConfig(), mra / "phantom" / "labels", progress=False)
    assert (out / "masks" / "case_000.nii.gz").stat().st_mtime_ns != stamps["case_000.nii.gz"]     # new code: all redone


def test_lesion_patches_on_extracted_vessels(mra, tmp_path):
    extract_dataset(mra / "phantom" / "images", mra / "vessels", VesselConfig(), progress=False)
    cfg = LesionPatchConfig(negatives_per_case=15, positive_copies=2, native_fov_mm=48.0)
    lesions = phantom_lesion_set(mra / "phantom", mra / "vessels", cfg, workers=1, progress=False)
    index = lesions.index
    assert set(index["label"]) == {0, 1}
    clean = index[index["variant"] == 0]
    assert (clean.groupby("case")["label"].apply(lambda s: (s == 0).sum()) == 15).all()
    assert (index.loc[index["variant"] > 0, "label"] == 1).all()  # only lesions get augmented copies
    assert {"vessel"} <= set(clean.loc[clean["label"] == 0, "kind"])
    assert lesions.x.dtype == np.float32 and lesions.x.min() >= -1 and lesions.x.max() <= 1
    # normal centres keep their distance from every aneurysm
    import json

    for case, rows in clean[clean["label"] == 0].groupby("case"):
        meta = json.loads((mra / "phantom" / "meta" / f"{case}.json").read_text())
        for a in meta["aneurysm_list"]:
            d = np.linalg.norm(rows[["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy() - a["centre_lps_mm"], axis=1) - a["radius_mm"]
            assert d.min() > cfg.exclusion_mm - 1e-6
    # every lesion patch shows a bright structure at its centre (small domes, flow voids and bright mimics make
    # the centre's mean no longer a separating cue, by design)
    lesion_x = lesions.x[index["label"].to_numpy() == 1]
    peak = lesion_x[:, :, 12:20, 12:20].max(axis=(2, 3)).mean(axis=1)
    assert (peak - np.median(lesion_x, axis=(1, 2, 3)) > 0.3).all()
    # the lesion sizes are the aneurysms' diameters; normal patches have none
    sizes = sorted(2 * a["radius_mm"] for c in lesions.cases for a in json.loads((mra / "phantom" / "meta" / f"{c}.json").read_text())["aneurysm_list"])
    assert np.allclose(sorted(clean.loc[clean["label"] == 1, "size_mm"]), sizes, atol=1e-3)
    assert clean.loc[clean["label"] == 0, "size_mm"].isna().all()
    # the native patches are the same cuts at twice the field of view: their middle half is the patch at half resolution
    assert lesions.native.shape == lesions.x.shape and lesions.info["native"]["fov_mm"] == 48.0
    pooled = lesions.x.reshape(len(lesions.x), 3, 16, 2, 16, 2).mean(axis=(3, 5))
    middle = np.asarray(lesions.native)[:, :, 8:24, 8:24]
    assert np.corrcoef(pooled.ravel(), middle.ravel())[0, 1] > 0.9
    save_lesion_set(lesions, tmp_path / "set")
    loaded = load_lesion_set(tmp_path / "set")
    assert np.array_equal(np.asarray(loaded.x), lesions.x) and np.array_equal(np.asarray(loaded.native), lesions.native)
    pd.testing.assert_frame_equal(loaded.index, lesions.index, check_exact=False, atol=1e-3)


def test_missing_vessel_mask_is_named(mra, tmp_path):
    with pytest.raises(FileNotFoundError, match="case_000.nii.gz"):
        phantom_lesion_set(mra / "phantom", tmp_path / "nothing", LesionPatchConfig(), progress=False)


def test_no_leak_into_the_scalp_where_the_field_of_view_cuts_the_head():
    """Case 19 of the default phantom: the head is wider than the 150 mm field of view, so the scalp fat
    (as bright as slow blood on TOF) reaches the array's sides; the growth once leaked into it (Dice 0.37)."""
    import SimpleITK as sitk

    from lmtransfer.phantoms.head_mra import LABELS, render_case

    case = render_case(19, PhantomMRAConfig())
    labels = sitk.GetArrayFromImage(case.labels)
    assert (labels[:, :, [0, -1]] == LABELS["scalp_fat"]).any()       # the field of view does cut the scalp
    mask, _ = extract_vessels(sitk.GetArrayFromImage(case.image), case.image.GetSpacing())
    assert not (mask & (labels == LABELS["scalp_fat"])).any()
    assert dice(mask, labels >= LABELS["vessel"]) > 0.8


def test_shared_filter_passes_give_gaussian_filters_bits():
    from scipy import ndimage

    from lmtransfer.transfer.vessels import TRUNCATE, _second_derivatives

    volume = np.random.default_rng(3).normal(300, 80, (19, 23, 17)).astype(np.float32)
    sigma_vox = np.array([1.3, 0.9, 2.1])
    for order, values in _second_derivatives(volume, sigma_vox).items():
        reference = ndimage.gaussian_filter(volume, sigma_vox, order=list(order), truncate=TRUNCATE)
        assert values.dtype == np.float32 and values.tobytes() == reference.tobytes(), order


@pytest.mark.parametrize("corner", [(0, 0, 0), (12, 20, 9), (29, 37, 26)])
def test_filtering_the_box_gives_the_whole_volumes_hessian(corner):
    from lmtransfer.transfer.vessels import filtering_box, hessian_eigenvalues

    rng = np.random.default_rng(5)
    volume = rng.normal(300, 80, (30, 38, 27)).astype(np.float32)
    where = np.zeros(volume.shape, bool)
    z, y, x = corner
    where[max(z - 2, 0):z + 1, max(y - 3, 0):y + 1, x:x + 1] = True  # at an edge, inside, at the far edge
    spacing_xyz = (0.8, 0.7, 1.2)
    box = filtering_box(where, spacing_xyz, 1.6)
    assert any(s.stop - s.start < n for s, n in zip(box, volume.shape))  # a real crop, not the whole array
    for sigma in (0.6, 1.6):
        whole = hessian_eigenvalues(volume, spacing_xyz, sigma, where)
        assert hessian_eigenvalues(volume[box], spacing_xyz, sigma, where[box]).tobytes() == whole.tobytes()


def test_the_head_margin_from_the_heads_box_is_the_whole_arrays():
    from scipy import ndimage

    from lmtransfer.transfer.vessels import deeper_than

    spacing_zyx = (1.2, 0.8, 0.7)
    z, y, x = np.mgrid[:40, :50, :45]
    for centre, radii in [((20, 25, 22), (14, 17, 15)), ((2, 30, 34), (20, 18, 16)), ((20, 25, 22), (40, 30, 30))]:
        body = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii)) < 1  # inside, cut by z and x, beyond all
        reference = ndimage.distance_transform_edt(np.pad(body, ((0, 0), (1, 1), (1, 1))), sampling=spacing_zyx)[:, 1:-1, 1:-1] > 6.0
        assert reference.any()
        assert (deeper_than(body, spacing_zyx, 6.0) == reference).all()
