"""Landmarks derived from a multi-organ label map, each by a written geometric definition.

Every computation runs on voxel centres in physical LPS mm (``Geometry.index_to_lps``), so a
label map stored with flipped or oblique axes gives the same points as one on the CT's own grid.
Float label maps (TotalSegmentator v1 writes float64) are rounded; values that are not whole
numbers (a label map resampled with linear interpolation) are counted in the report.

A landmark is derived only when the structures its definition needs are labelled and not cut
by the edge of the scan where the definition looks; otherwise the report says why not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from lmtransfer.anatomy.labels import LabelTable
from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.torso_anatomy import LANDMARKS, VERTEBRAE

SUPERIOR, INFERIOR, ANTERIOR = np.array([0.0, 0, 1]), np.array([0.0, 0, -1]), np.array([0.0, -1, 0])
LATERAL = {"L": np.array([1.0, 0, 0]), "R": np.array([-1.0, 0, 0])}  # patient's left is +x in LPS
SIDE_NAME = {"L": "left", "R": "right"}
CAP_MM = 3.0            # an extreme point is the centroid of the voxels this close to the extreme
MEET = "(centroid of the midpoints of their closest surface point pairs, within 2 mm of the closest)"
BODY_OPENING_MM = 5.0   # posterior elements (pedicles, laminae, processes) are thinner than twice this


class NotDerivable(Exception):
    """Why a landmark cannot be derived from this label map (the message goes into the report)."""


@dataclass(frozen=True)
class Definition:
    """One landmark kind: the structures it needs, its definition in words, and the computation."""

    landmark: str
    structures: tuple[str, ...]
    text: str
    compute: Callable[[LabelMap], np.ndarray] | None = None   # None: not derivable from these labels (text says why)


class LabelMap:
    """An integer label map with its geometry and label table; structures are looked up by name."""

    def __init__(self, image: sitk.Image, table: LabelTable):
        self._image = image   # the array below may be a view of its buffer: keep the buffer alive as long as the map
        values = sitk.GetArrayViewFromImage(image)
        self.non_integer_voxels = 0
        if np.issubdtype(values.dtype, np.floating):
            rounded = np.rint(values)
            self.non_integer_voxels = int(np.count_nonzero(np.abs(values - rounded) > 1e-3))
            values = rounded
        # array order (k, j, i), in the smallest integer type that holds the labels (a clinical map is 100+ M voxels)
        values = np.clip(values, 0, None) if values.min() < 0 else values
        self.labels = np.asarray(values, dtype=np.min_scalar_type(int(values.max())))
        self.geometry = Geometry.from_sitk(image)
        self.table = table
        self.boxes = ndimage.find_objects(self.labels)
        present = {i + 1 for i, box in enumerate(self.boxes) if box is not None}
        self.unknown_ids = sorted(present - set(table.names))

    def label_of(self, name: str) -> int:
        label = self.table.id_of(name)
        if label is None:
            raise NotDerivable(f"{name} is not in the label table ({self.table.source})")
        if label > len(self.boxes) or self.boxes[label - 1] is None:
            raise NotDerivable(f"{name} (label {label}) is not in this label map")
        return label

    def voxels(self, *names: str) -> np.ndarray:
        """Array indices (N, 3), (k, j, i) order, of every voxel of the named structures."""
        parts = []
        for name in names:
            label = self.label_of(name)
            box = self.boxes[label - 1]
            found = np.argwhere(self.labels[box] == label)
            parts.append(found + [s.start for s in box])
        return np.concatenate(parts)

    def lps(self, voxels: np.ndarray) -> np.ndarray:
        # contiguous (i, j, k) rows: a strided array would make the matrix product crawl on millions of voxels
        return self.geometry.index_to_lps(np.ascontiguousarray(voxels[:, ::-1], dtype=float))

    def points(self, *names: str, whole: bool = False) -> np.ndarray:
        """LPS mm of the structures' voxel centres; ``whole``: refuse a structure the scan's edge cuts."""
        voxels = self.voxels(*names)
        if whole:
            self.check_inside(voxels, " + ".join(names))
        return self.lps(voxels)

    def check_inside(self, voxels: np.ndarray, what: str) -> None:
        last = np.asarray(self.labels.shape) - 1
        if np.any((voxels == 0) | (voxels == last)):
            raise NotDerivable(f"{what} is cut by the edge of the scan")

    def on_edge(self, points_lps: np.ndarray) -> bool:
        ijk = np.rint(self.geometry.lps_to_index(points_lps)).astype(int)
        last = np.asarray(self.geometry.size_ijk) - 1
        return bool(np.any((ijk == 0) | (ijk == last)))

    @cached_property
    def cap_mm(self) -> float:
        return max(CAP_MM, float(max(self.geometry.spacing_mm)))


# ---- geometric building blocks (points in LPS mm) ---------------------------------------------

def extreme(m: LabelMap, points: np.ndarray, direction: np.ndarray, what: str) -> np.ndarray:
    """Centroid of the points within ``m.cap_mm`` of the farthest point along ``direction``."""
    along = points @ (direction / np.linalg.norm(direction))
    cap = points[along >= along.max() - m.cap_mm]
    if m.on_edge(cap):
        raise NotDerivable(f"the {what} lies on the edge of the scan")
    return cap.mean(axis=0)


def long_axis(points: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """Unit principal axis of a point cloud, signed to point along ``towards``."""
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    return axis if axis @ towards >= 0 else -axis


def closest_pairs(a: np.ndarray, b: np.ndarray, slack_mm: float = 2.0) -> np.ndarray:
    """Midpoints (N, 3) of the pairs of points, one from each cloud, at most ``slack_mm`` farther
    apart than the closest pair: where two structures meet, not one voxel pair a grid happens to pick."""
    distance, index = cKDTree(a).query(b)
    near = distance <= distance.min() + slack_mm
    return (a[index[near]] + b[near]) / 2.0


def meeting_point(m: LabelMap, a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    """Centroid of :func:`closest_pairs`; refused where the structures meet at the scan's edge."""
    midpoints = closest_pairs(a, b)
    if m.on_edge(midpoints):
        raise NotDerivable(f"{what} meet at the edge of the scan")
    return midpoints.mean(axis=0)


