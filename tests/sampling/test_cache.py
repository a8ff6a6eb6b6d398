import json

import numpy as np
import pytest
import torchio as tio

from lmtransfer.io.manifest import build_manifest
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, generate_dataset
from lmtransfer.sampling.cache import BACKGROUND, PatchCacheConfig, build_patch_cache, load_cache, split_cases
from lmtransfer.sampling.planes import sample_planes
from lmtransfer.io.coords import Geometry

COARSE = PhantomCTConfig(n_cases=2, spacing_inplane_mm=3.0, slice_mm_choices=(4.0,), slice_mm_weights=(1.0,))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    generate_dataset(COARSE, root, progress=False)
    frame, _ = build_manifest(root / "images", [root / "landmarks"], progress=False)
    return frame


def test_cache_holds_exact_patches_and_resumes(manifest, tmp_path):
    cfg = PatchCacheConfig(background_per_case=10, augmented_copies=1)
    out = build_patch_cache(manifest, "m1", cfg, tmp_path / "cache", progress=False)
    patches, index = load_cache(out)
    assert patches.dtype == np.int16 and patches.shape[1:] == (3, 32, 32) and len(index) == len(patches)
    per_case = manifest.groupby("case").size()
    for case, n in per_case.items():
        rows = index[(index["case"] == case) & (index["variant"] == 0)]
        assert (rows["name"] != BACKGROUND).sum() == n and (rows["name"] == BACKGROUND).sum() == 10
    # a clean patch equals a fresh cut at its centre (rounded to HU)
    row = index[(index["variant"] == 0) & (index["name"] == "T8_body_centre")].iloc[0]
    image = tio.ScalarImage(manifest.loc[manifest["case"] == row["case"], "image_path"].iloc[0])
    fresh = sample_planes(image.data[0].numpy(), Geometry.from_ras_affine(image.affine, image.spatial_shape),
                          row[["x_lps_mm", "y_lps_mm", "z_lps_mm"]].to_numpy(float)[None], cfg.spec)[0]
    np.testing.assert_allclose(patches[row["row"]], np.rint(fresh), atol=1)
    assert json.loads((out / "cache.json").read_text())["manifest_hash"] == "m1"
    # resume: a piece left over is reused; same settings -> nothing rebuilt
    stamp = (out / "patches.npy").stat().st_mtime_ns
    build_patch_cache(manifest, "m1", cfg, out, progress=False)
    assert (out / "patches.npy").stat().st_mtime_ns == stamp
    build_patch_cache(manifest, "m2", cfg, out, progress=False)  # other data -> rebuilt
    assert json.loads((out / "cache.json").read_text())["manifest_hash"] == "m2"


def test_split_by_case_is_disjoint_and_fixed():
    cases = [f"case_{i:03d}" for i in range(40)]
    a = split_cases(cases, (0.7, 0.15, 0.15), seed=5)
    b = split_cases(list(reversed(cases)), (0.7, 0.15, 0.15), seed=5)
    assert a == b
    assert sorted(a["train"] + a["val"] + a["test"]) == cases
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    assert (len(a["val"]), len(a["test"])) == (6, 6)
    with pytest.raises(ValueError, match="too few"):
        split_cases(cases[:2], (0.5, 0.25, 0.25), 0)


def test_interrupted_build_resumes_from_finished_cases(manifest, tmp_path, monkeypatch):
    import lmtransfer.sampling.cache as cache

    real, calls = cache._case_patches, []

    def interrupted_on_second(case, *args):
        calls.append(case)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(case, *args)

    monkeypatch.setattr(cache, "_case_patches", interrupted_on_second)
    cfg = PatchCacheConfig(background_per_case=5, augmented_copies=0)
    out = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        build_patch_cache(manifest, "m", cfg, out, progress=False)
    assert len(list((out / "cases").glob("*.npz"))) == 1 and not (out / "patches.npy").exists()
    first = calls[0]
    calls.clear()
    build_patch_cache(manifest, "m", cfg, out, progress=False)
    assert first not in calls and len(calls) == 1  # only the unfinished case is cut again
    assert (out / "patches.npy").exists() and not (out / "cases").exists()


def test_a_changed_image_or_cutting_code_is_cut_again(tmp_path, monkeypatch):
    """The cache is reused only for the same manifest (each image's hash in it) and the same cutting code:
    an image whose voxels changed under the same grid and landmarks is not served from the old cut."""
    import SimpleITK as sitk

    import lmtransfer.sampling.cache as cache
    from lmtransfer.io.manifest import write_outputs
    from lmtransfer.sampling.cache import file_hash

    root = tmp_path / "phantom"
    generate_dataset(COARSE, root, progress=False)
    cfg = PatchCacheConfig(background_per_case=4, augmented_copies=0)

    def cut() -> np.ndarray:
        frame, report = build_manifest(root / "images", [root / "landmarks"], progress=False)
        write_outputs(frame, report, tmp_path / "manifest")
        out = build_patch_cache(frame, file_hash(tmp_path / "manifest" / "manifest.csv"), cfg, tmp_path / "cache", progress=False)
        return np.array(load_cache(out)[0])

    before = cut()
    path = root / "images" / "case_000.nii.gz"
    image = sitk.ReadImage(str(path))
    brighter = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) + np.int16(100))
    brighter.CopyInformation(image)
    sitk.WriteImage(brighter, str(path), useCompression=True)
    after = cut()
    assert after.shape == before.shape and not np.array_equal(after, before)
    stamp = (tmp_path / "cache" / "patches.npy").stat().st_mtime_ns
    cut()
    assert (tmp_path / "cache" / "patches.npy").stat().st_mtime_ns == stamp       # nothing changed: kept
    monkeypatch.setattr(cache, "source_digest", lambda module: "other code")
    cut()
    assert (tmp_path / "cache" / "patches.npy").stat().st_mtime_ns != stamp       # the cutting code changed: cut again
