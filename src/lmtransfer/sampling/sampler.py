"""TorchIO sampler of landmark-centred 2.5D patches, and background points for the "+1" class."""

from __future__ import annotations

from collections.abc import Generator, Iterable

import numpy as np
import torch
import torchio as tio
from scipy import ndimage
from scipy.spatial import cKDTree

from lmtransfer.io.coords import Geometry
from lmtransfer.sampling.planes import AIR_HU, PatchSpec, sample_planes, small_rotations

POINTS_KEY = "points_lps_mm"
NAMES_KEY = "point_names"


class LandmarkSampler(tio.data.PatchSampler):
    """Yields 2.5D patches centred on the points listed in the subject (landmarks and background points).

    The subject carries ``points_lps_mm`` (m, 3) and ``point_names`` (m,) beside its image.
    Each yielded subject holds ``planes``: a 2D :class:`torchio.ScalarImage` of shape
    ``(3, P, P, 1)`` (axial, coronal, sagittal, in the image's units), with ``name``,
    ``centre_lps_mm`` and ``location`` attributes, so patches never lose their case and centre.

    Two ways to walk the points, as TorchIO users expect of a sampler:

    - ``draws=None`` (the patch cache, lesion sets): every point once, in order; ``num_patches``
      stops early.
    - ``draws=k`` (training from a :class:`torchio.Queue`): an endless stream (or ``num_patches``)
      of points drawn at random, every point *name* equally likely, cut ``k`` at a time.

    Unlike TorchIO's voxel crops, patches are resampled to ``spec.fov_mm`` millimetres whatever
    the spacing, and points near or beyond the border are padded with ``fill_value`` rather than
    wrapped. The planes of a group of points are cut in one vectorised call, so the per-patch cost
    of the generator is only the wrapping into a subject.

    Args:
        spec: field of view (mm) and pixels per side.
        jitter_mm: uniform random shift of each centre, per axis (0: exact centres).
        rotation_deg: random rotation of each patch frame up to this angle.
        image_name: key of the image in the subject.
        seed: seed of the draws and the augmentation (patches are reproducible for a given seed).
        fill_value: value outside the image (air in CT; 0 for MR magnitude images).
        draws: points drawn per group in the random mode; None walks every point once.
    """

    def __init__(self, spec: PatchSpec, jitter_mm: float = 0.0, rotation_deg: float = 0.0, image_name: str = "ct", seed: int | None = 0,
                 fill_value: float = AIR_HU, draws: int | None = None):
        super().__init__((spec.pixels, spec.pixels, 1))
        if draws is not None and draws < 1:
            raise ValueError(f"draws must be at least 1 (or None), got {draws}")
        self.spec, self.jitter_mm, self.rotation_deg, self.image_name = spec, jitter_mm, rotation_deg, image_name
        self.fill_value, self.draws = fill_value, draws
        self.rng = np.random.default_rng(seed)

    def __call__(self, subject: tio.Subject, num_patches: int | None = None) -> Generator[tio.Subject]:
        # the base class compares a voxel patch size with the image; ours is in mm and padded
        return self._generate_patches(subject, num_patches)

    def _generate_patches(self, subject: tio.Subject, num_patches: int | None = None) -> Generator[tio.Subject]:
        image = subject[self.image_name]
        geometry = Geometry.from_ras_affine(image.affine, image.spatial_shape)
        volume = image.data[0].numpy()
        points = np.asarray(subject[POINTS_KEY], dtype=float).reshape(-1, 3)
        names = np.asarray(subject[NAMES_KEY], dtype=object)
        if self.draws is None:
            count = len(names) if num_patches is None else min(num_patches, len(names))
            yield from self._cut(volume, geometry, points[:count], names[:count])
            return
        weights = equal_class_weights(names.astype(str))
        left = num_patches
        while left is None or left > 0:
            group = self.draws if left is None else min(self.draws, left)
            pick = self.rng.choice(len(names), size=group, p=weights)
            yield from self._cut(volume, geometry, points[pick], names[pick])
            left = None if left is None else left - group

    def _cut(self, volume: np.ndarray, geometry: Geometry, centres: np.ndarray, names: np.ndarray) -> Generator[tio.Subject]:
        if self.jitter_mm > 0:
            centres = centres + self.rng.uniform(-self.jitter_mm, self.jitter_mm, centres.shape)
        rotations = small_rotations(self.rng, len(centres), self.rotation_deg) if self.rotation_deg > 0 else None
        planes = sample_planes(volume, geometry, centres, self.spec, rotations, fill_hu=self.fill_value)
        for index in range(len(centres)):
            yield tio.Subject(
                planes=tio.ScalarImage(tensor=torch.from_numpy(planes[index][..., None].copy())),
                name=str(names[index]),
                centre_lps_mm=np.array(centres[index]),
                location=torch.tensor(centres[index]),
            )