def fit_sphere(points: np.ndarray, rounds: int = 3) -> tuple[np.ndarray, float]:
    """Least-squares sphere (centre, radius) through points; each round drops points far off the last fit."""
    keep = np.ones(len(points), bool)
    for _ in range(rounds):
        p = points[keep]
        a = np.c_[2 * p, np.ones(len(p))]
        solution = np.linalg.lstsq(a, (p ** 2).sum(axis=1), rcond=None)[0]
        centre = solution[:3]
        radius = float(np.sqrt(solution[3] + centre @ centre))
        residual = np.abs(np.linalg.norm(points - centre, axis=1) - radius)
        keep = residual <= max(2.0 * float(np.median(residual[keep])), 1.0)
        if keep.sum() < 20:
            break
    return centre, radius


def surface(m: LabelMap, name: str) -> np.ndarray:
    """Voxel centres (LPS mm) of the structure's boundary layer."""
    label = m.label_of(name)
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in m.boxes[label - 1])
    mask = m.labels[box] == label
    rim = mask & ~ndimage.binary_erosion(mask)
    return m.lps(np.argwhere(rim) + [s.start for s in box])


def opening(mask: np.ndarray, radius_mm: float, spacing_kji: np.ndarray) -> np.ndarray:
    """Morphological opening by a ball of ``radius_mm`` (physical, whatever the voxel size), through
    Euclidean distance maps: linear in the voxels, where a structuring element grows with the cube of
    the radius in voxels (a 5 mm ball is 15 x 15 x 19 voxels at 0.7 x 0.7 x 0.56 mm)."""
    radius = max(radius_mm, float(np.max(spacing_kji)))   # at least one voxel, so a coarse map still loses its thin parts
    core = ndimage.distance_transform_edt(mask, sampling=spacing_kji) > radius
    if not core.any():
        return core
    return (ndimage.distance_transform_edt(~core, sampling=spacing_kji) <= radius) & mask


# ---- the definitions --------------------------------------------------------------------------

