"""Tissue classes of the torso phantom and their CT numbers (Hounsfield units).

Values follow typical clinical CT: fat about -100 HU, muscle 40-50, liver 55 native and
about 100 portal venous, cortical bone 700-1000 (before partial-volume blur), aerated lung about -850. ``texture`` is the
standard deviation (HU) of the smooth, tissue-specific texture added on top of the mean.
"""

from __future__ import annotations

from enum import IntEnum

PHASES = ("native", "arterial", "portal")


class Tissue(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    SOFT = 3
    LUNG = 4
    BOWEL = 5
    LIVER = 6
    SPLEEN = 7
    KIDNEY_CORTEX = 8
    KIDNEY_MEDULLA = 9
    ARTERY = 10
    VEIN = 11
    HEART_BLOOD = 12
    MYOCARDIUM = 13
    CORTICAL_BONE = 14
    CANCELLOUS_BONE = 15
    MARROW = 16
    CARTILAGE = 17
    DISC = 18
    CSF = 19
    FLUID = 20
    AIRWAY = 21
    STOMACH = 22
    ABDOMEN = 23  # mesenteric fat with bowel loops; resolved into FAT/BOWEL/AIR when rendered
    MEDIASTINUM = 24
    TABLE = 25


# mean HU per phase (native, arterial, portal) and texture std (HU)
HU: dict[Tissue, tuple[tuple[float, float, float], float]] = {
    Tissue.AIR: ((-1000, -1000, -1000), 0.0),
    Tissue.FAT: ((-105, -100, -100), 12.0),
    Tissue.MUSCLE: ((40, 45, 50), 9.0),
    Tissue.SOFT: ((35, 45, 55), 10.0),
    Tissue.LUNG: ((-865, -860, -855), 25.0),
    Tissue.BOWEL: ((30, 60, 75), 18.0),
    Tissue.LIVER: ((58, 75, 102), 8.0),
    Tissue.SPLEEN: ((48, 100, 106), 8.0),
    Tissue.KIDNEY_CORTEX: ((33, 190, 165), 10.0),
    Tissue.KIDNEY_MEDULLA: ((30, 85, 160), 10.0),
    Tissue.ARTERY: ((45, 320, 175), 10.0),
    Tissue.VEIN: ((45, 90, 130), 10.0),
    Tissue.HEART_BLOOD: ((45, 280, 160), 12.0),
    Tissue.MYOCARDIUM: ((45, 110, 100), 8.0),
    Tissue.CORTICAL_BONE: ((660, 660, 660), 110.0),
    Tissue.CANCELLOUS_BONE: ((205, 210, 215), 50.0),
    Tissue.MARROW: ((120, 125, 130), 40.0),
    Tissue.CARTILAGE: ((135, 140, 145), 35.0),
    Tissue.DISC: ((85, 88, 92), 10.0),
    Tissue.CSF: ((15, 18, 22), 6.0),
    Tissue.FLUID: ((8, 8, 10), 5.0),
    Tissue.AIRWAY: ((-990, -990, -990), 5.0),
    Tissue.STOMACH: ((25, 30, 35), 12.0),
    Tissue.ABDOMEN: ((-90, -88, -85), 15.0),
    Tissue.MEDIASTINUM: ((-80, -78, -75), 20.0),
    Tissue.TABLE: ((-250, -250, -250), 30.0),
}


def hu_table(phase: str) -> tuple[list[float], list[float]]:
    """Mean HU and texture std for every tissue label (index = label value) in a contrast phase."""
    column = PHASES.index(phase)
    size = max(Tissue) + 1
    means, textures = [0.0] * size, [0.0] * size
    for tissue, (values, texture) in HU.items():
        means[tissue] = float(values[column])
        textures[tissue] = texture
    return means, textures
