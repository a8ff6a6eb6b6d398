"""The torso phantom: landmarks lie on the structures that define them, HU are CT-like, runs are deterministic."""

import numpy as np
import pytest
import SimpleITK as sitk

from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.shapes import BodyWarp, SmoothFunction1D, rotation
from lmtransfer.phantoms.tissues import Tissue as T
from lmtransfer.phantoms.torso_anatomy import LANDMARKS, VERTEBRAE
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, render_case

TINY = PhantomCTConfig(n_cases=3, spacing_inplane_mm=2.0, slice_mm_choices=(2.5,), slice_mm_weights=(1.0,))

BONE = (T.CORTICAL_BONE, T.CANCELLOUS_BONE, T.MARROW)
KIDNEY = (T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA)
# landmark -> (tissues that must be found, search radius in mm)
EXPECTED = {
    **{f"{v}_body_centre": ((T.CANCELLOUS_BONE,), 2.0) for v in VERTEBRAE},
    "jugular_notch": (BONE, 6.0), "sternal_angle": (BONE, 5.0), "xiphoid_tip": (BONE, 5.0),
    "sternoclavicular_joint_L": ((T.CARTILAGE,), 4.0), "sternoclavicular_joint_R": ((T.CARTILAGE,), 4.0),
    "carina": ((T.AIRWAY,), 3.0), "bronchus_main_L_end": ((T.AIRWAY,), 3.0), "bronchus_main_R_end": ((T.AIRWAY,), 3.0),
    "lung_apex_L": ((T.LUNG,), 4.0), "lung_apex_R": ((T.LUNG,), 4.0),
    "costophrenic_angle_L": ((T.LUNG,), 4.0), "costophrenic_angle_R": ((T.LUNG,), 4.0),
    "heart_apex": ((T.MYOCARDIUM,), 4.0),
    **{name: ((T.ARTERY,), 3.0) for name in (
        "aortic_root", "aortic_arch_top", "brachiocephalic_trunk_origin", "left_common_carotid_origin",
        "left_subclavian_origin", "celiac_trunk_origin", "sma_origin", "renal_artery_origin_L", "renal_artery_origin_R",
        "ima_origin", "aortic_bifurcation", "common_iliac_bifurcation_L", "common_iliac_bifurcation_R")},
    **{f"kidney_{part}_{side}": (KIDNEY, 4.0) for part in ("upper_pole", "lower_pole") for side in "LR"},
    # the hilum opens into the renal sinus (fat, vessels); kidney tissue forms its lips
    "kidney_hilum_L": (KIDNEY, 9.0), "kidney_hilum_R": (KIDNEY, 9.0),
    "liver_dome": ((T.LIVER,), 3.0), "liver_tip": ((T.LIVER,), 4.0),
    "spleen_upper_pole": ((T.SPLEEN,), 4.0), "spleen_lower_pole": ((T.SPLEEN,), 4.0),
    "iliac_crest_top_L": (BONE, 4.0), "iliac_crest_top_R": (BONE, 4.0), "asis_L": (BONE, 5.0), "asis_R": (BONE, 5.0),
    "pubic_symphysis": ((T.CARTILAGE,), 3.0), "sacral_promontory": (BONE, 4.0),
    "femoral_head_centre_L": ((T.CANCELLOUS_BONE,), 2.0), "femoral_head_centre_R": ((T.CANCELLOUS_BONE,), 2.0),
    "rib12_tip_L": (BONE, 4.0), "rib12_tip_R": (BONE, 4.0),
}


@pytest.fixture(scope="module")
def cases():
    return [render_case(i, TINY) for i in range(TINY.n_cases)]


def test_every_landmark_has_a_structural_check():
    assert set(EXPECTED) == set(LANDMARKS) and len(LANDMARKS) >= 60


def _labels_near(labels: np.ndarray, geometry: Geometry, point_lps, radius_mm: float) -> set[int]:
    ijk = geometry.lps_to_index(point_lps)
    spacing = np.asarray(geometry.spacing_mm)
    reach = np.ceil(radius_mm / spacing).astype(int)
    centre = np.rint(ijk).astype(int)
    found = set()
    for di in range(-reach[0], reach[0] + 1):
        for dj in range(-reach[1], reach[1] + 1):
            for dk in range(-reach[2], reach[2] + 1):
                offset = np.array([di, dj, dk])
                voxel = centre + offset
                if np.linalg.norm((voxel - ijk) * spacing) > radius_mm + 0.5 * spacing.max():
                    continue
                if np.all(voxel >= 0) and np.all(voxel < geometry.size_ijk):
                    found.add(int(labels[voxel[2], voxel[1], voxel[0]]))
    return found