def _body_centre(level: str) -> Callable[[LabelMap], np.ndarray]:
    def compute(m: LabelMap) -> np.ndarray:
        name = f"vertebrae_{level}"
        voxels = m.voxels(name)
        m.check_inside(voxels, name)
        low, high = voxels.min(axis=0), voxels.max(axis=0) + 1
        pad = 2
        mask = np.zeros(tuple(high - low + 2 * pad), bool)
        mask[tuple((voxels - low + pad).T)] = True
        opened = opening(mask, BODY_OPENING_MM, np.asarray(m.geometry.spacing_mm)[::-1])
        parts, count = ndimage.label(opened)
        if count == 0:
            raise NotDerivable(f"{name}: nothing as thick as a vertebral body is left after removing the thin parts")
        largest = np.argmax(np.bincount(parts.ravel())[1:]) + 1
        return m.lps(np.argwhere(parts == largest) + low - pad).mean(axis=0)
    return compute


def _extreme_of(names: tuple[str, ...], direction: np.ndarray, what: str, whole: bool = False):
    return lambda m: extreme(m, m.points(*names, whole=whole), direction, what)


def _organ_pole(name: str, sign: float, what: str):
    def compute(m: LabelMap) -> np.ndarray:
        points = m.points(name, whole=True)
        return extreme(m, points, sign * long_axis(points, SUPERIOR), what)
    return compute


def _lung(side: str) -> tuple[str, ...]:
    return (f"lung_upper_lobe_{SIDE_NAME[side]}", f"lung_lower_lobe_{SIDE_NAME[side]}",
            *(("lung_middle_lobe_right",) if side == "R" else ()))


def _present(m: LabelMap, names: tuple[str, ...]) -> tuple[str, ...]:
    """The structures of ``names`` this map has (at least the first one, else NotDerivable)."""
    found = []
    for name in names:
        try:
            m.label_of(name)
            found.append(name)
        except NotDerivable:
            if not found and name == names[0]:
                raise
    return tuple(found)


def _lung_extreme(side: str, direction: np.ndarray, what: str):
    return lambda m: extreme(m, m.points(*_present(m, _lung(side))), direction, what)


def _femoral_head(side: str):
    def compute(m: LabelMap) -> np.ndarray:
        name = f"femur_{SIDE_NAME[side]}"
        top = extreme(m, m.points(name), SUPERIOR, f"top of {name}")
        rim = surface(m, name)
        centre, radius = fit_sphere(rim[np.linalg.norm(rim - top, axis=1) <= 40.0])
        if not 12.0 <= radius <= 35.0:
            raise NotDerivable(f"{name}: the sphere fitted to its head has radius {radius:.0f} mm, not a femoral head")
        return centre
    return compute


def _asis(side: str):
    def compute(m: LabelMap) -> np.ndarray:
        points = m.points(f"hip_{SIDE_NAME[side]}", whole=True)
        z = points[:, 2]
        return extreme(m, points[z >= (z.min() + z.max()) / 2], ANTERIOR, "front of the ilium")
    return compute


def _pubic_symphysis(m: LabelMap) -> np.ndarray:
    left, right = surface(m, "hip_left"), surface(m, "hip_right")
    both = np.r_[left, right]
    front, midline = both[:, 1].mean(), both[:, 0].mean()
    near = [side[(side[:, 1] < front) & (np.abs(side[:, 0] - midline) < 40.0)] for side in (left, right)]
    if not all(len(side) for side in near):
        raise NotDerivable("the hip bones do not come within 40 mm of their midline in front")
    return meeting_point(m, *near, "the pubic bones")


def _sacral_promontory(m: LabelMap) -> np.ndarray:
    points = m.points(*_present(m, ("sacrum", "vertebrae_S1")))
    midline = np.abs(points[:, 0] - points[:, 0].mean()) <= 15.0    # the alae reach as high, off the midline
    top = points[midline & (points[:, 2] >= points[midline, 2].max() - 15.0)]
    return extreme(m, top, ANTERIOR + SUPERIOR, "front edge of the sacrum's top")


