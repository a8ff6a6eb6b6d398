"""On-the-fly patches: the queue's cases list the cache's points, its exact patches are the cache's,
and its training batches are balanced, labelled and reproducible."""

import numpy as np
import pytest
import torch

from lmtransfer.io.manifest import build_manifest
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, generate_dataset
from lmtransfer.sampling.cache import PatchCacheConfig, build_patch_cache, load_cache
from lmtransfer.sampling.queue import QueuePatches, case_subjects, exact_patches
from lmtransfer.training.data import class_order, select
from lmtransfer.training.train import TrainConfig, train_model

COARSE = PhantomCTConfig(n_cases=2, spacing_inplane_mm=3.0, slice_mm_choices=(4.0,), slice_mm_weights=(1.0,))
PATCH = PatchCacheConfig(background_per_case=6, augmented_copies=1)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    generate_dataset(COARSE, root, progress=False)
    return build_manifest(root / "images", [root / "landmarks"], progress=False)[0]


def _classes(manifest, n=5):
    return class_order(manifest.loc[manifest["in_image"].astype(bool), "landmark"].tolist(), 0)[:n] + ["background"]


def test_exact_patches_are_the_caches(manifest, tmp_path):
    classes = _classes(manifest)
    cases = sorted(manifest["case"].unique())
    patches, index = load_cache(build_patch_cache(manifest, "m", PATCH, tmp_path / "cache", progress=False))
    cached = select(patches, index, cases, classes, "clean")
    x, rows = exact_patches(case_subjects(manifest, cases, PATCH, classes, loaded=True), PATCH)
    queued = select(x, rows.assign(row=np.arange(len(rows))), cases, classes, "clean")
    np.testing.assert_array_equal(queued.x, cached.x)  # same points (background too), same planes, same bytes
    np.testing.assert_array_equal(queued.y, cached.y)


def test_queue_batches_are_balanced_labelled_and_reproducible(manifest):
    classes = _classes(manifest, 3)
    subjects = list(case_subjects(manifest, sorted(manifest["case"].unique()), PATCH, classes))

    def draw(seed):
        torch.manual_seed(seed)  # the queue shuffles cases and patches with torch's generator
        stream = QueuePatches(subjects, classes, PATCH, seed=seed, samples_per_volume=32, max_length=64)
        return list(stream.batches(200, 48))

    batches = draw(0)
    assert [len(y) for _, y in batches] == [48, 48, 48, 48, 8]
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert x.shape == (200, 3, 32, 32) and set(y.tolist()) == {0, 1, 2, 3}
    assert np.bincount(y.numpy(), minlength=4).min() >= 20  # every class drawn, background included
    again = draw(0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))


def test_training_from_the_queue(manifest):
    classes = _classes(manifest, 3)
    cases = sorted(manifest["case"].unique())
    stream = QueuePatches(list(case_subjects(manifest, cases, PATCH, classes)), classes, PATCH, samples_per_volume=32, max_length=64)
    x, rows = exact_patches(case_subjects(manifest, cases, PATCH, classes), PATCH)
    val = select(x, rows.assign(row=np.arange(len(rows))), cases, classes, "clean")
    cfg = TrainConfig(depth=2, width=4, feature_dim=8, max_epochs=2, epoch_patches=96, batch_size=32, threads=1)
    model, history = train_model(stream, val, cfg, progress=None)
    assert len(history) == 2 and history["val_top1"].between(0, 1).all()
    assert model.classifier.out_features == len(classes)