def test_landmarks_lie_on_their_structures(cases):
    failures = []
    for case in cases:
        labels = sitk.GetArrayViewFromImage(case.labels)
        geometry = Geometry.from_sitk(case.labels)
        for name, (tissues, radius) in EXPECTED.items():
            if not case.in_image[name]:
                continue
            near = _labels_near(labels, geometry, case.landmarks_lps_mm[name], radius)
            if not near & {int(t) for t in tissues}:
                failures.append(f"{case.case_id} {name}: {[T(v).name for v in sorted(near)]}")
    assert not failures, "\n".join(failures)


def test_ct_numbers_are_realistic(cases):
    for case in cases:
        hu = sitk.GetArrayViewFromImage(case.image).astype(float)
        labels = sitk.GetArrayViewFromImage(case.labels)
        median = {t: np.median(hu[labels == t]) for t in (T.AIR, T.FAT, T.LUNG, T.MUSCLE, T.CORTICAL_BONE, T.LIVER)}
        assert median[T.AIR] < -950
        assert -900 < median[T.LUNG] < -700
        assert -130 < median[T.FAT] < -60
        assert 20 < median[T.MUSCLE] < 80
        assert 40 < median[T.LIVER] < 140
        assert median[T.CORTICAL_BONE] > 350
        stored = sitk.GetArrayViewFromImage(case.image)  # what is written: int16 HU, never saturated
        assert stored.dtype == np.int16 and -1100 <= stored.min() and stored.max() < 4000


def test_geometry_is_anisotropic_and_axis_aligned(cases):
    for case in cases:
        spacing = case.image.GetSpacing()
        assert spacing[0] == spacing[1] < spacing[2]
        assert case.image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_cases_vary_and_are_deterministic(cases):
    again = render_case(1, TINY)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(again.image), sitk.GetArrayViewFromImage(cases[1].image))
    for name in LANDMARKS:
        np.testing.assert_array_equal(again.landmarks_lps_mm[name], cases[1].landmarks_lps_mm[name])
    carinas = np.array([c.landmarks_lps_mm["carina"] for c in cases])
    assert np.ptp(carinas[:, 2]) > 1.0  # different anatomy / table position per case


def test_vertebrae_run_down_the_spine_and_grow(cases):
    for case in cases:
        z = [case.landmarks_lps_mm[f"{v}_body_centre"][2] for v in VERTEBRAE]
        assert np.all(np.diff(z) < -10), "each vertebra lies below the previous one"
        labels = sitk.GetArrayViewFromImage(case.labels)
        geometry = Geometry.from_sitk(case.labels)
        widths = []
        for v in ("T2", "L4"):
            i, j, k = np.rint(geometry.lps_to_index(case.landmarks_lps_mm[f"{v}_body_centre"])).astype(int)
            row = np.isin(labels[k, j, :], [T.CANCELLOUS_BONE, T.CORTICAL_BONE])
            left = right = i
            while left > 0 and row[left - 1]:
                left -= 1
            while right < len(row) - 1 and row[right + 1]:
                right += 1
            widths.append(right - left)
        assert widths[1] > widths[0]


def test_landmarks_outside_the_scan_are_flagged():
    flagged = 0
    for index in range(3, 9):
        case = render_case(index, PhantomCTConfig(spacing_inplane_mm=4.0, slice_mm_choices=(5.0,), slice_mm_weights=(1.0,), fov_cut_probability=0.9))
        geometry = Geometry.from_sitk(case.image)
        for name in LANDMARKS:
            inside = bool(geometry.contains_index(geometry.lps_to_index(case.landmarks_lps_mm[name])))
            assert inside == case.in_image[name]
            flagged += not inside
    assert flagged > 0