def _rib12_tip(side: str):
    def compute(m: LabelMap) -> np.ndarray:
        rib = m.points(f"rib_{SIDE_NAME[side]}_12")
        spine = m.points("vertebrae_T12").mean(axis=0)
        head = rib[np.argmin(np.linalg.norm(rib - spine, axis=1))]
        away = np.linalg.norm(rib - head, axis=1)
        cap = rib[away >= away.max() - m.cap_mm]
        if m.on_edge(cap):
            raise NotDerivable(f"rib 12 ({SIDE_NAME[side]}) is cut by the edge of the scan")
        return cap.mean(axis=0)
    return compute


def _origin_from_aorta(branch: str):
    def compute(m: LabelMap) -> np.ndarray:
        return meeting_point(m, surface(m, "aorta"), surface(m, branch), f"the aorta and {branch}")
    return compute


def _sternoclavicular(side: str):
    def compute(m: LabelMap) -> np.ndarray:
        return meeting_point(m, surface(m, "sternum"), surface(m, f"clavicula_{SIDE_NAME[side]}"), "the clavicle and sternum")
    return compute


def _heart_apex(m: LabelMap) -> np.ndarray:
    names = tuple(n for n in m.table.names.values() if n == "heart" or n.startswith("heart_"))
    points = m.points(*_present(m, names), whole=True)
    return extreme(m, points, long_axis(points, np.array([1.0, -1, -1])), "heart's apex")


