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
