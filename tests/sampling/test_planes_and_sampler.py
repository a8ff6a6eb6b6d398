import numpy as np
import pytest
import torchio as tio
import torch

from conftest import DIRECTIONS
from lmtransfer.io.coords import Geometry
from lmtransfer.sampling.planes import PatchSpec, _sample_axis_aligned, plane_points_lps, sample_planes, small_rotations
from lmtransfer.sampling.sampler import LandmarkSampler, background_points, collate


def linear_volume(geometry: Geometry, coefficients) -> np.ndarray:
    """Voxel values = coefficients . (LPS position): trilinear interpolation reproduces it exactly."""
    i, j, k = np.meshgrid(*(np.arange(s) for s in geometry.size_ijk), indexing="ij")
    lps = geometry.index_to_lps(np.stack([i, j, k], axis=-1).reshape(-1, 3))
    return (lps @ np.asarray(coefficients, float)).reshape(geometry.size_ijk)


@pytest.mark.parametrize("direction", ["identity", "oblique", "permuted"])
def test_planes_sample_the_right_physical_points(direction):
    geometry = Geometry((40, 36, 30), (0.8, 0.9, 2.5), (-10.0, 5.0, -40.0), DIRECTIONS[direction])
    coefficients = np.array([1.0, -2.0, 0.5])
    volume = linear_volume(geometry, coefficients)
    centre = geometry.index_to_lps(np.array([20.0, 18.0, 15.0]))
    spec = PatchSpec(fov_mm=12.0, pixels=8)
    planes = sample_planes(volume, geometry, centre[None], spec)[0]
    expected = plane_points_lps(centre[None], spec)[0] @ coefficients
    np.testing.assert_allclose(planes, expected, atol=1e-3)


@pytest.mark.parametrize("direction", ["identity", "flipped_y", "ras_like", "permuted"])
@pytest.mark.parametrize("spec", [PatchSpec(12.0, 8), PatchSpec(20.0, 7), PatchSpec(8.0, 16)])
def test_separable_path_equals_general_trilinear(direction, spec):
    """Unrotated patches of axis-aligned images take the separable path; identity rotations force
    the general one. Centres anywhere, near and across the border included."""
    geometry = Geometry((40, 36, 30), (0.8, 0.9, 2.5), (-10.0, 5.0, -40.0), DIRECTIONS[direction])
    rng = np.random.default_rng(3)
    volume = rng.normal(0, 300, geometry.size_ijk).astype(np.float32)
    centres = geometry.index_to_lps(rng.uniform(-3, np.array(geometry.size_ijk) + 2, (200, 3)))
    fast = sample_planes(volume, geometry, centres, spec)
    general = sample_planes(volume, geometry, centres, spec, rotations=np.broadcast_to(np.eye(3), (200, 3, 3)))
    np.testing.assert_allclose(fast, general, atol=2e-3)
    inside = _sample_axis_aligned(volume, geometry, centres, spec, np.empty_like(fast))
    assert 5 < inside.sum() < 200  # both paths are exercised


def test_plane_orientation_conventions():
    spec = PatchSpec(fov_mm=8.0, pixels=4)
    points = plane_points_lps(np.zeros((1, 3)), spec)[0]  # (3, P, P, 3)
    axial, coronal, sagittal = points
    assert np.all(np.diff(axial[:, 0, 1]) > 0) and np.all(np.diff(axial[0, :, 0]) > 0)  # rows to P, cols to L
    assert np.all(np.diff(coronal[:, 0, 2]) < 0) and np.all(np.diff(coronal[0, :, 0]) > 0)  # rows down, cols to L
    assert np.all(np.diff(sagittal[:, 0, 2]) < 0) and np.all(np.diff(sagittal[0, :, 1]) > 0)  # rows down, cols to P
    np.testing.assert_allclose(np.abs(np.diff(axial[0, :, 0])), spec.pixel_mm)
    np.testing.assert_allclose(points.reshape(-1, 3).mean(axis=0), 0, atol=1e-12)  # centred


