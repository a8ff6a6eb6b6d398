"""Per-case torso anatomy in a canonical body frame: paint operations plus landmark positions.

The canonical frame is LPS mm with z = 0 at the top of the C7 vertebral body. Every structure
is placed relative to the spine, so body size, spine length and curvature carry all organs
with them; each landmark is a point of the structure that defines it (a vertebral-body centre,
the lowest point of the liver, the origin of a branch on the aortic wall, ...).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from lmtransfer.phantoms.shapes import (
    Capsule,
    Ellipsoid,
    Region,
    RoundedBox,
    Shape,
    frame_from_axis,
    intersect,
    rotation,
    smooth_curve,
    to_local,
    tube,
)
from lmtransfer.phantoms.tissues import PHASES, Tissue

# where the aortic arch passes the trachea (mm): its top anterior-left of the trachea's axis, then
# down its left side (the trachea's radius 10 mm plus the arch's 12-16 mm keep them apart)
ARCH_TOP_LEFT_MM = 16.0
ARCH_TOP_ANTERIOR_MM = 20.0
ARCH_DESCENT_LEFT_MM = 26.0
ROOT_ANTERIOR_MM = 16.0
VERTEBRAE: tuple[str, ...] = ("C7", *(f"T{i}" for i in range(1, 13)), *(f"L{i}" for i in range(1, 6)))

LANDMARKS: tuple[str, ...] = (
    *(f"{v}_body_centre" for v in VERTEBRAE),
    "jugular_notch", "sternal_angle", "xiphoid_tip",
    "sternoclavicular_joint_L", "sternoclavicular_joint_R",
    "carina", "bronchus_main_L_end", "bronchus_main_R_end",
    "lung_apex_L", "lung_apex_R", "costophrenic_angle_L", "costophrenic_angle_R",
    "heart_apex",
    "aortic_root", "aortic_arch_top", "brachiocephalic_trunk_origin", "left_common_carotid_origin",
    "left_subclavian_origin", "celiac_trunk_origin", "sma_origin", "renal_artery_origin_L",
    "renal_artery_origin_R", "ima_origin", "aortic_bifurcation",
    "common_iliac_bifurcation_L", "common_iliac_bifurcation_R",
    "kidney_upper_pole_L", "kidney_upper_pole_R", "kidney_lower_pole_L", "kidney_lower_pole_R",
    "kidney_hilum_L", "kidney_hilum_R",
    "liver_dome", "liver_tip", "spleen_upper_pole", "spleen_lower_pole",
    "iliac_crest_top_L", "iliac_crest_top_R", "asis_L", "asis_R", "pubic_symphysis", "sacral_promontory",
    "femoral_head_centre_L", "femoral_head_centre_R", "rib12_tip_L", "rib12_tip_R",
)

SIDES = {"L": 1.0, "R": -1.0}  # patient's left is +x in LPS
SIDE_NAMES = {"L": "left", "R": "right"}


@dataclass
class PaintOp:
    """Set voxels inside ``shape`` to ``tissue`` (only where they currently hold ``only_on``, if given).

    ``within``: the builder's promise that the shape lies inside the voxels holding these tissues
    when it is painted, so the renderer tests only those (the same labels, far fewer points).
    ``structure``: the anatomical structure it paints, by its TotalSegmentator name (``vertebrae_L1``,
    ``rib_left_12``, ``aorta``), or "" (tissue only); the renderer's tissue labels do not use it.
    """

    shape: Shape
    tissue: Tissue
    only_on: tuple[Tissue, ...] | None = None
    within: tuple[Tissue, ...] | None = None
    structure: str = ""

    def tested_on(self) -> tuple[Tissue, ...] | None:
        """The tissues whose voxels need the inside test (None: every voxel of the box)."""
        if self.only_on is None or self.within is None:
            return self.only_on if self.within is None else self.within
        return tuple(t for t in self.only_on if t in self.within)


@dataclass
class TorsoAnatomy:
    """Everything the renderer needs for one case, in canonical mm."""

    ops: list[PaintOp]
    landmarks: dict[str, np.ndarray]
    extent_low: np.ndarray
    extent_high: np.ndarray
    scan_z_range: tuple[float, float]
    phase: str
    factors: dict[str, float] = field(default_factory=dict)

    def tissue_at(self, points_mm: np.ndarray) -> np.ndarray:
        """The tissue the paint operations leave at each canonical point ``(n, 3)`` (before the
        renderer's bowel and noise): what the label map holds there, without rendering a volume."""
        points = np.asarray(points_mm, float).reshape(-1, 3)
        labels = np.zeros(len(points), np.uint8)
        for op in self.ops:
            mask = op.shape.contains(points[:, 0], points[:, 1], points[:, 2])
            if op.only_on is not None:
                mask &= np.isin(labels, np.array(op.only_on, dtype=np.uint8))
            labels[mask] = op.tissue
        return labels


class TorsoBuilder:
    """Samples one case's anatomy from a random generator; :meth:`build` returns a :class:`TorsoAnatomy`."""

    def __init__(self, rng: np.random.Generator, fov_cut_probability: float = 0.3):
        self.rng = rng
        self.fov_cut_probability = fov_cut_probability
        self.ops: list[PaintOp] = []
        self.lm: dict[str, np.ndarray] = {}
        self.structure = ""  # what :meth:`paint` paints (see :meth:`named`)
        r = rng
        self.s_len = float(np.clip(r.normal(1.0, 0.05), 0.88, 1.12))
        self.s_wid = float(np.clip(r.normal(1.0, 0.07), 0.85, 1.18))
        self.s_dep = float(np.clip(r.normal(1.0, 0.08), 0.82, 1.2))
        self.fat = float(np.clip(r.lognormal(0.0, 0.45), 0.3, 2.6))
        self.kyphosis = float(r.uniform(0.6, 1.4))
        self.lordosis = float(r.uniform(0.6, 1.4))
        self.phase = str(r.choice(PHASES, p=[0.2, 0.3, 0.5]))
        self._spine_geometry()
        self._profiles()

    # ---- helpers -------------------------------------------------------------------------
    def jitter(self, sd: float, n: int = 3) -> np.ndarray:
        return self.rng.normal(0.0, sd, n)

    def paint(self, shape: Shape | list[Shape], tissue: Tissue, only_on: tuple[Tissue, ...] | None = None,
              within: tuple[Tissue, ...] | None = None) -> None:
        for s in shape if isinstance(shape, list) else [shape]:
            self.ops.append(PaintOp(s, tissue, only_on, within, self.structure))

    @contextmanager
    def named(self, structure: str):
        """Paint operations inside the ``with`` block paint ``structure`` (a TotalSegmentator name)."""
        outer, self.structure = self.structure, structure
        try:
            yield
        finally:
            self.structure = outer

    def bone_tube(self, points: np.ndarray, radius: float, inner: Tissue = Tissue.MARROW, cortex_mm: float = 1.3) -> None:
        self.paint(tube(points, radius), Tissue.CORTICAL_BONE)
        self.paint(tube(points, max(radius - cortex_mm, 0.8)), inner)

    def bone_box(self, box: RoundedBox, inner: Tissue = Tissue.CANCELLOUS_BONE, cortex_mm: float = 1.5) -> None:
        self.paint(box, Tissue.CORTICAL_BONE)
        self.paint(RoundedBox(box.center, np.maximum(box.half - cortex_mm, 0.6), box.rot, max(box.rounding - cortex_mm, 0.5)), inner)

    def z_of(self, level: str) -> float:
        return float(self.z_c[VERTEBRAE.index(level)])

    def y_spine(self, z) -> np.ndarray:
        """AP position of the vertebral-body centres at height z (mm, canonical)."""
        return self.f_yspine(z)

    def b_spine(self, z) -> np.ndarray:
        return self.f_bspine(z)

    def y_trachea(self, z) -> float:
        """AP position of the trachea's axis at height z: 24 mm in front of the vertebral bodies."""
        return float(self.y_spine(z) - self.b_spine(z) - 24)

    # ---- spine and body profiles ---------------------------------------------------------
    def _spine_geometry(self) -> None:
        n = len(VERTEBRAE)
        t = np.linspace(0, 1, 13)
        heights = np.concatenate([[13.0], 15 + 7 * t[:12] / t[11], np.linspace(24, 27, 5)])
        discs = np.concatenate([[5.0], np.linspace(4, 6, 11), [7.0], np.linspace(9, 11, 5)])
        a = np.concatenate([[15.0], np.linspace(15, 21, 12), np.linspace(22, 26, 5)])
        b = np.concatenate([[10.0], np.linspace(11, 15.5, 12), np.linspace(16, 18, 5)])
        # adjacent vertebrae look alike: jitter is smooth along the spine, not per level
        smooth = np.convolve(self.rng.normal(0, 0.03, n + 4), np.ones(5) / 5, mode="valid")
        self.h = heights * self.s_len * (1 + smooth)
        self.disc = discs * self.s_len
        self.a = a * self.s_wid * (1 + smooth)
        self.b = b * self.s_dep ** 0.5 * (1 + smooth)
        tops = -np.concatenate([[0.0], np.cumsum(self.h + self.disc)[:-1]])
        self.z_top = tops
        self.z_c = tops - self.h / 2
        self.z_bottom = tops - self.h
        thor = (self.z_c - self.z_c[1]) / (self.z_c[12] - self.z_c[1])
        lum = (self.z_c - self.z_c[13]) / (self.z_c[17] - self.z_c[13])
        y = 14.0 + 18.0 * self.kyphosis * np.sin(np.pi * np.clip(thor, 0, 1))
        y = y - 16.0 * self.lordosis * np.sin(np.pi * np.clip(lum, 0, 1)) * (lum > 0)
        y[0] = y[1] - 4.0
        self.y_c = y + self.rng.normal(0, 0.6, n)
        self.x_c = self.rng.normal(0, 0.6, n)
        self.canal_r = np.interp(np.arange(n), [0, 12, 17], [8.0, 7.5, 10.0])
        self.z_s1 = self.z_bottom[-1] - 11.0 * self.s_len
        self.z_fh = self.z_s1 - 95.0 * self.s_len + self.rng.normal(0, 4)
        self.z_sym = self.z_fh - 14.0 * self.s_len + self.rng.normal(0, 3)

    def _lut(self, z_points, values):
        return _Profile(np.asarray(z_points, float), np.asarray(values, float))

    def _profiles(self) -> None:
        """Body, fat and cavity outlines as functions of z (superellipse cross-sections)."""
        zc = self.z_c
        self.prof_z = np.array([60.0, zc[3], zc[8], zc[13], zc[16], self.z_s1 - 30, self.z_fh - 60, self.z_fh - 200])
        lean_a = np.array([135, 150, 148, 138, 140, 155, 155, 150]) * self.s_wid
        ant = np.array([70, 100, 108, 102, 100, 92, 85, 80]) * self.s_dep
        post = np.array([60, 62, 64, 70, 72, 80, 80, 78]) * self.s_dep
        fat = np.array([8, 10, 12, 18, 22, 24, 22, 18]) * self.fat
        self.prof_lean_a, self.prof_ant, self.prof_post, self.prof_fat = lean_a, ant, post, fat
        self.prof_wall = np.array([14, 16, 16, 12, 12, 16, 22, 22]) * self.s_wid
        self.f_fat = self._lut(self.prof_z, fat)
        self.f_wall = self._lut(self.prof_z, self.prof_wall)
        self.f_a = self._lut(self.prof_z, lean_a + fat)
        self.f_ant = self._lut(self.prof_z, -ant - 1.3 * fat)
        self.f_post = self._lut(self.prof_z, post + fat)
        self.f_yspine = self._lut(self.z_c, self.y_c)
        self.f_bspine = self._lut(self.z_c, self.b)

    def outline(self, z, inset_mm=0.0):
        """(half-width A, anterior y, posterior y) of the body contour at z, moved inwards by ``inset_mm``."""
        index = self.f_a.index(z)
        a = self.f_a.table[index] - inset_mm
        y_ant = self.f_ant.table[index] + inset_mm
        y_post = self.f_yspine.table[index] + self.f_post.table[index] - inset_mm
        return a, y_ant, y_post

    def fat_mm(self, z):
        return self.f_fat(z)

    def wall_mm(self, z):
        return self.f_wall(z)

    def inside_outline(self, x, y, z, inset=0.0, extra_inset=None):
        a, y_ant, y_post = self.outline(z, inset if extra_inset is None else inset + extra_inset)
        y0 = 0.5 * (y_ant + y_post)
        half = 0.5 * (y_post - y_ant)
        nx2 = (x / np.maximum(a, 1.0)) ** 2
        ny2 = ((y - y0) / np.maximum(half, 1.0)) ** 2
        # round front (power 2), flatter back (power 4)
        return np.where(y > y0, nx2 * nx2 + ny2 * ny2, nx2 + ny2) <= 1.0

    def inside_cavity(self, x, y, z):
        inset = self.fat_mm(z) * 1.0 + self.wall_mm(z)
        return self.inside_outline(x, y, z, extra_inset=inset)

    def cavity_point(self, z, side: float, inset=0.0):
        """Lateral-most point of the cavity at z (x, y0)."""
        a, y_ant, y_post = self.outline(z, self.fat_mm(z) + self.wall_mm(z) + inset)
        return side * a, 0.5 * (y_ant + y_post)

    def sternum_y(self, z):
        """Mid-thickness AP position of the sternum at height z."""
        return self.outline(z, self.fat_mm(z) + 14.0)[1]

    def in_kidney_fat(self, x, y, z):
        return np.logical_or.reduce([k.contains(x, y, z) for k in self.kidney_fat])

    def diaphragm_z(self, x, y):
        dr, dl = self.dome_r, self.dome_l
        zr = dr[2] - ((x - dr[0]) ** 2 + (y - dr[1]) ** 2) / self.dome_k
        zl = dl[2] - ((x - dl[0]) ** 2 + (y - dl[1]) ** 2) / self.dome_k
        return np.maximum(zr, zl) - 0.25 * np.maximum(y - 25.0, 0.0)

    # ---- build ---------------------------------------------------------------------------
    def build(self) -> TorsoAnatomy:
        self._body()
        self._thorax()
        self._muscles()
        self._abdominal_organs()
        self._heart_and_vessels()
        self._airways()
        self._spine()
        self._ribs_and_sternum()
        self._pelvis()
        self._table()
        missing = set(LANDMARKS) - set(self.lm)
        if missing:
            raise RuntimeError(f"anatomy model did not place landmarks: {sorted(missing)}")
        scan_top = self.z_top[0] + 35.0
        scan_bottom = self.z_fh - 55.0
        if self.rng.random() < self.fov_cut_probability:
            scan_top = float(self.rng.uniform(self.z_c[2], self.z_c[0] - 6))  # cuts C7 and the apices off
        if self.rng.random() < self.fov_cut_probability:
            scan_bottom = float(self.rng.uniform(self.z_sym + 10, self.z_fh + 40))  # cuts the hips off
        a_max = float(np.max(self.prof_lean_a + self.prof_fat)) + 6
        low = np.array([-a_max - 8, float(np.min(-self.prof_ant - 1.3 * self.prof_fat)) - 8, scan_bottom])
        high = np.array([a_max + 8, self.y_table + 14, scan_top])
        return TorsoAnatomy(
            ops=self.ops, landmarks={k: np.asarray(self.lm[k], float) for k in LANDMARKS},
            extent_low=low, extent_high=high, scan_z_range=(scan_bottom, scan_top), phase=self.phase,
            factors={"length": self.s_len, "width": self.s_wid, "depth": self.s_dep, "fat": self.fat,
                     "kyphosis": self.kyphosis, "lordosis": self.lordosis},
        )

    def _body(self) -> None:
        lo, hi = np.array([-260.0, -260.0, -900.0]), np.array([260.0, 260.0, 900.0])
        # diaphragm domes: the right one over the liver, the left lower
        z_r = self.z_of("T9") - 5 + self.rng.normal(0, 8)
        self.dome_r = np.array([-55 * self.s_wid, 8.0, z_r])
        self.dome_l = np.array([58 * self.s_wid, 12.0, z_r - self.rng.uniform(6, 22)])
        self.dome_k = 130.0 * self.s_wid
        self.z_diaphragm_low = self.dome_l[2] - 140.0
        self.paint(Region(lo, hi, lambda x, y, z: self.inside_outline(x, y, z)), Tissue.FAT)
        # each outline moved inwards lies inside the one before (insets >= 0), so each is tested only there
        self.paint(Region(lo, hi, lambda x, y, z: self.inside_outline(x, y, z, self.fat_mm(z))), Tissue.MUSCLE, within=(Tissue.FAT,))
        thorax_lo = np.array([lo[0], lo[1], self.z_diaphragm_low])
        abdomen_hi = np.array([hi[0], hi[1], z_r + 2])
        below = lambda x, y, z: self.inside_cavity(x, y, z) & (z <= self.diaphragm_z(x, y))
        self.paint(Region(lo, abdomen_hi, below), Tissue.ABDOMEN, within=(Tissue.MUSCLE,))
        above = lambda x, y, z: self.inside_cavity(x, y, z) & (z > self.diaphragm_z(x, y))
        self.paint(Region(thorax_lo, hi, above), Tissue.SOFT, within=(Tissue.MUSCLE,))   # disjoint from the abdomen
        shell = lambda x, y, z: self.inside_cavity(x, y, z) & (np.abs(z - self.diaphragm_z(x, y) + 2.5) <= 2.5)
        self.paint(Region(thorax_lo, abdomen_hi, shell), Tissue.MUSCLE, within=(Tissue.MUSCLE, Tissue.ABDOMEN, Tissue.SOFT))

    def _thorax(self) -> None:
        lo, hi = np.array([-260.0, -260.0, -600.0]), np.array([260.0, 260.0, 200.0])
        for name, side in SIDES.items():
            apex = np.array([side * 36 * self.s_wid, self.y_spine(self.z_of("T1")) - 12, self.z_of("T1") + 14 + self.rng.normal(0, 3)])
            radius = 34.0 * self.s_wid

            def lung(x, y, z, apex=apex, side=side, radius=radius):
                cap = z < apex[2] - ((x - apex[0]) ** 2 + (y - apex[1]) ** 2) / (2 * radius)
                return self.inside_cavity(x, y, z) & (z > self.diaphragm_z(x, y)) & cap & (x * side > 2)

            lung_lo = np.array([0.0 if side > 0 else -260.0, -260.0, self.z_diaphragm_low])
            lung_hi = np.array([260.0 if side > 0 else 0.0, 260.0, apex[2] + 1.0])
            self.paint(Region(lung_lo, lung_hi, lung), Tissue.LUNG, only_on=(Tissue.SOFT,))
            self.lm[f"lung_apex_{name}"] = apex - [0, 0, 3.0]
            z = self.dome_r[2] - 40
            for _ in range(8):  # lateral cavity wall meets the diaphragm
                x, y0 = self.cavity_point(z, side, inset=3.0)
                z = float(self.diaphragm_z(x, y0)) + 3.0
            self.lm[f"costophrenic_angle_{name}"] = np.array([x, y0, z])
        # mediastinum between the lungs, from sternum to spine
        top = self.z_top[0] + 80

        def mediastinum(x, y, z):
            front, back = self.sternum_y(z) - 4, self.y_spine(z) - self.b_spine(z) + 6
            width = 18 + 10 * np.clip((top - z) / 120.0, 0, 1)
            return ((x - 4) / width) ** 2 + ((y - 0.5 * (front + back)) / (0.5 * (back - front))) ** 2 <= 1.0

        self.paint(Region([-40, -260, self.z_diaphragm_low], [40, 260, top], mediastinum), Tissue.MEDIASTINUM, only_on=(Tissue.LUNG, Tissue.SOFT))

    def _muscles(self) -> None:
        lo, hi = np.array([-120.0, -100.0, -900.0]), np.array([120.0, 260.0, 200.0])

        def paraspinal(x, y, z):
            # erector spinae: behind the laminae, an ellipse each side of the spinous processes
            y_lamina = self.y_spine(z) + self.b_spine(z) + 14.0
            depth = self.f_yspine(z) + self.f_post(z) - y_lamina
            return (((np.abs(x) - 28.0) / 36.0) ** 2 + ((y - y_lamina - depth) / np.maximum(depth + 6.0, 1.0)) ** 2 <= 1.0) & (
                self.inside_outline(x, y, z, self.fat_mm(z))
            )

        # inside the muscle outline, which so far holds only these tissues
        self.paint(Region(lo, hi, paraspinal), Tissue.MUSCLE,
                   within=(Tissue.MUSCLE, Tissue.ABDOMEN, Tissue.SOFT, Tissue.LUNG, Tissue.MEDIASTINUM))
        for side in SIDES.values():
            pts = np.array([
                [side * (self.a[13] + 4), self.y_c[13] + 2, self.z_c[13]],
                [side * (self.a[17] + 14), self.y_c[17] - 6, self.z_c[17]],
                [side * 55 * self.s_wid, self.y_c[17] - 40, self.z_fh + 25],
                [side * 70 * self.s_wid, self.y_c[17] - 48, self.z_fh - 45],
            ])
            curve = smooth_curve(pts, 6.0)
            self.paint(tube(curve, np.linspace(7, 20, len(curve))), Tissue.MUSCLE)

    def _abdominal_organs(self) -> None:
        r = self.rng
        below = lambda x, y, z: (z < self.diaphragm_z(x, y) - 5.0) & self.inside_cavity(x, y, z)
        abdomen = (Tissue.ABDOMEN, Tissue.MUSCLE)
        self.kidney_fat: list[Ellipsoid] = []
        # kidneys in perirenal fat (retroperitoneal, painted first: the liver and spleen abut them);
        # the right one lower (the liver)
        for name, side in SIDES.items():
            z = self.z_c[13] - 12 - (14 if side < 0 else 0) + r.normal(0, 6)
            centre = np.array([side * (self.a[13] + 44) * self.s_wid, self.y_spine(z) + 8, z])
            rot = frame_from_axis([-side * 0.28, 0.22, 1.0], hint=[side, 0, 0])
            kidney = Ellipsoid(centre, np.array([27, 22, 54]) * r.uniform(0.88, 1.12, 3), rot)
            fat_mm = r.uniform(2.0, 14.0)   # perirenal fat: a thick dark rim in some patients, hardly any in others
            self.kidney_fat.append(Ellipsoid(centre, kidney.semi_axes + fat_mm, rot))
            self.paint(self.kidney_fat[-1], Tissue.FAT, only_on=(Tissue.ABDOMEN,))
            self.paint(kidney, Tissue.KIDNEY_CORTEX, only_on=abdomen + (Tissue.FAT,))
            self.paint(kidney.shrunk(7.0), Tissue.KIDNEY_MEDULLA, only_on=(Tissue.KIDNEY_CORTEX,))
            hilum_dir = np.array([-side * 0.8, -0.6, 0.0])  # medial and anterior in the kidney's own axes
            local = rot.T @ hilum_dir
            self.paint(Ellipsoid(kidney.point(local, 0.75), [9, 9, 20], rot), Tissue.FAT, only_on=(Tissue.KIDNEY_MEDULLA, Tissue.KIDNEY_CORTEX))
            self.lm[f"kidney_upper_pole_{name}"] = kidney.point([0, 0, 1], 0.92)
            self.lm[f"kidney_lower_pole_{name}"] = kidney.point([0, 0, -1], 0.92)
            self.lm[f"kidney_hilum_{name}"] = kidney.point(local, 0.95)
            setattr(self, f"kidney_{name}", kidney)
        # liver: right lobe + left lobe, cut by the diaphragm
        zr = self.dome_r[2]
        right = Ellipsoid([-66 * self.s_wid, -10 + r.normal(0, 5), zr - 62], np.array([82, 92, 88]) * [self.s_wid, self.s_dep, self.s_len] * r.uniform(0.9, 1.1), rotation(yaw_deg=r.normal(0, 6), roll_deg=r.normal(-6, 4)))
        left = Ellipsoid([0 + r.normal(0, 6), -42 * self.s_dep, zr - 40], np.array([72, 38, 36]) * r.uniform(0.8, 1.15), rotation(yaw_deg=r.normal(10, 5)))
        self.paint(intersect(right, below), Tissue.LIVER, only_on=abdomen)
        self.paint(intersect(left, below), Tissue.LIVER, only_on=abdomen)
        self.lm["liver_dome"] = np.array([self.dome_r[0], self.dome_r[1], zr - 9.0])
        free = lambda x, y, z: below(x, y, z) & ~self.in_kidney_fat(x, y, z)
        self.lm["liver_tip"] = _visible_extreme(right, [0, 0, -1], lambda x, y, z: free(x, y, z) & ~left.contains(x, y, z))
        hilum = np.array([-30 * self.s_wid, -6.0, zr - 85])
        for _ in range(6):  # portal / hepatic veins inside the liver
            end = right.point(r.normal(0, 1, 3) * [1, 1, 0.6], scale=0.75)
            self.paint(intersect(Capsule(hilum, end, 4.5, 1.5), right.contains), Tissue.VEIN, only_on=(Tissue.LIVER,))
        gb = Ellipsoid(right.extreme_point([0.3, -1, -0.6]) + [14, 18, 18], np.array([14, 16, 32]) * r.uniform(0.7, 1.2), frame_from_axis([0.2, -0.5, 1]))
        self.paint(gb, Tissue.FLUID, only_on=(Tissue.LIVER, Tissue.ABDOMEN))
        # stomach with an air cap (supine: air anterior)
        zl = self.dome_l[2]
        stomach = Ellipsoid([48 * self.s_wid, -28, zl - 38], np.array([42, 34, 52]) * r.uniform(0.8, 1.2), rotation(yaw_deg=-25, roll_deg=15))
        self.paint(intersect(stomach, below), Tissue.SOFT, only_on=abdomen)
        inner = stomach.shrunk(4.0)
        level = stomach.center[1] - r.uniform(5, 28)
        self.paint(intersect(inner, below), Tissue.STOMACH, only_on=(Tissue.SOFT,))
        self.paint(intersect(inner, lambda x, y, z: (y < level) & below(x, y, z)), Tissue.AIRWAY, only_on=(Tissue.STOMACH,))
        # spleen: long axis along the 10th rib; pushed down until it clears the diaphragm
        axis = frame_from_axis([-0.35, 0.55, 1.0], hint=[1, 0, 0])
        spleen = Ellipsoid([82 * self.s_wid, self.y_spine(zl) + 14, zl - 50], np.array([24, 36, 52]) * r.uniform(0.85, 1.2), axis)
        while True:
            top = spleen.extreme_point(axis[:, 2])
            if top[2] < self.diaphragm_z(top[0], top[1]) - 12:
                break
            spleen.center = spleen.center - [0, 0, 3.0]
        self.paint(intersect(spleen, self.inside_cavity), Tissue.SPLEEN, only_on=(Tissue.ABDOMEN, Tissue.SOFT))
        inside_spleen = lambda x, y, z: self.inside_cavity(x, y, z) & ~self.in_kidney_fat(x, y, z) & ~stomach.contains(x, y, z)
        self.lm["spleen_upper_pole"] = _visible_extreme(spleen, axis[:, 2], inside_spleen)
        self.lm["spleen_lower_pole"] = _visible_extreme(spleen, -axis[:, 2], inside_spleen)
        self.spleen = spleen
        # bladder behind the symphysis
        y_sym = self.outline(self.z_sym, self.fat_mm(self.z_sym) + 22)[1]
        self.y_sym = float(y_sym)
        bladder = Ellipsoid([0, y_sym + 38, self.z_sym + 32], np.array([40, 30, 30]) * r.uniform(0.6, 1.3), np.eye(3))
        self.paint(bladder, Tissue.SOFT, only_on=abdomen)
        self.paint(bladder.shrunk(3), Tissue.FLUID, only_on=(Tissue.SOFT,))

    def _heart_and_vessels(self) -> None:
        r = self.rng
        zr = self.dome_r[2]
        z_heart = zr + 42 + r.normal(0, 5)
        y_st = float(self.sternum_y(z_heart))
        centre = np.array([14 + r.normal(0, 4), y_st + 62, z_heart])
        axis = np.array([0.62, -0.55, -0.5]) + r.normal(0, 0.06, 3)
        rot = frame_from_axis(axis, hint=[0, 0, 1])
        heart = Ellipsoid(centre, np.array([40, 44, 60]) * r.uniform(0.9, 1.1), rot)
        soft_chest = (Tissue.LUNG, Tissue.MEDIASTINUM, Tissue.SOFT, Tissue.MUSCLE, Tissue.ABDOMEN)
        self.paint(Ellipsoid(centre, heart.semi_axes + 4, rot), Tissue.FAT, only_on=soft_chest)
        self.paint(heart, Tissue.MYOCARDIUM)
        self.paint(heart.shrunk(9.0), Tissue.HEART_BLOOD)
        septum = RoundedBox(centre, [4.5, heart.semi_axes[1] - 6, heart.semi_axes[2] - 8], rot, 2.0)
        self.paint(septum, Tissue.MYOCARDIUM, only_on=(Tissue.HEART_BLOOD,))
        self.lm["heart_apex"] = heart.point([0, 0, 1], 0.93)

        # aorta: root at the heart base, arch, descending along the spine to the bifurcation at L4
        z_jn = float(self.z_bottom[2] - self.disc[2] / 2)
        self.z_jn = z_jn
        root = heart.point([0, 0, -1], 0.45) + [-16, 6, 24]
        # the ascending aorta lies in front of the airways: the root at least ROOT_ANTERIOR_MM ahead of the trachea's axis
        root[1] = min(root[1], self.y_trachea(root[2]) - ROOT_ANTERIOR_MM)
        z_arch = z_jn - 24 + r.normal(0, 4)
        ys_arch = float(self.y_spine(z_arch) - self.b_spine(z_arch))
        ctrl = [
            root,
            root + [-6, -8, 0.45 * (z_arch - root[2])],
            [root[0] - 2, 0.5 * (root[1] + ys_arch) - 14, z_arch - 10],
            # over the top the arch runs anterior and then left of the trachea, not through it
            [ARCH_TOP_LEFT_MM, min(0.5 * (root[1] + ys_arch) - 2, self.y_trachea(z_arch) - ARCH_TOP_ANTERIOR_MM), z_arch],
            [ARCH_DESCENT_LEFT_MM, ys_arch - 14, z_arch - 12],
        ]
        levels = range(VERTEBRAE.index("T5"), VERTEBRAE.index("L4"))
        for v in levels:
            x = np.interp(v, [5, 12, 16], [20, 9, 3])
            ctrl.append([x, self.y_c[v] - self.b[v] - 13, self.z_c[v]])
        bif = np.array([2 + r.normal(0, 2), self.y_c[16] - self.b[16] - 11, self.z_c[16] + r.normal(0, 5)])
        ctrl.append(bif)
        path = smooth_curve(np.array(ctrl), 3.0)
        s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
        radius = np.interp(s / s[-1], [0, 0.15, 0.35, 0.6, 1.0], [14, 14.5, 12, 10.5, 8.5]) * r.uniform(0.9, 1.1)
        with self.named("aorta"):
            self.paint(tube(path, radius), Tissue.ARTERY)
        self.lm["aortic_root"] = root
        top = int(np.argmax(path[:, 2]))
        self.lm["aortic_arch_top"] = path[top]
        self.lm["aortic_bifurcation"] = bif
        zs_desc = path[top:, 2]

        def aorta_at(z):
            i = top + int(np.argmin(np.abs(zs_desc - z)))
            return path[i], radius[i]

        def branch(name, z_or_index, wall_dir, pts, r0, r1, by_index=False, structure=""):
            p, rad = (path[z_or_index], radius[z_or_index]) if by_index else aorta_at(z_or_index)
            d = np.asarray(wall_dir, float)
            origin = p + rad * d / np.linalg.norm(d)
            curve = smooth_curve(np.vstack([p, origin, *pts]), 3.0)
            with self.named(structure):
                self.paint(tube(curve, np.linspace(r0, r1, len(curve))), Tissue.ARTERY)
            if name:
                self.lm[name] = origin
            return origin

        # arch branches from the top of the arch, right to left
        i_bct, i_lcca, i_lsa = (top + int(k * 6 / 3.0) for k in (-2.2, 0.2, 2.6))
        up = z_jn + 40
        branch("brachiocephalic_trunk_origin", i_bct, [-0.3, 0, 1], [[-18, path[i_bct][1] - 4, z_jn + 8], [-26, path[i_bct][1], up]], 6.5, 5.0, by_index=True,
               structure="brachiocephalic_trunk")
        branch(None, i_bct, [-0.3, 0, 1], [[-18, path[i_bct][1] - 4, z_jn + 8], [-60, path[i_bct][1] + 8, z_jn + 20], [-110, path[i_bct][1] + 20, z_jn + 25]], 5.5, 4.0, by_index=True,
               structure="subclavian_artery_right")
        branch("left_common_carotid_origin", i_lcca, [0.1, 0, 1], [[16, path[i_lcca][1] - 2, z_jn + 5], [22, path[i_lcca][1], up]], 4.5, 4.0, by_index=True,
               structure="common_carotid_artery_left")
        branch("left_subclavian_origin", i_lsa, [0.3, 0.2, 1], [[30, path[i_lsa][1] + 6, z_jn + 12], [70, path[i_lsa][1] + 14, z_jn + 22], [115, path[i_lsa][1] + 22, z_jn + 26]], 5.0, 4.0, by_index=True,
               structure="subclavian_artery_left")
        # visceral branches on the abdominal aorta
        z_celiac = self.z_c[12] + r.normal(0, 4)
        c0 = branch("celiac_trunk_origin", z_celiac, [0, -1, 0.15], [aorta_at(z_celiac)[0] + [0, -30, 0]], 3.8, 3.2)
        hub = aorta_at(z_celiac)[0] + [0, -30, 0]
        self.paint(tube(smooth_curve(np.array([hub, hub + [-30, -5, 8], [-55, hub[1] + 10, hub[2] + 5]]), 3.0), 2.8), Tissue.ARTERY)
        self.paint(tube(smooth_curve(np.array([hub, hub + [30, 10, 4], self.spleen.center + [-15, 0, 0]]), 3.0), 3.0), Tissue.ARTERY)
        z_sma = z_celiac - 14 + r.normal(0, 3)
        p_sma = aorta_at(z_sma)[0]
        branch("sma_origin", z_sma, [0, -1, -0.2], [p_sma + [0, -22, -10], p_sma + [-4, -30, -60], p_sma + [-10, -34, -130]], 4.2, 2.5)
        for name, side in SIDES.items():
            z_ren = self.z_bottom[13] - 2 + r.normal(0, 4) - (0 if side > 0 else 3)
            kidney: Ellipsoid = getattr(self, f"kidney_{name}")
            target = kidney.point(kidney.rot.T @ np.array([-side * 0.8, -0.6, 0.0]), 0.55)
            p = aorta_at(z_ren)[0]
            branch(f"renal_artery_origin_{name}", z_ren, [side, -0.25, 0], [p + [side * 25, -6, -2], target], 3.6, 2.8)
        z_ima = self.z_c[15] + r.normal(0, 4)
        p_ima = aorta_at(z_ima)[0]
        branch("ima_origin", z_ima, [0.5, -1, 0], [p_ima + [10, -14, -10], p_ima + [30, -10, -70]], 2.4, 1.8)
        # iliac arteries
        z_cib = self.z_c[17] - 18 + r.normal(0, 5)
        for name, side in SIDES.items():
            cib = np.array([side * 40 * self.s_wid, self.y_c[17] - self.b[17] + 4 + r.normal(0, 3), z_cib + r.normal(0, 3)])
            common = smooth_curve(np.array([bif, bif + [side * 12, 1, -15], cib]), 3.0)
            with self.named(f"iliac_artery_{SIDE_NAMES[name]}"):   # TotalSegmentator's label: common and external
                self.paint(tube(common, np.linspace(6.5, 5.5, len(common))), Tissue.ARTERY)
            self.lm[f"common_iliac_bifurcation_{name}"] = cib
            fh = np.array([side * 88 * self.s_wid, self.y_c[17] - 40, self.z_fh])
            external = smooth_curve(np.array([cib, cib + [side * 15, -14, -35], fh + [-side * 8, -32, 30], fh + [-side * 2, -36, -60]]), 3.0)
            with self.named(f"iliac_artery_{SIDE_NAMES[name]}"):
                self.paint(tube(external, 4.6), Tissue.ARTERY)
            internal = smooth_curve(np.array([cib, cib + [side * 10, 18, -25], cib + [side * 22, 30, -55]]), 3.0)
            self.paint(tube(internal, 3.6), Tissue.ARTERY)
            vein = smooth_curve(np.array([[side * 4 - 12, self.y_c[17] - self.b[17] + 2, self.z_c[16] - 20], cib + [-side * 6, 10, 0], fh + [-side * 18, -24, 30], fh + [-side * 12, -28, -60]]), 3.0)
            self.paint(tube(vein, 7.5), Tissue.VEIN, only_on=(Tissue.ABDOMEN, Tissue.MUSCLE, Tissue.FAT, Tissue.SOFT))
        # inferior vena cava, right of the aorta, into the right atrium through the liver
        ivc_ctrl = [[-16, self.y_c[16] - self.b[16] - 6, self.z_c[16] - 20]]
        for v in range(15, 10, -1):
            ivc_ctrl.append([-24, self.y_c[v] - self.b[v] - 9, self.z_c[v]])
        ivc_ctrl += [[-22, self.y_spine(zr) - 40, zr - 5], [-12, centre[1] - 5, centre[2] - 20]]
        self.paint(tube(smooth_curve(np.array(ivc_ctrl), 3.0), 11.0), Tissue.VEIN, only_on=(Tissue.ABDOMEN, Tissue.LIVER, Tissue.FAT, Tissue.MUSCLE, Tissue.SOFT, Tissue.MEDIASTINUM, Tissue.LUNG, Tissue.MYOCARDIUM))

    def _airways(self) -> None:
        r = self.rng
        z_car = float(self.z_top[5] - 2 + r.normal(0, 4))
        y_tr = self.y_trachea
        carina = np.array([2.0, y_tr(z_car), z_car])
        trachea = smooth_curve(np.array([[0, y_tr(self.z_top[0] + 90), self.z_top[0] + 90], [0, y_tr(self.z_top[0]), self.z_top[0]], [1, y_tr(0.5 * (z_car + self.z_top[0])), 0.5 * (z_car + self.z_top[0])], carina]), 4.0)
        end_r = carina + [-22, 8, -18] + r.normal(0, 2, 3)
        end_l = carina + [38, 12, -34] + r.normal(0, 2, 3)
        tree = [
            (trachea, 10.0, 8.0),
            (np.array([carina, end_r]), 7.0, 5.2),
            (np.array([carina, end_l]), 6.5, 4.8),
            (np.array([end_r, end_r + [-22, 2, 8]]), 4.5, 3.2),
            (smooth_curve(np.array([end_r, end_r + [-8, 8, -24], end_r + [-26, 24, -70]]), 4.0), 5.0, 3.6),
            (np.array([end_l, end_l + [18, -4, 12]]), 4.5, 3.2),
            (smooth_curve(np.array([end_l, end_l + [12, 10, -20], end_l + [22, 28, -60]]), 4.0), 4.6, 3.4),
        ]
        # the airways give way to the heart and great vessels where a case packs them close (the
        # main bronchi behind a high heart): a landmark on the aorta stays on the aorta
        yielding = tuple(t for t in Tissue if t not in (Tissue.ARTERY, Tissue.HEART_BLOOD, Tissue.MYOCARDIUM))
        for k, (points, outer, _) in enumerate(tree):
            with self.named("trachea" if k == 0 else ""):
                self.paint(tube(points, outer), Tissue.SOFT, only_on=yielding if k > 2 else None)
        for k, (points, _, lumen) in enumerate(tree):
            with self.named("trachea" if k == 0 else ""):
                self.paint(tube(points, lumen), Tissue.AIRWAY, only_on=yielding if k > 2 else None)
        self.lm["carina"] = carina
        self.lm["bronchus_main_R_end"] = end_r
        self.lm["bronchus_main_L_end"] = end_l
        eso = smooth_curve(np.array([[2, y_tr(self.z_top[0] + 90) + 17, self.z_top[0] + 90], [4, y_tr(z_car) + 18, z_car], [10, self.y_spine(self.dome_l[2]) - self.b_spine(self.dome_l[2]) - 10, self.dome_l[2] + 5], [36, -10, self.dome_l[2] - 22]]), 4.0)
        self.paint(tube(eso, 7.5), Tissue.SOFT, only_on=(Tissue.MEDIASTINUM, Tissue.LUNG, Tissue.SOFT, Tissue.ABDOMEN, Tissue.MUSCLE, Tissue.FAT))

    def _spine(self) -> None:
        n = len(VERTEBRAE)
        canal = np.column_stack([self.x_c, self.y_c + self.b + self.canal_r + 2, self.z_c])
        canal = np.vstack([canal[0] + [0, 0, 60], canal, canal[-1] + [0, 6, -40]])
        self.paint(tube(canal, np.concatenate([[8], self.canal_r, [9]])), Tissue.CSF)
        for v, name in enumerate(VERTEBRAE):
            x, y, z, a, b, h = self.x_c[v], self.y_c[v], self.z_c[v], self.a[v], self.b[v], self.h[v]
            if v + 1 < n:
                zd = self.z_bottom[v] - self.disc[v] / 2
                disc_half = [0.5 * (a + self.a[v + 1]), 0.5 * (b + self.b[v + 1]), self.disc[v] / 2 + 0.6]
                self.paint(_elliptic_slab([x, 0.5 * (y + self.y_c[v + 1]), zd], disc_half), Tissue.DISC)
            with self.named(f"vertebrae_{name}"):
                self._vertebra(v, name)

    def _vertebra(self, v: int, name: str) -> None:
        """Body and posterior elements (pedicles, laminae, transverse and spinous processes) of vertebra ``v``."""
        x, y, z, a, b, h = self.x_c[v], self.y_c[v], self.z_c[v], self.a[v], self.b[v], self.h[v]
        body = _elliptic_slab([x, y, z], [a, b, h / 2])
        self.paint(body, Tissue.CORTICAL_BONE)
        self.paint(_elliptic_slab([x, y, z], [a - 1.4, b - 1.4, h / 2 - 1.2]), Tissue.CANCELLOUS_BONE)
        self.lm[f"{name}_body_centre"] = np.array([x, y, z])
        cr = self.canal_r[v]
        yc = y + b + cr + 2
        lumbar = name.startswith("L")
        for side in (-1.0, 1.0):
            ped0 = np.array([x + side * (cr + 2), y + b - 3, z + h * 0.15])
            ped1 = np.array([x + side * (cr + 3), yc + 1, z + h * 0.1])
            lam = np.array([x, yc + cr + 3.5, z])
            self.bone_tube(np.array([ped0, ped1, lam]), 4.0 if not lumbar else 5.0, Tissue.CANCELLOUS_BONE)
            tp_len = 24.0 if not lumbar else 30.0
            tp = ped1 + [side * tp_len, 10 if not lumbar else 2, 0]
            self.bone_tube(np.array([ped1, tp]), 4.2 if not lumbar else 3.6, Tissue.CANCELLOUS_BONE)
        spin_dir = np.array([0, 0.55, -0.83]) if not lumbar else np.array([0, 0.95, -0.3])
        if name == "C7":
            spin_dir = np.array([0, 0.95, -0.3])
        length = 34.0 if not lumbar else 30.0
        tip = np.array([x, yc + cr + 3, z]) + spin_dir * length
        self.bone_tube(np.array([[x, yc + cr + 3, z], tip]), 4.0 if not lumbar else 5.5, Tissue.CANCELLOUS_BONE)

    def _ribs_and_sternum(self) -> None:
        r = self.rng
        # sternum: manubrium, body, xiphoid along the anterior chest wall
        z_jn = self.z_jn
        z_sa = float(self.z_bottom[4] - self.disc[4] / 2) + r.normal(0, 4)
        z_xs = float(self.z_c[9]) + r.normal(0, 6)
        z_xt = z_xs - 32 * self.s_len + r.normal(0, 4)
        ys = lambda z: float(self.sternum_y(z))
        jn, sa, xs, xt = (np.array([0, ys(z), z]) for z in (z_jn, z_sa, z_xs, z_xt))
        for p0, p1, w0, t0 in ((jn, sa, 22, 6.5), (sa, xs, 15, 5.5), (xs, xt, 8, 3.5)):
            mid = 0.5 * (p0 + p1)
            half_len = 0.5 * np.linalg.norm(p1 - p0) + (2 if w0 > 8 else 0)
            with self.named("sternum"):
                self.bone_box(RoundedBox(mid, [w0, t0, half_len], frame_from_axis(p1 - p0, hint=[1, 0, 0]), 3.0))
        self.paint(RoundedBox([0, jn[1] - 4, z_jn + 2], [7, 10, 5], None, 3.0), Tissue.SOFT, only_on=(Tissue.CORTICAL_BONE, Tissue.CANCELLOUS_BONE))
        self.lm["jugular_notch"] = jn + [0, 0, -4]
        self.lm["sternal_angle"] = sa + [0, -2.0, 0]
        self.lm["xiphoid_tip"] = xt + [0, 0, 3]
        for name, side in SIDES.items():
            scj = np.array([side * 24, jn[1] + 4, z_jn - 8])
            self.lm[f"sternoclavicular_joint_{name}"] = scj
            clav = smooth_curve(np.array([scj + [side * 4, 0, 0], scj + [side * 50, 4, 12], scj + [side * 100, 26, 22], scj + [side * 130, 48, 24]]), 4.0)
            self.paint(Capsule(scj - [side * 1, 0, 0], scj + [side * 4, 0, 0], 6.5), Tissue.CARTILAGE)
            with self.named(f"clavicula_{SIDE_NAMES[name]}"):
                self.bone_tube(clav, 7.0)
            scap = RoundedBox([side * 92 * self.s_wid, self.y_spine(self.z_c[4]) + 26, self.z_c[5]], [36, 4.0, 58], rotation(yaw_deg=-side * 28), 3.0)
            with self.named(f"scapula_{SIDE_NAMES[name]}"):
                self.bone_box(scap, Tissue.MARROW, 1.2)
        # ribs: head at the vertebral body, tubercle at the transverse process, arc around the wall
        sternal_z = np.concatenate([[z_jn - 14, z_sa], np.linspace(z_sa - 22, z_xs, 5)])
        for n in range(1, 13):
            v = n  # T_n is index n
            drop = np.interp(n, [1, 4, 8, 12], [18, 55, 80, 65]) * self.s_len
            theta_end = np.interp(n, [1, 7, 8, 10, 11, 12], [0.80, 0.84, 0.78, 0.70, 0.56, 0.44]) * np.pi
            for name, side in SIDES.items():
                head = np.array([self.x_c[v] + side * (self.a[v] + 2), self.y_c[v] + 0.4 * self.b[v], self.z_c[v] + 0.35 * self.h[v]])
                tub = np.array([self.x_c[v] + side * (self.canal_r[v] + 26), self.y_c[v] + self.b[v] + 12, self.z_c[v] + 2])
                thetas = np.linspace(0.42, theta_end, 14)
                pts = [head, tub]
                for k, th in enumerate(thetas):
                    z = tub[2] - drop * ((th - thetas[0]) / (np.pi - thetas[0])) ** 1.1
                    a, y_ant, y_post = self.outline(z, self.fat_mm(z) + self.wall_mm(z) - 5)
                    if n == 1:
                        a = a * 0.72
                    y0 = 0.5 * (y_ant + y_post)
                    half = np.where(np.cos(th) > 0, y_post - y0, y0 - y_ant)
                    pts.append([side * a * np.sin(th), y0 + half * np.cos(th), z])
                path = smooth_curve(np.array(pts), 4.0)
                rad = 5.0 if n == 1 else (3.6 if n >= 11 else 4.3)
                with self.named(f"rib_{SIDE_NAMES[name]}_{n}"):
                    self.bone_tube(path, rad)
                if n <= 10:
                    zt = sternal_z[n - 1] if n <= 7 else z_xs - 12 - 14 * (n - 8)
                    xt_ = side * (16 if n <= 7 else 30 + 12 * (n - 8))
                    cart = smooth_curve(np.array([path[-1], 0.5 * (path[-1] + [xt_, ys(zt) + 8, zt]) + [0, -4, 0], [xt_, ys(zt), zt]]), 3.0)
                    self.paint(tube(cart, 4.2), Tissue.CARTILAGE, only_on=(Tissue.MUSCLE, Tissue.FAT, Tissue.SOFT, Tissue.LUNG, Tissue.ABDOMEN, Tissue.MEDIASTINUM, Tissue.LIVER))
                if n == 12:
                    self.lm[f"rib12_tip_{name}"] = path[-2]

    def _pelvis(self) -> None:
        r = self.rng
        # sacrum: five shrinking segments curving backwards, alae to the sacroiliac joints
        y5, b5 = self.y_c[-1], self.b[-1]
        z1 = self.z_s1
        offs = np.array([[0, 4, -13], [0, 16, -37], [0, 30, -58], [0, 44, -75], [0, 55, -89], [0, 62, -102]]) * [1, 1, self.s_len]
        sizes = np.array([[25, 17, 13], [20, 14, 11], [15, 11, 9], [11, 8, 8], [8, 6, 7], [5, 4, 6]])
        centres = np.array([0, y5, z1]) + offs
        with self.named("sacrum"):
            for c, s in zip(centres, sizes):
                self.paint(_elliptic_slab(c, s), Tissue.CORTICAL_BONE)
                self.paint(_elliptic_slab(c, s - [1.6, 1.6, 1.4]), Tissue.CANCELLOUS_BONE)
            for side in SIDES.values():
                self.bone_box(RoundedBox(centres[0] + [side * 34, 12, -8], [20, 15, 21], rotation(yaw_deg=side * 10), 6.0))
        self.lm["sacral_promontory"] = np.array([0, centres[0][1] - sizes[0][1] + 2.5, centres[0][2] + sizes[0][2] - 2.5])
        # ilium wings (the lateral walls of a bowl under an arched crest), pubis, ischium, femur
        z_crest = self.z_c[16] + r.normal(0, 6)
        y_fh = self.y_c[-1] - 40
        for name, side in SIDES.items():
            semi = np.array([50, 80, 110]) * [self.s_wid, self.s_dep, self.s_len]
            rot = rotation(yaw_deg=side * 28)   # the wing faces forwards and inwards: its front end is lateral
            thick, arc, below_equator = 8.0, 45.0, 40.0   # the crest below the bowl's equator: the wing flares
            crest_top = np.array([side * 86 * self.s_wid, y5 + 14, z_crest])
            reach = np.sqrt(1 - (below_equator / semi[2]) ** 2)
            centre = crest_top - rot @ [side * (semi[0] - thick / 2) * reach, 0, -below_equator]
            hip, femur = f"hip_{SIDE_NAMES[name]}", f"femur_{SIDE_NAMES[name]}"
            bottom = -below_equator - 0.5 * semi[2]
            wing = _Wing(centre, semi, rot, thick, side, arc, bottom_mm=bottom, top_mm=below_equator)
            with self.named(hip):
                self.paint(wing, Tissue.CORTICAL_BONE)
                self.paint(_Wing(centre, semi - 1.5, rot, thick - 3.0, side, arc, bottom + 1.5, top_mm=below_equator + 1.5),
                           Tissue.CANCELLOUS_BONE)
            self.lm[f"iliac_crest_top_{name}"] = wing.crest_point(0.0, depth_mm=1.0)
            self.lm[f"asis_{name}"] = wing.crest_point(-0.72, depth_mm=2.0)
            fh = np.array([side * 88 * self.s_wid, y_fh, self.z_fh])
            radius = 23.0 * self.s_wid * r.uniform(0.93, 1.07)
            cup = Region(fh - radius - 11, fh + radius + 11, lambda x, y, z, c=fh, rr=radius, s=side: _cup(x, y, z, c, rr, s))
            with self.named(hip):
                self.bone_tube(np.array([wing.crest_point(0.1, depth_mm=0.5 * semi[2] - 8), fh + [-side * 8, 6, 20]]), 17.0, Tissue.CANCELLOUS_BONE)
                self.paint(cup, Tissue.CORTICAL_BONE)
            self.paint(Ellipsoid(fh, [radius + 2.2] * 3), Tissue.CARTILAGE)
            with self.named(femur):
                self.paint(Ellipsoid(fh, [radius] * 3), Tissue.CORTICAL_BONE)
                self.paint(Ellipsoid(fh, [radius - 2.0] * 3), Tissue.CANCELLOUS_BONE)
            self.lm[f"femoral_head_centre_{name}"] = fh
            neck_end = fh + [side * 48, 6, -32]
            with self.named(femur):
                self.bone_tube(np.array([fh, neck_end]), 14.0, Tissue.CANCELLOUS_BONE)
                self.bone_tube(np.array([neck_end + [side * 6, 4, 18], neck_end + [side * 8, 2, -260]]), 15.0)
            sym = np.array([side * 12, self.y_sym, self.z_sym])
            tuberosity = fh + [-side * 30, 40, -48]
            with self.named(hip):   # pubis, its ramus to the acetabulum, the ischium
                self.bone_box(RoundedBox(sym, [8.5, 8, 17], rotation(yaw_deg=side * 20), 4.0))
                self.bone_tube(np.array([fh + [-side * 14, -16, -2], sym + [0, 0, 10]]), 8.5, Tissue.CANCELLOUS_BONE)
                self.bone_tube(np.array([fh + [-side * 6, 18, -14], tuberosity]), 12.0, Tissue.CANCELLOUS_BONE)
                self.bone_tube(np.array([sym + [0, 4, -14], tuberosity]), 7.5, Tissue.CANCELLOUS_BONE)
        self.paint(RoundedBox([0, self.y_sym, self.z_sym], [3.2, 7.5, 15], None, 1.5), Tissue.CARTILAGE)
        self.lm["pubic_symphysis"] = np.array([0, self.y_sym, self.z_sym])

    def _table(self) -> None:
        posterior = [self.outline(z)[2] for z in np.linspace(self.z_fh - 200, 60, 60)]
        self.y_table = float(np.max(posterior)) + 3.0
        y0 = self.y_table
        self.paint(Region([-230, y0, -1200], [230, y0 + 10, 400], lambda x, y, z: (y >= y0) & (y <= y0 + 10) & (np.abs(x) < 220)), Tissue.TABLE)


def _visible_extreme(shape: Ellipsoid, direction, keep, depth: float = 0.85) -> np.ndarray:
    """Furthest point along ``direction`` of the part of an organ that is really painted.

    Organs are cut by the diaphragm or displaced by neighbours; the pole of the ideal ellipsoid can
    then lie in another organ. Points are sampled on a shell at ``depth`` of the surface (so the
    landmark sits inside the organ) and the furthest one for which ``keep`` holds wins.
    """
    n = 6000
    k = np.arange(n) + 0.5
    polar, azimuth = np.arccos(1 - 2 * k / n), np.pi * (1 + 5**0.5) * k
    unit = np.column_stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)])
    points = shape.center + (unit * shape.semi_axes * depth) @ shape.rot.T
    ok = keep(points[:, 0], points[:, 1], points[:, 2])
    if not ok.any():
        raise RuntimeError("organ has no visible part for its landmark")
    candidates = points[ok]
    return candidates[int(np.argmax(candidates @ np.asarray(direction, float)))]


