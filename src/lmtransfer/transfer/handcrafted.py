"""The sceptic's baseline: hand-crafted features of a lesion patch, no network at all.

If AdaBoost on these does as well as on the CNN features, the task is too easy to tell
pre-trainings apart: generic filters already separate lesions from look-alikes. Per plane of the
2.5D patch (values in [-1, 1], patch centre = candidate centre):

- intensity: centre (mean of the central 2 x 2 pixels), mean, spread, 10th / 50th / 90th
  percentile and maximum of the patch, centre minus the mean of a ring around it;
- shape at three scales (sigma 1, 2, 4 pixels): the two eigenvalues of the scale-normalised
  Hessian at the centre (both strongly negative: a bright blob; one: a bright tube);
- the bright component through the centre (pixels above half-way between the patch median and
  the centre value, connected to the centre): its area, as a fraction of the patch, and its
  elongation (ratio of its two principal spreads).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SCALES_PX = (1.0, 2.0, 4.0)
PER_PLANE = 8 + 2 * len(SCALES_PX) + 2


def _hessian_eigenvalues(images: np.ndarray, sigma: float) -> np.ndarray:
    """Eigenvalues (n, 2), smaller first, of sigma^2 x the Hessian at the centre of each image (n, P, P)."""
    c = images.shape[-1] // 2
    window = slice(max(c - int(4 * sigma) - 2, 0), c + int(4 * sigma) + 3)   # enough of the patch for the filter at the centre
    crop = images[:, window, window]
    centre = c - window.start

    def derivative(order):
        return ndimage.gaussian_filter(crop, sigma=(0, sigma, sigma), order=(0, *order), mode="nearest")[:, centre, centre]

    hyy, hxx, hxy = derivative((2, 0)), derivative((0, 2)), derivative((1, 1))
    half_trace, root = (hxx + hyy) / 2, np.sqrt(((hxx - hyy) / 2) ** 2 + hxy ** 2)
    return sigma ** 2 * np.stack([half_trace - root, half_trace + root], axis=1)


def _bright_component(image: np.ndarray) -> tuple[float, float]:
    """Area fraction and elongation of the bright region connected to the centre of one image (P, P)."""
    c = image.shape[-1] // 2
    centre, median = float(image[c - 1 : c + 1, c - 1 : c + 1].mean()), float(np.median(image))
    if centre <= median:
        return 0.0, 1.0
    labels, _ = ndimage.label(image > (centre + median) / 2)
    own = labels[c, c]
    if own == 0:
        return 0.0, 1.0
    ys, xs = np.nonzero(labels == own)
    if len(ys) < 3:
        return len(ys) / image.size, 1.0
    spreads = np.sqrt(np.maximum(np.linalg.eigvalsh(np.cov(np.stack([ys, xs]))), 1e-6))
    return len(ys) / image.size, float(spreads[1] / spreads[0])


def handcrafted_features(x: np.ndarray) -> np.ndarray:
    """Features (n, 3 * PER_PLANE) float32 of patches ``x`` (n, 3, P, P) in [-1, 1]."""
    x = np.asarray(x, dtype=np.float32)
    n, planes, size, _ = x.shape
    c, r = size // 2, np.hypot(*np.mgrid[:size, :size] - (size - 1) / 2)
    ring = (r >= size / 8) & (r < size / 4)
    columns = []
    for plane in range(planes):
        images = x[:, plane]
        flat = images.reshape(n, -1)
        centre = images[:, c - 1 : c + 1, c - 1 : c + 1].mean(axis=(1, 2))
        p10, p50, p90 = np.percentile(flat, [10, 50, 90], axis=1)
        columns += [centre, flat.mean(axis=1), flat.std(axis=1), p10, p50, p90, flat.max(axis=1), centre - images[:, ring].mean(axis=1)]
        for sigma in SCALES_PX:
            columns += list(_hessian_eigenvalues(images, sigma).T)
        component = np.array([_bright_component(image) for image in images]).reshape(n, 2)
        columns += [component[:, 0], component[:, 1]]
    features = np.stack(columns, axis=1).astype(np.float32)
    if not np.isfinite(features).all():
        raise ValueError("hand-crafted features: NaN or infinite values (check the patches)")
    return features


class HandcraftedSource:
    """A feature source that is not a network: ``extract_features`` calls it on the patches."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return handcrafted_features(x)
