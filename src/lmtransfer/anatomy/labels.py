"""Label tables: which structure each integer of a label map stands for.

TotalSegmentator v2's ``total`` task (117 classes) is built in; any other table (TotalSegmentator
v1's 104 classes, your own) is a CSV with the columns ``id,name``. Names follow TotalSegmentator's
spelling (``vertebrae_L1``, ``kidney_left``, ``rib_right_12``): the landmark definitions look
structures up by these names.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

_VERTEBRAE_UP = ("S1", *(f"L{i}" for i in range(5, 0, -1)), *(f"T{i}" for i in range(12, 0, -1)),
                 *(f"C{i}" for i in range(7, 0, -1)))

# TotalSegmentator v2, task "total": the name of label id i is TOTALSEGMENTATOR_V2[i - 1]
TOTALSEGMENTATOR_V2: tuple[str, ...] = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas", "adrenal_gland_right",
    "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
    "lung_lower_lobe_right", "esophagus", "trachea", "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder",
    "prostate", "kidney_cyst_left", "kidney_cyst_right", "sacrum", *(f"vertebrae_{v}" for v in _VERTEBRAE_UP),
    "heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right", "subclavian_artery_left",
    "common_carotid_artery_right", "common_carotid_artery_left", "brachiocephalic_vein_left", "brachiocephalic_vein_right",
    "atrial_appendage_left", "superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein", "iliac_artery_left",
    "iliac_artery_right", "iliac_vena_left", "iliac_vena_right", "humerus_left", "humerus_right", "scapula_left",
    "scapula_right", "clavicula_left", "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right",
    "spinal_cord", "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right",
    "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left", "autochthon_right", "iliopsoas_left",
    "iliopsoas_right", "brain", "skull", *(f"rib_left_{i}" for i in range(1, 13)), *(f"rib_right_{i}" for i in range(1, 13)),
    "sternum", "costal_cartilages",
)

BUILT_IN = {"totalsegmentator_v2": TOTALSEGMENTATOR_V2}


class LabelTableError(ValueError):
    """A label table that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class LabelTable:
    """Structure names by label id (and back); ``source`` says where the table came from."""

    names: dict[int, str]
    source: str

    @classmethod
    def built_in(cls, name: str = "totalsegmentator_v2") -> LabelTable:
        return cls({i + 1: n for i, n in enumerate(BUILT_IN[name])}, name)

    @classmethod
    def from_csv(cls, path: Path) -> LabelTable:
        """A CSV with a header ``id,name`` (more columns are ignored); ids are positive integers, names unique."""
        path = Path(path)
        try:
            rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
        except (OSError, UnicodeDecodeError) as exc:
            raise LabelTableError(f"{path}: not readable ({exc})") from exc
        if not rows or not {"id", "name"} <= {str(c).strip().lower() for c in rows[0]}:
            raise LabelTableError(f"{path}: needs a header with the columns id,name")
        names: dict[int, str] = {}
        for line, row in enumerate(rows, start=2):
            row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            try:
                label = int(row["id"])
            except ValueError:
                raise LabelTableError(f"{path}, line {line}: id {row['id']!r} is not an integer") from None
            if label <= 0 or not row["name"]:
                raise LabelTableError(f"{path}, line {line}: ids are positive and every id needs a name")
            if label in names or row["name"] in names.values():
                raise LabelTableError(f"{path}, line {line}: id {label} or name {row['name']!r} appears twice")
            names[label] = row["name"]
        return cls(names, str(path))

    @classmethod
    def resolve(cls, spec: str | Path) -> LabelTable:
        """A built-in table by name (``totalsegmentator_v2``), else a CSV file."""
        if str(spec) in BUILT_IN:
            return cls.built_in(str(spec))
        if not Path(spec).is_file():
            raise LabelTableError(f"{spec}: no such label table (built in: {', '.join(BUILT_IN)}; else a CSV id,name)")
        return cls.from_csv(Path(spec))

    def id_of(self, name: str) -> int | None:
        for label, known in self.names.items():
            if known == name:
                return label
        return None
