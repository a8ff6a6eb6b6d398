"""2.5D patches per second: our LandmarkSampler vs the stock TorchIO route, side by side.

Stock route: a landmark label map + ``tio.LabelSampler`` + ``tio.Queue`` yield 3D voxel patches;
the three central planes are cut afterwards. Ours: planes sampled directly at the centres
(trilinear, in mm). Both run on the same 400 x 400 x 160 volume (a phantom case resampled to
1 mm isotropic); with 33-pixel patches at 1 mm both read exact voxel values, so the patches
must be equal, and that is asserted. Bare numpy slicing of three planes is the lower bound.
"""

from __future__ import annotations

import time

import numpy as np
import SimpleITK as sitk
import torch
import torchio as tio

from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, render_case
from lmtransfer.sampling.planes import PatchSpec
from lmtransfer.sampling.sampler import LandmarkSampler, collate

SHAPE_IJK = (400, 400, 160)


def bench_volume() -> tuple[tio.ScalarImage, np.ndarray]:
    """A phantom case on a 1 mm grid of SHAPE_IJK voxels, and its landmark voxels (integer ijk)."""
    case = render_case(0, PhantomCTConfig(spacing_inplane_mm=1.25, slice_mm_choices=(2.5,), slice_mm_weights=(1.0,)))
    image = case.image
    reference = sitk.Image(SHAPE_IJK, image.GetPixelID())
    reference.SetSpacing((1.0, 1.0, 1.0))
    landmarks = np.array([case.landmarks_lps_mm[n] for n, inside in case.in_image.items() if inside])
    centre = np.median(landmarks, axis=0)
    reference.SetOrigin((centre - (np.array(SHAPE_IJK) - 1) / 2.0).tolist())
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, -1024.0)
    geometry = Geometry.from_sitk(resampled)
    ijk = np.rint(geometry.lps_to_index(landmarks)).astype(int)
    keep = np.all((ijk >= 17) & (ijk < np.array(SHAPE_IJK) - 17), axis=1)
    array_ijk = sitk.GetArrayFromImage(resampled).transpose(2, 1, 0).astype(np.float32)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = np.asarray(resampled.GetOrigin()) * [-1, -1, 1]
    return tio.ScalarImage(tensor=torch.from_numpy(array_ijk)[None], affine=affine), ijk[keep]


def orient_stock(patch: np.ndarray) -> np.ndarray:
    """Central planes of a (P, P, P) voxel patch in our plane orientation (see planes.py)."""
    c = patch.shape[0] // 2
    return np.stack([patch[:, :, c].T, patch[:, c, ::-1].T, patch[c, :, ::-1].T])


