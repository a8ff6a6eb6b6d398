"""Frozen features: which extractors load, the random control is seeded, batches do not change the numbers."""

import numpy as np
import pytest
import torch

from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.sampling.cache import PatchCacheConfig
from lmtransfer.models.checkpoint import save_checkpoint
from lmtransfer.training.pretrain import model_card
from lmtransfer.training.train import TrainConfig
from lmtransfer.transfer.features import extract_features, load_sources


@pytest.fixture
def lm_model(tmp_path):
    torch.manual_seed(0)
    model = MiniVGG(3, depth=2, width=4, feature_dim=16)
    save_checkpoint(tmp_path / "lm.pt", model, model_card(model, ["a", "b", "background"], PatchCacheConfig(), TrainConfig()))
    return tmp_path / "lm.pt"


def test_sources_in_the_order_asked_with_a_seeded_random_control(lm_model, tmp_path):
    models = load_sources(lm_model, tmp_path / "unused.pt", ("random", "lm"), seed=0)
    assert list(models) == ["random", "lm"]
    assert models["random"].config == models["lm"].config  # same architecture, no pre-training
    again = load_sources(lm_model, tmp_path / "unused.pt", ("random",), seed=0)["random"]
    other = load_sources(lm_model, tmp_path / "unused.pt", ("random",), seed=1)["random"]
    assert torch.equal(again.classifier.weight, models["random"].classifier.weight)
    assert not torch.equal(other.classifier.weight, models["random"].classifier.weight)
    assert not torch.equal(models["random"].classifier.weight, models["lm"].classifier.weight)


def test_unknown_or_missing_sources_are_named(lm_model, tmp_path):
    with pytest.raises(ValueError, match=r"unknown feature sources \['imagenet'\]"):
        load_sources(lm_model, lm_model, ("lm", "imagenet"), 0)
    with pytest.raises(FileNotFoundError, match="nowhere.pt: cifar model not found"):
        load_sources(lm_model, tmp_path / "nowhere.pt", ("cifar",), 0)


def test_features_do_not_depend_on_the_batch_size(lm_model, tmp_path):
    model = load_sources(lm_model, lm_model, ("lm",), 0)["lm"]
    x = np.random.default_rng(0).uniform(-1, 1, (7, 3, 32, 32)).astype(np.float32)
    whole = extract_features(model, x, threads=1)
    assert whole.shape == (7, 16) and whole.dtype == np.float32
    np.testing.assert_allclose(extract_features(model, x, batch_size=3, threads=1), whole, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval().features(torch.from_numpy(x)).numpy(), whole, rtol=1e-5, atol=1e-6)
    x[2, 0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite features"):
        extract_features(model, x, threads=1)


def test_multilayer_features_pool_every_block_and_end_with_the_feature_layer(lm_model):
    model = load_sources(lm_model, lm_model, ("lm",), 0)["lm"]
    x = np.random.default_rng(1).uniform(-1, 1, (5, 3, 32, 32)).astype(np.float32)
    both = extract_features(model, x, threads=1, layers="multilayer")
    assert both.shape == (5, 4 + 8 + 16)          # block widths 4 and 8, then the 16 features
    np.testing.assert_allclose(both[:, -16:], extract_features(model, x, threads=1), rtol=1e-5, atol=1e-6)
    with torch.no_grad():                          # the first block's channels, averaged over the plane after pooling
        first = model.eval().blocks[:7](torch.from_numpy(x)).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(both[:, :4], first, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="feature layers"):
        extract_features(model, x, threads=1, layers="all")


def test_the_native_source_is_the_lm_cnn_checked_against_the_native_patches(lm_model, tmp_path):
    native = {"fov_mm": PatchCacheConfig().spec.fov_mm, "hu_window": [-1000.0, 1000.0]}
    models = load_sources(lm_model, tmp_path / "unused.pt", ("lm_native", "lm"), 0, native)
    assert list(models) == ["lm_native", "lm"] and models["lm_native"] is models["lm"]
    with pytest.raises(ValueError, match="no native patches"):
        load_sources(lm_model, tmp_path / "unused.pt", ("lm_native",), 0, None)
    with pytest.raises(ValueError, match=r"lm.pt: trained at a 48 mm field of view, but .* cut at 24 mm"):
        load_sources(lm_model, tmp_path / "unused.pt", ("lm_native",), 0, {**native, "fov_mm": 24.0})
    with pytest.raises(ValueError, match=r"HU window \[-1000.0, 1000.0\], but .* \[-1000, 400\]"):
        load_sources(lm_model, tmp_path / "unused.pt", ("lm_native",), 0, {**native, "hu_window": [-1000, 400]})


def test_native_sources_see_the_native_patches():
    from lmtransfer.transfer.features import source_patches
    from lmtransfer.transfer.lesions import INDEX_COLUMNS, LesionSet
    import pandas as pd

    x, native = np.zeros((2, 3, 8, 8), np.float32), np.ones((2, 3, 8, 8), np.float32)
    index = pd.DataFrame([["a", 1, 0, "lesion", 0, 0, 0, ""], ["a", 0, 0, "vessel", 0, 0, 0, ""]], columns=INDEX_COLUMNS)
    assert source_patches(LesionSet(x, index, {}, native), "lm_native") is native
    assert source_patches(LesionSet(x, index, {}, native), "lm") is x
    with pytest.raises(ValueError, match="lm_native: the lesion set has no native patches"):
        source_patches(LesionSet(x, index, {}), "lm_native")
