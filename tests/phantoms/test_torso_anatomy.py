"""The torso phantom's anatomy: every landmark centre lies in the tissue its definition names
(the trachea once ran through the aortic arch in a fifth of the cases)."""

import numpy as np
import pytest

from lmtransfer.phantoms.torso_anatomy import LANDMARKS, VERTEBRAE, TorsoBuilder
from lmtransfer.phantoms.torso_ct import PhantomCTConfig
from lmtransfer.phantoms.tissues import Tissue

# where each kind's centre must lie; the organ poles and the hilum are surface or gap points, not listed
EXPECTED = {
    **{f"{v}_body_centre": {Tissue.CANCELLOUS_BONE} for v in VERTEBRAE},
    **{k: {Tissue.ARTERY} for k in LANDMARKS if k.endswith(("_origin", "bifurcation", "bifurcation_L", "bifurcation_R"))},
    "aortic_root": {Tissue.ARTERY}, "aortic_arch_top": {Tissue.ARTERY},
    "carina": {Tissue.AIRWAY}, "bronchus_main_L_end": {Tissue.AIRWAY}, "bronchus_main_R_end": {Tissue.AIRWAY},
    "heart_apex": {Tissue.MYOCARDIUM}, "lung_apex_L": {Tissue.LUNG}, "lung_apex_R": {Tissue.LUNG},
    **{f"kidney_{end}_pole_{side}": {Tissue.KIDNEY_CORTEX} for end in ("upper", "lower") for side in "LR"},
    "liver_dome": {Tissue.LIVER}, "liver_tip": {Tissue.LIVER},
}


@pytest.fixture(scope="module")
def anatomies():
    seed = PhantomCTConfig().seed   # the default set's first 40 cases, as render_case draws them
    return [TorsoBuilder(np.random.default_rng([seed, i])).build() for i in range(40)]


def test_every_landmark_centre_lies_in_its_tissue(anatomies):
    names = list(EXPECTED)
    wrong = []
    for case, anatomy in enumerate(anatomies):
        found = anatomy.tissue_at(np.array([anatomy.landmarks[n] for n in names]))
        wrong += [f"case {case}: {n} in {Tissue(t).name}" for n, t in zip(names, found) if Tissue(t) not in EXPECTED[n]]
    assert not wrong, wrong


def test_the_aortic_arch_passes_left_of_the_trachea(anatomies):
    for anatomy in anatomies:
        arch, carina = anatomy.landmarks["aortic_arch_top"], anatomy.landmarks["carina"]
        assert arch[0] - carina[0] > 10.0 and arch[2] > carina[2]   # left (+x) of the airway's axis and above its split


def _wing_points(anatomy, side: str, z_mm: float) -> np.ndarray:
    """Points (x, y) of the iliac wing's cortical shape in the horizontal plane ``z_mm``, on a 0.5 mm grid."""
    from lmtransfer.phantoms.torso_anatomy import SIDE_NAMES

    op = next(op for op in anatomy.ops if op.structure == f"hip_{SIDE_NAMES[side]}" and op.tissue == Tissue.CORTICAL_BONE)
    low, high = op.shape.bounds()
    x, y = np.meshgrid(np.arange(low[0], high[0], 0.5), np.arange(low[1], high[1], 0.5), indexing="ij")
    inside = op.shape.contains(x, y, np.full_like(x, z_mm))
    return np.column_stack([x[inside], y[inside]])


def test_the_iliac_wing_is_a_thin_flaring_plate_under_its_crest(anatomies):
    # real ilia are thin plates whose crest is their lateral, upper edge; the phantom's wings were once
    # domes, whose top cut horizontally is a filled ellipse and which widen below their top
    for anatomy in anatomies[:10]:
        for side in "LR":
            top = anatomy.landmarks[f"iliac_crest_top_{side}"]
            near = _wing_points(anatomy, side, top[2] - 3.0)
            near = near[np.linalg.norm(near - top[:2], axis=1) < 40.0]
            spread = np.sqrt(np.linalg.eigvalsh(np.cov(near.T)))          # sd across, sd along the band
            assert 2 * np.sqrt(3) * spread[0] < 12.0 and spread[1] > 3 * spread[0], (side, spread)
            lower = _wing_points(anatomy, side, top[2] - 35.0)
            lower = lower[np.abs(lower[:, 1] - top[1]) < 10.0]
            assert len(lower) and np.abs(lower[:, 0]).mean() < abs(top[0]) - 3.0, side   # the wall runs down and inwards
            above = _wing_points(anatomy, side, top[2] + 2.0)
            assert not (np.abs(above[:, 1] - top[1]) < 5.0).any(), side                    # the crest top is its top


def test_the_perirenal_fat_varies_from_a_thin_to_a_thick_rim():
    # a fixed 12 mm dark rim round every kidney was a cue real native-phase kidneys do not give
    seed = PhantomCTConfig().seed
    rims = []
    for i in range(20):
        builder = TorsoBuilder(np.random.default_rng([seed, i]))
        builder.build()
        rims += [float(np.mean(fat.semi_axes - getattr(builder, f"kidney_{side}").semi_axes)) for fat, side in zip(builder.kidney_fat, "LR")]
    assert 2.0 <= min(rims) < 5.0 and 11.0 < max(rims) <= 14.0, (min(rims), max(rims))