def stock_route(image: tio.ScalarImage, ijk: np.ndarray, n_patches: int, pixels: int) -> tuple[float, list[tuple]]:
    label = torch.zeros((1, *SHAPE_IJK), dtype=torch.uint8)
    for i, j, k in ijk:
        label[0, i, j, k] = 1
    subject = tio.Subject(ct=image, landmarks=tio.LabelMap(tensor=label, affine=image.affine))
    sampler = tio.LabelSampler(pixels, "landmarks", label_probabilities={0: 0, 1: 1})
    queue = tio.Queue(tio.SubjectsDataset([subject]), max_length=n_patches, samples_per_volume=n_patches,
                      sampler=sampler, num_workers=0, shuffle_subjects=False, shuffle_patches=False, verbose=False)
    start = time.perf_counter()
    out = []
    for index in range(len(queue)):  # a plain `for` over a Queue never stops: it refills
        patch = queue[index]
        planes = orient_stock(patch["ct"].data[0].numpy())
        centre = tuple(int(v) for v in (patch[tio.LOCATION][:3] + pixels // 2).tolist())
        out.append((centre, planes))
    return time.perf_counter() - start, out


def our_route(image: tio.ScalarImage, centres_ijk: np.ndarray, pixels: int) -> tuple[float, np.ndarray]:
    geometry = Geometry.from_ras_affine(image.affine, image.spatial_shape)
    subject = tio.Subject(ct=image, points_lps_mm=geometry.index_to_lps(centres_ijk.astype(float)),
                          point_names=["lm"] * len(centres_ijk))
    sampler = LandmarkSampler(PatchSpec(fov_mm=float(pixels), pixels=pixels))
    start = time.perf_counter()
    planes, _, _ = collate(sampler(subject), pixels)  # the public route: the sampler's generator of patch subjects
    return time.perf_counter() - start, planes


def our_queue_route(image: tio.ScalarImage, centres_ijk: np.ndarray, n_patches: int, pixels: int) -> float:
    """Our sampler in random-draw mode behind a ``tio.Queue``, as on-the-fly training uses it."""
    geometry = Geometry.from_ras_affine(image.affine, image.spatial_shape)
    subject = tio.Subject(ct=image, points_lps_mm=geometry.index_to_lps(centres_ijk.astype(float)),
                          point_names=[f"lm{i}" for i in range(len(centres_ijk))])
    sampler = LandmarkSampler(PatchSpec(fov_mm=float(pixels), pixels=pixels), draws=64)
    queue = tio.Queue(tio.SubjectsDataset([subject]), max_length=n_patches, samples_per_volume=n_patches,
                      sampler=sampler, num_workers=0, shuffle_subjects=False, shuffle_patches=True, verbose=False)
    start = time.perf_counter()
    for index in range(len(queue)):
        queue[index]["planes"].data
    return time.perf_counter() - start


def bare_slicing(volume: np.ndarray, centres_ijk: np.ndarray, pixels: int) -> float:
    h = pixels // 2
    start = time.perf_counter()
    for i, j, k in centres_ijk:
        np.stack([volume[i - h : i + h, j - h : j + h, k], volume[i - h : i + h, j, k - h : k + h], volume[i, j - h : j + h, k - h : k + h]])
    return time.perf_counter() - start


def main(n_patches: int = 300) -> dict:
    image, ijk = bench_volume()
    stock_s, stock = stock_route(image, ijk, n_patches, pixels=33)
    centres = np.array([c for c, _ in stock])
    ours_s, ours = our_route(image, centres, pixels=33)
    for (centre, planes), mine in zip(stock, ours):
        np.testing.assert_allclose(mine, planes, atol=1e-3, err_msg=f"patch at voxel {centre} differs")
    ours32_s, _ = our_route(image, centres, pixels=32)
    queue_s = our_queue_route(image, centres, n_patches, pixels=32)
    bare_s = bare_slicing(image.data[0].numpy(), centres, 32)
    rate = {"stock TorchIO route (LabelSampler + Queue, 33^3 crop, planes cut)": n_patches / stock_s,
            "LandmarkSampler (3 planes, trilinear, 33 px)": n_patches / ours_s,
            "LandmarkSampler (3 planes, trilinear, 32 px)": n_patches / ours32_s,
            "LandmarkSampler behind a tio.Queue (random draws, 32 px)": n_patches / queue_s,
            "bare numpy slicing of 3 planes (lower bound of cost)": n_patches / bare_s}
    print(f"2.5D patches/s on a {SHAPE_IJK} volume, {n_patches} patches at {len(ijk)} landmark voxels "
          f"(equality of the 33 px patches asserted):")
    for name, value in rate.items():
        print(f"  {name:62s} {value:12.0f}")
    print(f"  ratio ours/stock: {rate['LandmarkSampler (3 planes, trilinear, 33 px)'] / rate[next(iter(rate))]:.0f}x; "
          f"bare/ours: {rate['bare numpy slicing of 3 planes (lower bound of cost)'] / rate['LandmarkSampler (3 planes, trilinear, 32 px)']:.0f}x")
    return rate


if __name__ == "__main__":
    main()
