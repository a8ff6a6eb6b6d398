"""Domain randomisation of HU patches for training: the scanner, protocol and anatomy-texture
variation the phantom lacks, drawn at random so the network cannot rely on the phantom's exact look.

The idea is SynthSeg's (train on images whose contrasts are drawn at random, and the network learns
shape rather than intensity), applied here without tissue labels: tissues occupy HU bands (air,
lung, fat, soft tissue, enhanced blood, bone), so a random monotonic remapping of those bands
changes each tissue's intensity separately while keeping their order. Then a random in-plane blur
(resolution, partial volume) and random noise. All draws come from the caller's generator.

Shapes: patches ``(b, c, P, P)``, float HU; the same transform for a patch's ``c`` planes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# HU knots of the remapping and how far (HU, times ``strength``) each one's output may move: air and
# the top of the range stay; lung, fat, soft tissue, enhanced vessels and bone each move on their own
KNOTS_HU = torch.tensor([-1024.0, -900.0, -500.0, -150.0, -50.0, 0.0, 40.0, 80.0, 150.0, 300.0, 700.0, 1500.0, 3000.0])
SPREAD_HU = torch.tensor([0.0, 60.0, 80.0, 40.0, 30.0, 30.0, 30.0, 40.0, 60.0, 80.0, 150.0, 200.0, 0.0])
BLUR_RADIUS_PX = 3


@dataclass(frozen=True)
class Randomisation:
    """How strongly patches are randomised; ``probability`` 0 turns it off (nothing is drawn)."""

    probability: float = 0.0     # share of training patches randomised
    strength: float = 1.0        # scales the HU spreads of the tissue-band remapping
    blur_px: float = 1.0         # largest Gaussian sigma, in patch pixels
    noise_hu: float = 25.0       # largest added noise standard deviation, HU

    @property
    def enabled(self) -> bool:
        return self.probability > 0


def remap_bands(x_hu: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """A random monotonic piecewise-linear HU mapping per patch (tissue order kept; HU beyond the last knot unchanged)."""
    b = x_hu.shape[0]
    knots = KNOTS_HU.to(x_hu.dtype)
    moved = knots + (torch.rand(b, len(knots), generator=generator) * 2 - 1) * SPREAD_HU * strength
    moved, _ = torch.sort(moved, dim=1)
    flat = x_hu.reshape(b, -1)
    clamped = flat.clamp(knots[0], knots[-1])
    upper = torch.bucketize(clamped, knots).clamp(1, len(knots) - 1)
    k0, k1 = knots[upper - 1], knots[upper]
    o0, o1 = torch.gather(moved, 1, upper - 1), torch.gather(moved, 1, upper)
    mapped = o0 + (clamped - k0) / (k1 - k0) * (o1 - o0)
    return torch.where(flat > knots[-1], flat, mapped).reshape(x_hu.shape)


def blur(x: torch.Tensor, generator: torch.Generator, max_sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur with a random sigma in ``(0, max_sigma_px]`` per patch (edges replicated)."""
    b, c, h, w = x.shape
    sigma = torch.rand(b, generator=generator) * max_sigma_px + 1e-3
    radius = max(BLUR_RADIUS_PX, math.ceil(3 * max_sigma_px))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)       # (b c, 2r + 1)
    y = F.pad(x.reshape(1, b * c, h, w), (radius,) * 4, mode="replicate")
    y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)
    y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def add_noise(x: torch.Tensor, generator: torch.Generator, max_std_hu: float) -> torch.Tensor:
    """White noise with a random standard deviation in ``[0, max_std_hu]`` per patch."""
    std = torch.rand(x.shape[0], 1, 1, 1, generator=generator) * max_std_hu
    return x + torch.randn(x.shape, generator=generator) * std


def randomise(x_hu: torch.Tensor, generator: torch.Generator, settings: Randomisation) -> torch.Tensor:
    """``settings.probability`` of the patches remapped, blurred and noised; the rest as they were (float HU)."""
    x = x_hu.float()
    chosen = torch.rand(x.shape[0], generator=generator) < settings.probability
    y = add_noise(blur(remap_bands(x, generator, settings.strength), generator, settings.blur_px), generator, settings.noise_hu)
    return torch.where(chosen[:, None, None, None], y, x)