def equal_class_weights(labels: np.ndarray) -> np.ndarray:
    """Draw probability of each item so that every label (class index or name) is drawn equally often."""
    _, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights / weights.sum()


def collate(patches: Iterable[tio.Subject], pixels: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The planes ``(m, 3, P, P)`` float32 (``P = pixels``), centres ``(m, 3)`` LPS mm and names of a sampler's patches."""
    planes, centres, names = [], [], []
    for patch in patches:
        planes.append(patch["planes"].data[..., 0].numpy())
        centres.append(patch["centre_lps_mm"])
        names.append(patch["name"])
    stacked = np.stack(planes) if planes else np.zeros((0, 3, pixels, pixels), np.float32)
    return stacked, np.asarray(centres, dtype=float).reshape(-1, 3), names


def background_points(
    volume_ijk: np.ndarray,
    geometry: Geometry,
    landmarks_lps_mm: np.ndarray,
    count: int,
    min_distance_mm: float,
    rng: np.random.Generator,
    body_hu: float = -300.0,
    margin_mm: float = 10.0,
) -> np.ndarray:
    """Random points inside the body, at least ``min_distance_mm`` from every landmark (LPS mm).

    The body is the largest region above ``body_hu`` (which drops the table), eroded by
    ``margin_mm`` so background patches show anatomy, not the skin edge.

    Raises:
        ValueError: fewer than ``count`` such points exist (distance too large for the body).
    """
    coarse = max(1, int(round(4.0 / min(geometry.spacing_mm))))
    body = volume_ijk[::coarse, ::coarse, ::coarse] > body_hu
    labels, n = ndimage.label(body)
    if n == 0:
        raise ValueError("no voxel above the body threshold: is this a CT in HU?")
    sizes = ndimage.sum(body, labels, range(1, n + 1))
    body = labels == (1 + int(np.argmax(sizes)))
    erosion = int(round(margin_mm / (min(geometry.spacing_mm) * coarse)))
    if erosion > 0:
        body = ndimage.binary_erosion(body, iterations=erosion)
    candidates = np.argwhere(body) * coarse
    if len(candidates) == 0:
        raise ValueError("the body is too thin for background patches after the margin")
    tree = cKDTree(np.asarray(landmarks_lps_mm, dtype=float).reshape(-1, 3)) if len(landmarks_lps_mm) else None
    chosen: list[np.ndarray] = []
    for _ in range(20):
        pick = candidates[rng.choice(len(candidates), size=min(len(candidates), count * 4), replace=False)]
        points = geometry.index_to_lps(pick + rng.uniform(-0.5, 0.5, pick.shape) * coarse)
        if tree is not None:
            distance, _ = tree.query(points)
            points = points[distance >= min_distance_mm]
        chosen.extend(points)
        if len(chosen) >= count:
            return np.asarray(chosen[:count])
    raise ValueError(f"only {len(chosen)} of {count} background points are {min_distance_mm} mm from every landmark")