def test_border_points_are_padded_not_dropped():
    geometry = Geometry((10, 10, 10), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    volume = np.full((10, 10, 10), 100.0, dtype=np.float32)
    planes = sample_planes(volume, geometry, np.array([[0.0, 0.0, 0.0], [50.0, 50.0, 50.0]]), PatchSpec(16.0, 8))
    assert planes.shape == (2, 3, 8, 8)
    assert (planes[0] == 100).any() and (planes[0] == -1024).any()
    assert (planes[1] == -1024).all()


def test_rotations_are_proper():
    r = small_rotations(np.random.default_rng(1), 10, 15.0)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    angles = np.degrees(np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= 15.0 + 1e-9


def _subject(points, names):
    data = torch.from_numpy(np.random.default_rng(0).normal(0, 100, (30, 30, 20)).astype(np.float32))[None]
    image = tio.ScalarImage(tensor=data, affine=np.diag([-1.2, -1.2, 2.5, 1.0]))
    return tio.Subject(ct=image, points_lps_mm=np.asarray(points, float), point_names=names)


def test_landmark_sampler_yields_patches_with_their_centres():
    subject = _subject([[10.0, 12.0, 20.0], [0.0, 0.0, 0.0]], ["a", "b"])
    patches = list(LandmarkSampler(PatchSpec(20.0, 16))(subject))
    assert [p["name"] for p in patches] == ["a", "b"]
    assert patches[0]["planes"].shape == (3, 16, 16, 1)
    np.testing.assert_allclose(patches[0]["centre_lps_mm"], [10.0, 12.0, 20.0])
    again = list(LandmarkSampler(PatchSpec(20.0, 16), jitter_mm=2.0, rotation_deg=5.0, seed=3)(subject))
    same = list(LandmarkSampler(PatchSpec(20.0, 16), jitter_mm=2.0, rotation_deg=5.0, seed=3)(subject))
    assert torch.equal(again[0]["planes"].data, same[0]["planes"].data)
    assert not torch.equal(again[0]["planes"].data, patches[0]["planes"].data)


def test_background_points_keep_their_distance():
    geometry = Geometry((60, 60, 40), (2.0, 2.0, 2.5), (0.0, 0.0, 0.0), np.eye(3))
    volume = np.full(geometry.size_ijk, -1000.0, dtype=np.float32)
    volume[10:50, 10:50, 5:35] = 40.0  # the "body"
    landmarks = geometry.index_to_lps(np.array([[30, 30, 20], [20, 20, 10]]))
    points = background_points(volume, geometry, landmarks, 50, 25.0, np.random.default_rng(0), margin_mm=4.0)
    assert points.shape == (50, 3)
    distance = np.linalg.norm(points[:, None] - landmarks[None], axis=2).min(axis=1)
    assert distance.min() >= 25.0
    ijk = geometry.lps_to_index(points)
    assert np.all((ijk >= np.array([10, 10, 5]) - 0.5) & (ijk <= np.array([49.5, 49.5, 34.5])))
    with pytest.raises(ValueError, match="background points"):
        background_points(volume, geometry, landmarks, 50, 500.0, np.random.default_rng(0))


def test_random_draws_visit_every_name_equally_and_stop_at_num_patches():
    subject = _subject([[0.0, 0.0, 0.0]] * 9 + [[5.0, 5.0, 5.0]], ["common"] * 9 + ["rare"])
    drawn = [p["name"] for p in LandmarkSampler(PatchSpec(20.0, 8), draws=50, seed=1)(subject, num_patches=400)]
    assert len(drawn) == 400
    assert 0.4 < drawn.count("rare") / 400 < 0.6  # one point of ten, drawn half of the time: per name, not per point
    endless = LandmarkSampler(PatchSpec(20.0, 8), draws=7)(subject)
    assert len([next(endless) for _ in range(30)]) == 30  # no num_patches: TorchIO's Queue takes what it needs


def test_collate_gives_back_the_planes_the_sampler_cut():
    subject = _subject([[10.0, 12.0, 20.0], [0.0, 0.0, 0.0]], ["a", "b"])
    planes, centres, names = collate(LandmarkSampler(PatchSpec(20.0, 16))(subject), 16)
    assert planes.shape == (2, 3, 16, 16) and planes.dtype == np.float32 and names == ["a", "b"]
    np.testing.assert_allclose(centres[0], [10.0, 12.0, 20.0])
    nothing = _subject(np.zeros((0, 3)), [])
    assert collate(LandmarkSampler(PatchSpec(20.0, 16))(nothing), 16)[0].shape == (0, 3, 16, 16)
