"""A TotalSegmentator-style label map from the torso phantom's tissue labels, for the organs whose
tissue is theirs alone, so the landmark derivation can be measured where the truth is known.

The phantom paints tissues, not structures: one ``LIVER``, one ``LUNG`` for both lungs, one bone
class for every bone. Organs with their own tissue map directly (liver, spleen, heart); paired
ones are split at the body's midline (``x = 0`` in the phantom's LPS frame, where the spine
lies): kidneys (cortex and medulla) and lungs, each lung written as its upper lobe (the derivation
takes the union of a side's lobes). Bones, vessels and airways would need the phantom to paint
structure labels; their kinds are left out of the measurement.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from lmtransfer.anatomy.derive import derive_landmarks
from lmtransfer.anatomy.labels import LabelTable
from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.tissues import Tissue

TABLE = LabelTable.built_in("totalsegmentator_v2")
# structure -> (tissues, side): side +1 keeps x > 0 (patient's left), -1 x < 0, 0 both
STRUCTURES = {
    "liver": ((Tissue.LIVER,), 0),
    "spleen": ((Tissue.SPLEEN,), 0),
    "heart": ((Tissue.HEART_BLOOD, Tissue.MYOCARDIUM), 0),
    "kidney_left": ((Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA), 1),
    "kidney_right": ((Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA), -1),
    "lung_upper_lobe_left": ((Tissue.LUNG,), 1),
    "lung_upper_lobe_right": ((Tissue.LUNG,), -1),
}
# the landmark kinds these structures give
MEASURED_KINDS = ("kidney_upper_pole_L", "kidney_upper_pole_R", "kidney_lower_pole_L", "kidney_lower_pole_R", "liver_dome",
                  "liver_tip", "spleen_upper_pole", "spleen_lower_pole", "lung_apex_L", "lung_apex_R", "costophrenic_angle_L",
                  "costophrenic_angle_R", "heart_apex")


def totalsegmentator_map(tissues: sitk.Image) -> sitk.Image:
    """TotalSegmentator v2 ids for :data:`STRUCTURES`, on the tissue map's grid."""
    labels = sitk.GetArrayViewFromImage(tissues)
    geometry = Geometry.from_sitk(tissues)
    if not np.allclose(geometry.direction, np.eye(3)):
        raise ValueError("the phantom's tissue maps are axis-aligned LPS; got another direction")
    x_i = geometry.origin_lps_mm[0] + geometry.spacing_mm[0] * np.arange(geometry.size_ijk[0])   # x of each column i
    out = np.zeros(labels.shape, np.uint8)
    for name, (kinds, side) in STRUCTURES.items():
        mask = np.isin(labels, np.array([int(t) for t in kinds], np.uint8))
        if side:
            mask &= (np.sign(x_i) == side)[None, None, :]
        out[mask] = TABLE.id_of(name)
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(tissues)
    return image


def derivation_errors(tissues: sitk.Image, truth: pd.DataFrame) -> pd.DataFrame:
    """Derived against true positions for :data:`MEASURED_KINDS` of one phantom case.

    ``truth``: the case's rows of ``landmarks_truth.csv`` (``landmark, x, y, z, in_image``). One row
    per kind: ``derived``, ``in_image``, ``error_mm`` (NaN unless both), and the derivation's reason.
    """
    derived, _ = derive_landmarks(totalsegmentator_map(tissues), TABLE)
    derived, truth = derived.set_index("landmark"), truth.set_index("landmark")
    rows = []
    for kind in MEASURED_KINDS:
        found, present = bool(derived.loc[kind, "derived"]), bool(truth.loc[kind, "in_image"])
        error = (float(np.linalg.norm(derived.loc[kind, ["x", "y", "z"]].to_numpy(float) - truth.loc[kind, ["x", "y", "z"]].to_numpy(float)))
                 if found and present else np.nan)
        rows.append({"landmark": kind, "derived": found, "in_image": present, "error_mm": error, "reason": derived.loc[kind, "reason"]})
    return pd.DataFrame(rows)