class _Profile:
    """Piecewise-linear function of z, tabulated every 0.25 mm (fast on whole volumes)."""

    step = 0.25

    z0 = -1400.0
    size = 8000  # covers z in [-1400, 600) mm; all profiles share the grid, so one index serves all

    def __init__(self, z_points: np.ndarray, values: np.ndarray):
        order = np.argsort(z_points)
        grid = self.z0 + self.step * np.arange(self.size)
        self.table = np.interp(grid, z_points[order], values[order]).astype(np.float32)

    @classmethod
    def index(cls, z):
        if np.ndim(z) == 0:
            return int(np.clip((float(z) - cls.z0) / cls.step, 0, cls.size - 1))
        index = ((np.asarray(z, dtype=np.float32) - cls.z0) * (1.0 / cls.step)).astype(np.int32)
        np.clip(index, 0, cls.size - 1, out=index)
        return index

    def __call__(self, z):
        value = self.table[self.index(z)]
        return float(value) if np.ndim(z) == 0 else value


def _elliptic_slab(center, half) -> Region:
    """Elliptic cylinder along z (vertebral body, disc): semi-axes half[0], half[1], half-height half[2]."""
    c = np.asarray(center, float)
    h = np.asarray(half, float)
    return Region(c - h, c + h, lambda x, y, z: (((x - c[0]) / h[0]) ** 2 + ((y - c[1]) / h[1]) ** 2 <= 1.0) & (np.abs(z - c[2]) <= h[2]))