def definitions() -> dict[str, Definition]:
    """Every landmark kind of the phantom, with how (or why not) it is derived from TotalSegmentator-style labels."""
    d: list[Definition] = []
    for level in VERTEBRAE:
        d.append(Definition(f"{level}_body_centre", (f"vertebrae_{level}",),
                            f"centroid of the vertebra after a {BODY_OPENING_MM:g} mm morphological opening, which removes "
                            "the posterior elements (pedicles, laminae, processes) and keeps the body", _body_centre(level)))
    cap = f"centroid of the voxels within {CAP_MM:g} mm of"
    for s, side in SIDE_NAME.items():
        d += [
            Definition(f"kidney_upper_pole_{s}", (f"kidney_{side}",), f"{cap} the kidney's upper end along its long axis",
                       _organ_pole(f"kidney_{side}", 1.0, "kidney's upper pole")),
            Definition(f"kidney_lower_pole_{s}", (f"kidney_{side}",), f"{cap} the kidney's lower end along its long axis",
                       _organ_pole(f"kidney_{side}", -1.0, "kidney's lower pole")),
            Definition(f"kidney_hilum_{s}", (f"kidney_{side}",), "not derived: the hilum is an indentation of the medial "
                       "border, which a centroid or extreme point does not find"),
            Definition(f"lung_apex_{s}", _lung(s), f"{cap} the lung's highest point", _lung_extreme(s, SUPERIOR, "lung apex")),
            Definition(f"costophrenic_angle_{s}", _lung(s), f"{cap} the lung's lateral extreme, tilted 14 degrees towards "
                       "the feet (along lateral + 0.25 x inferior): where the lateral chest wall meets the diaphragm",
                       _lung_extreme(s, LATERAL[s] + 0.25 * INFERIOR, "lung's lateral-inferior extreme")),
            Definition(f"femoral_head_centre_{s}", (f"femur_{side}",), "centre of a sphere fitted to the femur's surface "
                       "within 40 mm of its highest point (outliers such as the neck dropped over 3 rounds)", _femoral_head(s)),
            Definition(f"iliac_crest_top_{s}", (f"hip_{side}",), f"{cap} the hip bone's highest point",
                       _extreme_of((f"hip_{side}",), SUPERIOR, "top of the iliac crest")),
            Definition(f"asis_{s}", (f"hip_{side}",), f"{cap} the most anterior point of the hip bone's upper half", _asis(s)),
            Definition(f"rib12_tip_{s}", (f"rib_{side}_12", "vertebrae_T12"), f"{cap} the point of rib 12 farthest from "
                       "its end nearest the T12 vertebra", _rib12_tip(s)),
            Definition(f"sternoclavicular_joint_{s}", ("sternum", f"clavicula_{side}"),
                       f"where the clavicle and the sternum meet {MEET}", _sternoclavicular(s)),
            Definition(f"common_iliac_bifurcation_{s}", (f"iliac_artery_{side}",), "not derived: TotalSegmentator's iliac "
                       "artery label runs on into the external iliac, so the split needs a centreline"),
            Definition(f"renal_artery_origin_{s}", (), "not derived: the renal arteries are not labelled"),
            Definition(f"bronchus_main_{s}_end", (), "not derived: the main bronchi are not labelled"),
        ]
    d += [
        Definition("liver_dome", ("liver",), f"{cap} the liver's highest point", _extreme_of(("liver",), SUPERIOR, "liver dome")),
        Definition("liver_tip", ("liver",), f"{cap} the liver's lowest point", _extreme_of(("liver",), INFERIOR, "liver tip")),
        Definition("spleen_upper_pole", ("spleen",), f"{cap} the spleen's upper end along its long axis",
                   _organ_pole("spleen", 1.0, "spleen's upper pole")),
        Definition("spleen_lower_pole", ("spleen",), f"{cap} the spleen's lower end along its long axis",
                   _organ_pole("spleen", -1.0, "spleen's lower pole")),
        Definition("aortic_bifurcation", ("aorta",), f"{cap} the aorta's lowest point (the label ends where the iliac "
                   "arteries begin)", _extreme_of(("aorta",), INFERIOR, "aorta's lower end")),
        Definition("aortic_arch_top", ("aorta",), f"{cap} the aorta's highest point",
                   _extreme_of(("aorta",), SUPERIOR, "top of the aortic arch")),
        Definition("aortic_root", ("aorta",), "not derived: where the aorta leaves the heart is not marked in the labels"),
        Definition("brachiocephalic_trunk_origin", ("aorta", "brachiocephalic_trunk"), f"where the aorta and the "
                   f"brachiocephalic trunk meet {MEET}", _origin_from_aorta("brachiocephalic_trunk")),
        Definition("left_common_carotid_origin", ("aorta", "common_carotid_artery_left"), f"where the aorta and the "
                   f"left common carotid meet {MEET}", _origin_from_aorta("common_carotid_artery_left")),
        Definition("left_subclavian_origin", ("aorta", "subclavian_artery_left"), f"where the aorta and the "
                   f"left subclavian meet {MEET}", _origin_from_aorta("subclavian_artery_left")),
        Definition("celiac_trunk_origin", (), "not derived: the celiac trunk is not labelled"),
        Definition("sma_origin", (), "not derived: the superior mesenteric artery is not labelled"),
        Definition("ima_origin", (), "not derived: the inferior mesenteric artery is not labelled"),
        Definition("carina", ("trachea",), f"{cap} the trachea's lowest point (the label ends at the split)",
                   _extreme_of(("trachea",), INFERIOR, "lower end of the trachea")),
        Definition("heart_apex", ("heart",), f"{cap} the heart's end along its long axis towards left, front and feet",
                   _heart_apex),
        Definition("jugular_notch", ("sternum",), f"{cap} the sternum's highest point",
                   _extreme_of(("sternum",), SUPERIOR, "top of the sternum")),
        Definition("sternal_angle", ("sternum",), "not derived: manubrium and body are one label"),
        Definition("xiphoid_tip", ("sternum",), f"{cap} the sternum's lowest point",
                   _extreme_of(("sternum",), INFERIOR, "lower end of the sternum")),
        Definition("pubic_symphysis", ("hip_left", "hip_right"), "where the two hip bones meet in front of their mean AP "
                   f"position and within 40 mm of their midline {MEET}", _pubic_symphysis),
        Definition("sacral_promontory", ("sacrum",), f"{cap} the front-top edge of the sacrum (along anterior + superior, "
                   "within its top 15 mm and 15 mm of its midline)", _sacral_promontory),
    ]
    found = {x.landmark: x for x in d}
    missing = set(LANDMARKS) - set(found)
    assert not missing, f"no definition for {sorted(missing)}"
    return {name: found[name] for name in LANDMARKS}