def test_warp_inverse_round_trip():
    rng = np.random.default_rng(3)
    f = lambda a: SmoothFunction1D.random(rng, a)
    warp = BodyWarp(np.array([0.0, 0.0, -300.0]), rotation(3, -2, 4), f(5), f(5), f(0.03), f(0.03), f(3), f(3))
    points = rng.uniform([-150, -120, -650], [150, 120, 40], size=(200, 3))
    np.testing.assert_allclose(warp.canonical(warp.physical(points)), points, atol=1e-4)
    qx, qy, qz = warp.canonical_grid(points[:5, 0], points[:5, 1], points[:5, 2])
    diag = np.stack([qx[np.arange(5), np.arange(5), np.arange(5)], qy[np.arange(5), np.arange(5), np.arange(5)], qz[np.arange(5), np.arange(5), np.arange(5)]], axis=1)
    np.testing.assert_allclose(diag, warp.canonical(points[:5]), atol=1e-3)


def test_testing_only_the_promised_tissues_paints_the_same_voxels(monkeypatch):
    """The body outlines are painted testing only the voxels their ``within`` hint names (each inset
    outline lies inside the one before): the labels must be those of testing every voxel of the box."""
    from lmtransfer.phantoms.torso_anatomy import PaintOp

    cfg = PhantomCTConfig(spacing_inplane_mm=3.0, slice_mm_choices=(3.0,), slice_mm_weights=(1.0,))
    for index in (0, 1):
        hinted = sitk.GetArrayFromImage(render_case(index, cfg).labels)
        with monkeypatch.context() as patch:
            patch.setattr(PaintOp, "tested_on", lambda op: None)   # every voxel of every box: the renderer before
            every = sitk.GetArrayFromImage(render_case(index, cfg).labels)
        assert np.array_equal(hinted, every)


def test_painting_and_texturing_in_pieces_gives_the_same_bytes(monkeypatch):
    """The renderer works through each paint box and the volume in z-pieces sized for the CPU cache;
    every step is pointwise, so any piece size must give the bytes of painting each box whole."""
    import lmtransfer.phantoms.noise as noise
    import lmtransfer.phantoms.torso_ct as torso_ct

    cfg = PhantomCTConfig(spacing_inplane_mm=3.0, slice_mm_choices=(3.0,), slice_mm_weights=(1.0,))
    rendered = {}
    for pieces in (1 << 9, 1 << 40):   # a few rows per piece; one piece per box and volume
        monkeypatch.setattr(torso_ct, "PIECE_VOXELS", pieces)
        monkeypatch.setattr(noise, "SLAB_VOXELS", pieces)
        case = render_case(2, cfg)
        rendered[pieces] = (sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.labels))
    small, whole = rendered.values()
    assert np.array_equal(small[1], whole[1])
    assert np.array_equal(small[0], whole[0])


def test_the_in_plane_blur_is_drawn_per_case_and_changes_nothing_else():
    from dataclasses import replace

    from lmtransfer.phantoms.torso_ct import _psf_sigma

    soft = replace(TINY, psf_sigma_inplane_mm=(0.45, 1.5))
    sigmas = [_psf_sigma(i, soft) for i in range(20)]
    assert all(0.45 <= s <= 1.5 for s in sigmas) and len(set(sigmas)) == 20 and sigmas == [_psf_sigma(i, soft) for i in range(20)]
    assert _psf_sigma(3, TINY) == 0.45                       # the default range draws nothing
    index = int(np.argmax(sigmas[:3]))
    sharp, blurred = render_case(index, TINY), render_case(index, soft)
    assert blurred.meta["psf_sigma_inplane_mm"] == round(sigmas[index], 3) and sharp.meta["psf_sigma_inplane_mm"] == 0.45
    assert np.array_equal(sitk.GetArrayFromImage(sharp.labels), sitk.GetArrayFromImage(blurred.labels))
    assert all(np.array_equal(sharp.landmarks_lps_mm[k], blurred.landmarks_lps_mm[k]) for k in LANDMARKS)
    a, b = (sitk.GetArrayFromImage(c.image).astype(float) for c in (sharp, blurred))
    bone = sitk.GetArrayFromImage(sharp.labels) == T.CORTICAL_BONE
    # the same noise draw is added to both: the difference is the blur, which flattens the bone's in-plane edges
    assert np.abs(np.diff(b, axis=2))[bone[:, :, 1:]].mean() < 0.8 * np.abs(np.diff(a, axis=2))[bone[:, :, 1:]].mean()
