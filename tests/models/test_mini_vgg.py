import pytest
import torch

from lmtransfer.models.mini_vgg import MiniVGG


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_shapes(depth):
    model = MiniVGG(21, depth=depth, width=8, feature_dim=64)
    x = torch.randn(4, 3, 32, 32)
    assert model(x).shape == (4, 21)
    assert model.features(x).shape == (4, 64)


def test_depth_must_fit_the_input():
    with pytest.raises(ValueError, match="halved"):
        MiniVGG(3, depth=6, input_pixels=32)


def test_widening_keeps_the_old_classes():
    torch.manual_seed(0)
    small = MiniVGG(5, depth=2, width=8, feature_dim=32).eval()
    mapping = {0: 0, 1: 1, 2: 2, 3: 3, 4: 9}  # background moves to the new last index
    big = small.widened(10, mapping).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(big.features(x), small.features(x))
        torch.testing.assert_close(big(x)[:, [0, 1, 2, 3, 9]], small(x))


def test_widening_is_seeded_and_leaves_the_global_rng_alone():
    small = MiniVGG(5, depth=2, width=8, feature_dim=32)
    first = small.widened(10, {0: 0, 4: 9}, seed=3)
    torch.manual_seed(123)  # whatever the global RNG holds, the new rows are the same
    second = small.widened(10, {0: 0, 4: 9}, seed=3)
    for key, value in first.state_dict().items():
        torch.testing.assert_close(value, second.state_dict()[key], rtol=0, atol=0)
    other = small.widened(10, {0: 0, 4: 9}, seed=4)
    assert not torch.equal(other.classifier.weight, first.classifier.weight)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    small.widened(10, {0: 0}, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
