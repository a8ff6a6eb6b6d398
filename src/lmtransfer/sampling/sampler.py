"""TorchIO sampler of landmark-centred 2.5D patches, and background points for the "+1" class."""

from __future__ import annotations

from collections.abc import Generator

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
    """Yields one 2.5D patch per point listed in the subject (landmarks and background points).

    The subject carries ``points_lps_mm`` (m, 3) and ``point_names`` (m,) beside its image.
    Each yielded subject holds ``planes``: a 2D :class:`torchio.ScalarImage` of shape
    ``(3, P, P, 1)`` (axial, coronal, sagittal in HU), with ``name``, ``centre_lps_mm`` and
    ``location`` attributes, so patches never lose their case and centre.

    Unlike TorchIO's voxel crops, patches are resampled to ``spec.fov_mm`` millimetres whatever
    the spacing, and points near or beyond the border are padded with air rather than wrapped.

    Args:
        spec: field of view (mm) and pixels per side.
        jitter_mm: uniform random shift of each centre, per axis (0: exact centres).
        rotation_deg: random rotation of each patch frame up to this angle.
        image_name: key of the CT image in the subject.
        seed: seed of the augmentation generator (patches are reproducible for a given seed).
        fill_value: value outside the image (air in CT; 0 for MR magnitude images).
    """

    def __init__(self, spec: PatchSpec, jitter_mm: float = 0.0, rotation_deg: float = 0.0, image_name: str = "ct", seed: int | None = 0,
                 fill_value: float = AIR_HU):
        super().__init__((spec.pixels, spec.pixels, 1))
        self.spec, self.jitter_mm, self.rotation_deg, self.image_name = spec, jitter_mm, rotation_deg, image_name
        self.fill_value = fill_value
        self.rng = np.random.default_rng(seed)

    def __call__(self, subject: tio.Subject, num_patches: int | None = None) -> Generator[tio.Subject]:
        # the base class compares a voxel patch size with the image; ours is in mm and padded
        return self._generate_patches(subject, num_patches)

    def sample_arrays(self, subject: tio.Subject) -> tuple[np.ndarray, np.ndarray]:
        """All patches of the subject at once: planes ``(m, 3, P, P)`` float32 HU and centres (m, 3)."""
        image = subject[self.image_name]
        geometry = Geometry.from_ras_affine(image.affine, image.spatial_shape)
        centres = np.asarray(subject[POINTS_KEY], dtype=float).reshape(-1, 3)
        if self.jitter_mm > 0:
            centres = centres + self.rng.uniform(-self.jitter_mm, self.jitter_mm, centres.shape)
        rotations = small_rotations(self.rng, len(centres), self.rotation_deg) if self.rotation_deg > 0 else None
        volume = image.data[0].numpy()
        return sample_planes(volume, geometry, centres, self.spec, rotations, fill_hu=self.fill_value), centres

    def _generate_patches(self, subject: tio.Subject, num_patches: int | None = None) -> Generator[tio.Subject]:
        planes, centres = self.sample_arrays(subject)
        names = list(subject[NAMES_KEY])
        count = len(names) if num_patches is None else min(num_patches, len(names))
        for index in range(count):
            yield tio.Subject(
                planes=tio.ScalarImage(tensor=torch.from_numpy(planes[index][..., None].copy())),
                name=names[index],
                centre_lps_mm=centres[index],
                location=torch.as_tensor(centres[index]),
            )


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
