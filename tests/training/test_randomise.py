"""Domain randomisation: tissue order kept, off means untouched, the same draws for the same seed."""

import torch

from lmtransfer.training.randomise import KNOTS_HU, Randomisation, add_noise, blur, randomise, remap_bands
from lmtransfer.training.train import TrainConfig


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_band_remapping_keeps_the_order_of_tissues():
    ramp = torch.linspace(-1024, 2000, 3 * 32 * 32).reshape(1, 3, 32, 32).repeat(16, 1, 1, 1)
    mapped = remap_bands(ramp, _gen(), strength=1.0)
    assert (mapped.reshape(16, -1).diff(dim=1) >= 0).all()                   # monotonic in every patch
    assert not torch.allclose(mapped[0], mapped[1])                          # each patch its own mapping
    assert torch.equal(mapped[:, 0, 0, 0], torch.full((16,), -1024.0))      # air stays air
    moved = (mapped - ramp).abs().amax()
    assert 20 < moved <= 200.5                                               # within the largest spread


def test_blur_and_noise_stay_within_their_settings():
    flat = torch.full((4, 3, 32, 32), 40.0)
    assert torch.allclose(blur(flat, _gen(), 2.0), flat)                     # a blur leaves a uniform patch alone
    noisy = add_noise(flat, _gen(), 10.0)
    assert noisy.std(dim=(1, 2, 3)).max() <= 10.5
    edge = torch.zeros(1, 1, 32, 32)
    edge[..., 16:] = 1000.0
    assert blur(edge, _gen(), 1.5)[0, 0, 0, 15] > 0                          # a sharp edge is softened


def test_randomise_is_seeded_and_off_by_default():
    x = (torch.rand(32, 3, 32, 32, generator=_gen(1)) * 2000 - 1000).to(torch.int16)
    settings = Randomisation(probability=0.5)
    once, again = randomise(x, _gen(7), settings), randomise(x, _gen(7), settings)
    assert torch.equal(once, again)
    changed = (once != x.float()).flatten(1).any(1)
    assert 0 < changed.sum() < 32                                           # about half the patches
    assert torch.equal(randomise(x, _gen(7), Randomisation(probability=0.0)), x.float())
    assert not TrainConfig().randomisation.enabled and len(KNOTS_HU) == 13


def test_a_wide_blur_keeps_its_gaussian_tails():
    # the kernel reached 3 px whatever the sigma: a 3 px sigma was cut at one sigma and blurred too little
    impulse = torch.zeros(64, 1, 33, 33)
    impulse[..., 16, 16] = 1.0
    out = blur(impulse, _gen(3), 4.0)
    assert torch.allclose(out.sum(dim=(1, 2, 3)), torch.ones(64), atol=1e-4)   # a normalised kernel
    wide = out[..., 16, :].amax(dim=-1) < 0.05                                  # the patches drawn with a large sigma
    assert wide.any() and (out[wide][..., 16, 16 + 6] > 0).all()               # reach beyond 3 px