def derive_landmarks(image: sitk.Image, table: LabelTable) -> tuple[pd.DataFrame, dict]:
    """Every landmark kind derivable from ``image`` (a label map) and its ``table``.

    Returns one row per kind (``landmark``, ``x``, ``y``, ``z`` in LPS mm or NaN, ``derived``,
    ``structures``, ``definition``, ``reason`` when not derived) and a summary dict (counts,
    label ids without a name, voxels whose value was not a whole number).
    """
    m = LabelMap(image, table)
    rows = []
    for name, definition in definitions().items():
        point, reason = np.full(3, np.nan), ""
        if definition.compute is None:
            reason = definition.text.removeprefix("not derived: ")
        else:
            try:
                point = np.asarray(definition.compute(m), float)
            except NotDerivable as why:
                reason = str(why)
        rows.append({"landmark": name, "x": point[0], "y": point[1], "z": point[2], "derived": bool(np.isfinite(point).all()),
                     "structures": " + ".join(definition.structures), "definition": definition.text, "reason": reason})
    table_out = pd.DataFrame(rows)
    summary = {"derived": int(table_out["derived"].sum()), "kinds": len(table_out), "label_table": table.source,
               "unknown_label_ids": m.unknown_ids, "non_integer_voxels": m.non_integer_voxels,
               "inconsistencies": inconsistencies(table_out)}
    return table_out, summary


# (higher, lower): pairs of kinds whose head-to-feet order holds in every body
ABOVE = (("lung_apex_L", "costophrenic_angle_L"), ("lung_apex_R", "costophrenic_angle_R"), ("aortic_arch_top", "heart_apex"),
         ("carina", "heart_apex"), ("heart_apex", "aortic_bifurcation"), ("heart_apex", "liver_tip"), ("liver_dome", "liver_tip"),
         ("spleen_upper_pole", "spleen_lower_pole"), ("kidney_upper_pole_L", "kidney_lower_pole_L"),
         ("kidney_upper_pole_R", "kidney_lower_pole_R"), ("costophrenic_angle_L", "aortic_bifurcation"),
         ("costophrenic_angle_R", "aortic_bifurcation"), ("aortic_bifurcation", "pubic_symphysis"),
         ("iliac_crest_top_L", "femoral_head_centre_L"), ("iliac_crest_top_R", "femoral_head_centre_R"),
         ("sacral_promontory", "pubic_symphysis"), ("jugular_notch", "xiphoid_tip"))


def inconsistencies(derived: pd.DataFrame) -> list[str]:
    """Anatomy the derived points contradict: the vertebrae out of head-to-feet order, a pair of
    :data:`ABOVE` upside down, or a left structure to the right of its partner. Any of them means
    the label table does not fit the map (TotalSegmentator v1 ids read as v2, say) or the image's
    orientation is wrong."""
    points = derived.set_index("landmark")[["x", "y", "z"]].dropna()
    problems = [f"{high} (z={points.loc[high, 'z']:.0f} mm) is not above {low} (z={points.loc[low, 'z']:.0f} mm)"
                for high, low in ABOVE if high in points.index and low in points.index and points.loc[high, "z"] <= points.loc[low, "z"]]
    spine = [f"{v}_body_centre" for v in VERTEBRAE if f"{v}_body_centre" in points.index]
    heights = points.loc[spine, "z"].to_numpy()
    if len(heights) > 1 and np.any(np.diff(heights) >= 0):
        problems.append("vertebral bodies are not in head-to-feet order: " + ", ".join(
            f"{n.split('_')[0]} z={z:.0f}" for n, z in zip(spine, heights)))
    for left in (n for n in points.index if n.endswith("_L")):
        right = left[:-1] + "R"
        if right in points.index and points.loc[left, "x"] <= points.loc[right, "x"]:
            problems.append(f"{left} (x={points.loc[left, 'x']:.0f} mm) is not left of {right} (x={points.loc[right, 'x']:.0f} mm)")
    return problems


def derivation_warnings(summary: dict) -> list[str]:
    """What a derivation summary (:func:`derive_landmarks`) warns about; contradictions with anatomy
    (``summary["inconsistencies"]``) are not among them: callers refuse those, or keep them on request."""
    warnings = []
    if not summary["derived"] and not summary["inconsistencies"]:
        warnings.append("no landmark kind could be derived from this label map")
    if summary["unknown_label_ids"]:
        warnings.append(f"label ids {summary['unknown_label_ids']} are not in the table {summary['label_table']}")
    if summary["non_integer_voxels"]:
        warnings.append(f"{summary['non_integer_voxels']} voxels held non-integer labels (rounded); was the map interpolated?")
    return warnings