class _Wing(Shape):
    """An iliac wing: the lateral wall (``thickness`` mm) of an ellipsoidal bowl, ``semi`` (lateral, AP,
    vertical; local axes the columns of ``rot``) round ``center``. Its upper edge, the crest, is an arch:
    highest at the middle (``top_mm`` below ``center``), ``arc_mm`` lower at the bowl's front and back ends;
    the wall ends ``bottom_mm`` (negative) below ``center``, where the ilium's body takes over."""

    def __init__(self, center, semi, rot, thickness, side, arc_mm, bottom_mm, top_mm=0.0):
        self.center, self.semi, self.rot = np.asarray(center, float), np.asarray(semi, float), rot
        self.thickness, self.side, self.arc_mm, self.bottom_mm, self.top_mm = thickness, side, arc_mm, bottom_mm, top_mm

    def bounds(self):
        a, b, _ = self.semi
        u = (0.0, self.side * a)
        corners = np.array([[cu, cv, cw] for cu in u for cv in (-b, b) for cw in (self.bottom_mm, -self.top_mm)])
        world = self.center + corners @ self.rot.T
        return world.min(axis=0), world.max(axis=0)

    def contains(self, x, y, z):
        u, v, w = to_local(self.rot, self.center, x, y, z)
        a, b, c = self.semi
        t = self.thickness
        outer = (u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2 <= 1.0
        inner = (u / (a - t)) ** 2 + (v / (b - t)) ** 2 + (w / (c - t)) ** 2 >= 1.0
        crest = w <= -self.top_mm - self.arc_mm * (v / b) ** 2
        return outer & inner & crest & (w >= self.bottom_mm) & (u * self.side >= 0.0)

    def crest_point(self, v_fraction: float, depth_mm: float) -> np.ndarray:
        """The middle of the wall ``depth_mm`` below the crest at ``v_fraction`` of the AP semi-axis (-1: front)."""
        a, b, c = self.semi - self.thickness / 2
        v = v_fraction * self.semi[1]
        w = -self.top_mm - self.arc_mm * v_fraction ** 2 - depth_mm
        u = self.side * a * np.sqrt(max(1.0 - (v / b) ** 2 - (w / c) ** 2, 0.0))
        return self.center + self.rot @ np.array([u, v, w])


def _cup(x, y, z, centre, radius, side):
    """Acetabulum: a hemispherical bony cup over the femoral head, open laterally and downwards."""
    d2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
    opening = (-(x - centre[0]) * side * 0.6 + (z - centre[2]) * 0.8) > -0.25 * radius
    return (d2 <= (radius + 10) ** 2) & (d2 >= (radius + 2.2) ** 2) & opening
