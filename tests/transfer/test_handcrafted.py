"""The sceptic's baseline: hand-crafted patch features that tell blobs from tubes, and the verdict on them."""

import numpy as np

from lmtransfer.transfer.report import sceptic_verdict
from lmtransfer.transfer.features import extract_features, load_sources
from lmtransfer.transfer.handcrafted import PER_PLANE, HandcraftedSource, handcrafted_features


def _patches(n=20, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob, tube = np.exp(-(yy ** 2 + xx ** 2) / 18.0), np.exp(-(xx ** 2) / 8.0)
    x = rng.uniform(-1.0, -0.7, size=(2 * n, 3, size, size)).astype(np.float32)
    x[:n] += 1.2 * blob
    x[n:] += 1.2 * tube
    return x


def test_the_features_tell_a_blob_from_a_tube():
    x = _patches()
    f = handcrafted_features(x)
    assert f.shape == (40, 3 * PER_PLANE) and np.isfinite(f).all()
    first, second = f[:, 10], f[:, 11]                 # Hessian eigenvalues at sigma 2, first plane
    assert (second[:20] < -0.1).all() and (np.abs(second[20:]) < 0.05).all()   # a blob curves both ways, a tube one
    assert (first < -0.1).all()
    elongation = f[:, PER_PLANE - 1]
    assert (elongation[:20] < 1.5).all() and (elongation[20:] > 3).all()
    contrast = f[:, 7]                                 # centre minus ring
    assert (contrast[:20] > contrast[20:]).all()


def test_the_source_is_chosen_by_name_and_computes_its_own_features(tmp_path):
    sources = load_sources(tmp_path / "none.pt", tmp_path / "none.pt", ("handcrafted",), seed=0)
    assert isinstance(sources["handcrafted"], HandcraftedSource)
    x = _patches(4)
    assert np.array_equal(extract_features(sources["handcrafted"], x), handcrafted_features(x))


def test_the_verdict_calls_the_task_too_easy_when_the_baseline_keeps_up():
    aucs = {"lm": 0.80, "cifar": 0.82, "handcrafted": 0.81}
    easy = sceptic_verdict(aucs, 10)
    assert easy["task_too_easy"] and easy["handcrafted_minus_best_cnn_at_10"] == -0.01 and "cifar" in easy["sceptic_verdict"]
    hard = sceptic_verdict({**aucs, "handcrafted": 0.70}, 10)
    assert not hard["task_too_easy"] and "by 0.120" in hard["sceptic_verdict"]
    assert sceptic_verdict({"lm": 0.8, "cifar": 0.82}, 10) == {}
