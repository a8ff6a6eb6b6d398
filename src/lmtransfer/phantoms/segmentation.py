"""A TotalSegmentator-style label map of a torso phantom case, so the landmark derivation can be
measured where the truth is known.

The phantom's label map holds tissues: one ``LIVER``, one ``LUNG`` for both lungs, one bone class
for every bone. Organs with their own tissue map directly (liver, spleen, heart); paired ones are
split at the body's midline (``x = 0`` in the phantom's LPS frame, where the spine lies): kidneys
(cortex and medulla) and lungs, each lung written as its upper lobe (the derivation takes the union
of a side's lobes). Bones, the aorta and its branches, the iliac arteries and the trachea come from
the structures the phantom's paint operations are named for (``render_case(..., structure_ids)``):
each voxel belongs to the structure whose operation painted it last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from lmtransfer.anatomy.derive import derive_landmarks
from lmtransfer.anatomy.labels import LabelTable
from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.tissues import Tissue
from lmtransfer.phantoms.torso_anatomy import VERTEBRAE
from lmtransfer.phantoms.torso_ct import PhantomCase, PhantomCTConfig, render_case

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
# the kinds the named structures give (bones, aorta and branches, trachea)
STRUCTURE_KINDS = (*(f"{level}_body_centre" for level in VERTEBRAE),
                   "femoral_head_centre_L", "femoral_head_centre_R", "iliac_crest_top_L", "iliac_crest_top_R", "asis_L", "asis_R",
                   "pubic_symphysis", "sacral_promontory", "rib12_tip_L", "rib12_tip_R", "sternoclavicular_joint_L",
                   "sternoclavicular_joint_R", "jugular_notch", "xiphoid_tip", "aortic_bifurcation", "aortic_arch_top",
                   "brachiocephalic_trunk_origin", "left_common_carotid_origin", "left_subclavian_origin", "carina")


def totalsegmentator_map(tissues: sitk.Image, structures: sitk.Image | None = None) -> sitk.Image:
    """TotalSegmentator v2 ids for :data:`STRUCTURES`, on the tissue map's grid, and where given the
    ``structures`` map's ids (:func:`render_with_structures`) over them."""
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
    if structures is not None:
        named = sitk.GetArrayViewFromImage(structures)
        painted = named > 0
        out[painted] = named[painted]
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(tissues)
    return image


def render_with_structures(index: int, cfg: PhantomCTConfig) -> PhantomCase:
    """Case ``index`` rendered with its structure map in TotalSegmentator v2 ids."""
    return render_case(index, cfg, structure_ids={name: label for label, name in TABLE.names.items()})


def case_truth(case: PhantomCase) -> pd.DataFrame:
    """The case's landmarks as rows of ``landmarks_truth.csv`` (``landmark, x, y, z, in_image``)."""
    return pd.DataFrame([{"landmark": name, "x": p[0], "y": p[1], "z": p[2], "in_image": case.in_image[name]}
                         for name, p in case.landmarks_lps_mm.items()])


def derivation_errors(tissues: sitk.Image, truth: pd.DataFrame, structures: sitk.Image | None = None) -> pd.DataFrame:
    """Derived against true positions for :data:`MEASURED_KINDS` of one phantom case, and
    :data:`STRUCTURE_KINDS` too when its ``structures`` map is given.

    ``truth``: the case's rows of ``landmarks_truth.csv`` (``landmark, x, y, z, in_image``). One row
    per kind: ``derived``, ``in_image``, ``error_mm`` (NaN unless both), and the derivation's reason.
    """
    derived, _ = derive_landmarks(totalsegmentator_map(tissues, structures), TABLE)
    derived, truth = derived.set_index("landmark"), truth.set_index("landmark")
    rows = []
    for kind in MEASURED_KINDS + (STRUCTURE_KINDS if structures is not None else ()):
        found, present = bool(derived.loc[kind, "derived"]), bool(truth.loc[kind, "in_image"])
        error = (float(np.linalg.norm(derived.loc[kind, ["x", "y", "z"]].to_numpy(float) - truth.loc[kind, ["x", "y", "z"]].to_numpy(float)))
                 if found and present else np.nan)
        rows.append({"landmark": kind, "derived": found, "in_image": present, "error_mm": error, "reason": derived.loc[kind, "reason"]})
    return pd.DataFrame(rows)
