"""Intracranial artery tree for the head MRA phantom: a circle of Willis with its main branches.

Positions are LPS mm in a head frame whose origin lies at the centre of the circle of Willis
(x towards the patient's left, y posterior, z superior). Each vessel is a smooth centreline with
a tapering radius; junctions are shared nodes, so children leave exactly from their parent.
Per case the nodes move, radii scale, vessels meander, some tight bends and loops appear and
distal branches grow at random: the normal look-alikes of an aneurysm (bifurcations, bends,
crossings) are recorded with the tree. :func:`add_mimics` adds the hard ones: infundibula
(funnel-shaped widenings at the origin of a small branch, the classic aneurysm mimic) and full
loops of a vessel, which cut across look like a blob beside its parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from lmtransfer.phantoms.shapes import rotation, smooth_curve

STEP_MM = 0.3  # centreline sampling


@dataclass
class Vessel:
    """A centreline ``points_lps_mm`` (n, 3) with a lumen radius per point, mm."""

    name: str
    points_lps_mm: np.ndarray
    radii_mm: np.ndarray
    parent: str | None = None


@dataclass
class Site:
    """A named place on the tree: a junction, a tight bend or a crossing of two vessels."""

    kind: str  # "bifurcation", "bend", "crossing", "infundibulum", "loop"
    name: str
    point_lps_mm: np.ndarray
    radius_mm: float
    direction: np.ndarray = field(default_factory=lambda: np.zeros(3))  # parent flow direction (bifurcations)


@dataclass
class Infundibulum:
    """A funnel at a small branch's origin: a truncated cone from ``base_lps_mm`` (on the parent's
    centreline, radius ``base_radius_mm``) to ``tip_lps_mm`` on the branch (its radius there)."""

    base_lps_mm: np.ndarray
    tip_lps_mm: np.ndarray
    base_radius_mm: float
    tip_radius_mm: float
    branch: str

    def signed_distance(self, points_lps_mm: np.ndarray) -> np.ndarray:
        """Negative inside the funnel, mm (the radial distance to the cone's wall at the closest axis point)."""
        axis = self.tip_lps_mm - self.base_lps_mm
        t = np.clip(((points_lps_mm - self.base_lps_mm) @ axis) / (axis @ axis), 0.0, 1.0)
        closest = self.base_lps_mm + t[..., None] * axis
        return np.linalg.norm(points_lps_mm - closest, axis=-1) - (self.base_radius_mm + (self.tip_radius_mm - self.base_radius_mm) * t)


@dataclass
class ArteryTree:
    vessels: list[Vessel]
    sites: list[Site]
    infundibula: list[Infundibulum] = field(default_factory=list)

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """All centreline points (n, 3) and their radii (n,)."""
        return (np.vstack([v.points_lps_mm for v in self.vessels]), np.concatenate([v.radii_mm for v in self.vessels]))


# Template nodes per side s (+1 left, -1 right), mm. Anterior is -y.
def _template(s: float) -> dict[str, list[float]]:
    return {
        "ica_in": [s * 18, -2, -40], "ica_c1": [s * 16, -6, -24], "ica_siphon": [s * 15, -13, -12], "ica_c2": [s * 17, -7, -4],
        "ica_top": [s * 14, -2, 0], "m1_mid": [s * 26, -4, 2], "mca_bif": [s * 40, -1, 4],
        "m2s_mid": [s * 47, -8, 14], "m2s_end": [s * 52, -14, 32], "m2i_mid": [s * 50, 8, 2], "m2i_end": [s * 56, 22, 12],
        "a1_mid": [s * 8, -10, 2], "acom_end": [s * 2.4, -16, 3], "a2_mid": [s * 2.5, -24, 16], "a2_end": [s * 3, -30, 36],
        "pcom_join": [s * 9, 12, -4], "p2_mid": [s * 20, 22, -2], "p2_c": [s * 23, 38, 3], "p2_end": [s * 18, 58, 10],
        "va_in": [s * 11, 40, -40], "va_mid": [s * 5, 27, -28], "sca_mid": [s * 11, 18, -9], "sca_end": [s * 21, 30, -6],
        "oph_end": [s * 18, -34, -7],
    }


MIDLINE = {"confluence": [0, 22, -22], "ba_mid": [0, 18, -12], "ba_tip": [0, 14, -4]}


class TreeBuilder:
    """Draws one case's artery tree from ``rng``.

    Args:
        scale: overall size factor of the head (per case).
        radius_factor: lumen radius factor (per case).
        node_jitter_mm: standard deviation of node displacement.
        meander_mm: amplitude of the random meander of each vessel between its nodes.
        loop_probability: chance per medium vessel of a tight bend (loop) along it.
        distal_branches: random cortical branches grown from the distal ends.
    """

    def __init__(self, rng: np.random.Generator, scale: float = 1.0, radius_factor: float = 1.0, node_jitter_mm: float = 2.0,
                 meander_mm: float = 1.5, loop_probability: float = 0.35, distal_branches: int = 2):
        self.rng, self.scale, self.rf = rng, scale, radius_factor
        self.jitter, self.meander, self.loop_p, self.distal = node_jitter_mm, meander_mm, loop_probability, distal_branches
        self.rot = rotation(*rng.normal(0.0, 4.0, 3))
        self.nodes: dict[str, np.ndarray] = {}
        self.vessels: list[Vessel] = []
        self.sites: list[Site] = []

    def _place(self, key: str, template: list[float]) -> None:
        self.nodes[key] = self.rot @ (np.asarray(template, float) * self.scale) + self.rng.normal(0, self.jitter, 3)

    def _vessel(self, name: str, controls: list[np.ndarray], r0: float, r1: float, parent: str | None = None,
                loop: bool = False) -> Vessel:
        controls = [np.asarray(c, float) for c in controls]
        # meander: displace inner control points and add midpoints with a sideways offset
        pts = [controls[0]]
        for a, b in zip(controls[:-1], controls[1:]):
            mid = 0.5 * (a + b) + self.rng.normal(0, self.meander, 3)
            pts += [mid, b]
        if loop and len(pts) >= 3:
            k = len(pts) // 2
            a, b = pts[k - 1], pts[k]
            axis = (b - a) / (np.linalg.norm(b - a) + 1e-9)
            side = np.cross(axis, self.rng.normal(size=3))
            side /= np.linalg.norm(side) + 1e-9
            bulge = self.rng.uniform(4.0, 7.0)
            pts[k:k] = [a + 0.35 * (b - a) + side * bulge, a + 0.65 * (b - a) + side * bulge * 0.9]
        curve = smooth_curve(np.asarray(pts), step_mm=STEP_MM)
        length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
        radii = self.rf * (r0 + (r1 - r0) * length / max(length[-1], 1e-6))
        vessel = Vessel(name, curve, radii, parent)
        self.vessels.append(vessel)
        return vessel

    def _branch_point(self, vessel: Vessel, fraction: float) -> tuple[np.ndarray, float]:
        k = int(np.clip(round(fraction * (len(vessel.points_lps_mm) - 1)), 1, len(vessel.points_lps_mm) - 2))
        return vessel.points_lps_mm[k].copy(), float(vessel.radii_mm[k])

    def _bifurcation(self, name: str, parent: Vessel, at_end: bool = True, point=None, radius=None) -> None:
        pts = parent.points_lps_mm
        if at_end:
            point, radius, direction = pts[-1], parent.radii_mm[-1], pts[-1] - pts[-6]
        else:
            k = int(np.argmin(np.linalg.norm(pts - point, axis=1)))
            direction = pts[min(k + 3, len(pts) - 1)] - pts[max(k - 3, 0)]
        self.sites.append(Site("bifurcation", name, np.asarray(point, float), float(radius), direction / (np.linalg.norm(direction) + 1e-9)))

    def build(self) -> ArteryTree:
        for s, side in ((1.0, "L"), (-1.0, "R")):
            for key, value in _template(s).items():
                self._place(f"{key}_{side}", value)
        for key, value in MIDLINE.items():
            self._place(key, value)
        n = self.nodes
        pcom_present = {side: self.rng.random() > 0.15 for side in "LR"}
        for side in "LR":
            g = lambda key: n[f"{key}_{side}"]  # noqa: E731
            ica = self._vessel(f"ICA_{side}", [g("ica_in"), g("ica_c1"), g("ica_siphon"), g("ica_c2"), g("ica_top")], 2.1, 1.8)
            m1 = self._vessel(f"M1_{side}", [g("ica_top"), g("m1_mid"), g("mca_bif")], 1.4, 1.25, ica.name)
            self._bifurcation(f"ICA terminus {side}", ica)
            m2s = self._vessel(f"M2sup_{side}", [g("mca_bif"), g("m2s_mid"), g("m2s_end")], 1.0, 0.75, m1.name, self.rng.random() < self.loop_p)
            self._vessel(f"M2inf_{side}", [g("mca_bif"), g("m2i_mid"), g("m2i_end")], 1.0, 0.75, m1.name, self.rng.random() < self.loop_p)
            self._bifurcation(f"MCA bifurcation {side}", m1)
            a1 = self._vessel(f"A1_{side}", [g("ica_top"), g("a1_mid"), g("acom_end")], 1.1, 1.0, ica.name)
            self._vessel(f"A2_{side}", [g("acom_end"), g("a2_mid"), g("a2_end")], 1.0, 0.8, a1.name, self.rng.random() < self.loop_p)
            self._bifurcation(f"A1-A2 junction {side}", a1)
            oph_from, oph_r = self._branch_point(ica, 0.55)
            self._vessel(f"ophthalmic_{side}", [oph_from, g("oph_end")], 0.55, 0.45, ica.name)
            self._bifurcation(f"ophthalmic origin {side}", ica, False, oph_from, oph_r)
            self._vessel(f"VA_{side}", [g("va_in"), g("va_mid"), n["confluence"]], 1.6, 1.5)
            distal = [m2s]
            self._grow_distal(distal, side)
        a1l_end, a1r_end = n["acom_end_L"], n["acom_end_R"]
        self._vessel("ACom", [a1l_end, a1r_end], 0.65, 0.65, "A1_L")
        basilar = self._vessel("BA", [n["confluence"], n["ba_mid"], n["ba_tip"]], 1.7, 1.5)
        self.sites.append(Site("bifurcation", "vertebral confluence", n["confluence"].copy(), 1.6,
                               (n["ba_mid"] - n["confluence"]) / np.linalg.norm(n["ba_mid"] - n["confluence"])))
        self._bifurcation("basilar tip", basilar)
        for side in "LR":
            g = lambda key: n[f"{key}_{side}"]  # noqa: E731
            self._vessel(f"P1_{side}", [n["ba_tip"], g("pcom_join")], 1.15, 1.05, basilar.name)
            p2 = self._vessel(f"P2_{side}", [g("pcom_join"), g("p2_mid"), g("p2_c"), g("p2_end")], 1.05, 0.75, f"P1_{side}",
                              self.rng.random() < self.loop_p)
            ica = next(v for v in self.vessels if v.name == f"ICA_{side}")
            if pcom_present[side]:
                pcom_from, pcom_r = self._branch_point(ica, 0.9)
                self._vessel(f"PCom_{side}", [pcom_from, 0.5 * (pcom_from + g("pcom_join")) + [0, 0, -1.5], g("pcom_join")],
                             self.rng.uniform(0.45, 0.75), 0.55, ica.name)
                self._bifurcation(f"ICA-PCom junction {side}", ica, False, pcom_from, pcom_r)
            sca_from, sca_r = self._branch_point(basilar, 0.8)
            self._vessel(f"SCA_{side}", [sca_from, g("sca_mid"), g("sca_end")], 0.7, 0.55, basilar.name)
            self._bifurcation(f"SCA origin {side}", basilar, False, sca_from, sca_r)
            aica_from, aica_r = self._branch_point(basilar, 0.3)
            self._vessel(f"AICA_{side}", [aica_from, aica_from + self.rot @ np.array([(1 if side == "L" else -1) * 12, 6, -4])],
                         0.5, 0.4, basilar.name)
            self._grow_distal([p2], side)
        self._find_bends()
        self._find_crossings()
        return ArteryTree(self.vessels, self.sites)

    def _grow_distal(self, parents: list[Vessel], side: str) -> None:
        """Random cortical branches leaving the distal part of ``parents`` (more junctions and crossings)."""
        for parent in parents:
            for b in range(self.distal):
                start, r = self._branch_point(parent, self.rng.uniform(0.45, 0.9))
                direction = self.rng.normal(size=3)
                direction /= np.linalg.norm(direction)
                length = self.rng.uniform(15.0, 30.0)
                end = start + direction * length
                mid = 0.5 * (start + end) + self.rng.normal(0, 3.0, 3)
                child = self._vessel(f"{parent.name}_branch{b}", [start, mid, end], min(0.6, 0.7 * r), 0.4, parent.name)
                self._bifurcation(f"{child.name} origin", parent, False, start, r)

    def _find_bends(self, max_radius_mm: float = 3.5) -> None:
        """Tight bends: points whose curvature radius over about 2 mm is below ``max_radius_mm``."""
        for v in self.vessels:
            p = v.points_lps_mm
            h = 7  # about 2 mm at STEP_MM
            if len(p) < 2 * h + 1:
                continue
            a, b, c = p[:-2 * h], p[h:-h], p[2 * h:]
            ab, bc, ca = (np.linalg.norm(x, axis=1) for x in (b - a, c - b, a - c))
            area2 = np.linalg.norm(np.cross(b - a, c - a), axis=1)
            radius = ab * bc * ca / np.maximum(2 * area2, 1e-9)
            tight = np.flatnonzero(radius < max_radius_mm)
            if len(tight):
                k = tight[np.argmin(radius[tight])]
                self.sites.append(Site("bend", f"tight bend on {v.name}", b[k].copy(), float(v.radii_mm[k + h])))

    def _find_crossings(self, gap_mm: float = 1.5) -> None:
        """Places where two vessels that do not join pass within ``gap_mm`` of each other's walls."""
        trees = [cKDTree(v.points_lps_mm) for v in self.vessels]
        ends = cKDTree(np.vstack([v.points_lps_mm[[0, -1]] for v in self.vessels]))
        for i, vi in enumerate(self.vessels):
            for j in range(i + 1, len(self.vessels)):
                vj = self.vessels[j]
                reach = float(vi.radii_mm.max() + vj.radii_mm.max() + gap_mm)
                pairs = trees[i].query_ball_tree(trees[j], reach)
                first = np.repeat(np.arange(len(pairs)), [len(bs) for bs in pairs])
                if not len(first):
                    continue
                second = np.concatenate(pairs).astype(int)
                # contacts near any vessel's end are junctions, not crossings
                far = ends.query(0.5 * (vi.points_lps_mm[first] + vj.points_lps_mm[second]))[0] > 4.0
                hits = list(zip(first[far].tolist(), second[far].tolist()))
                if not hits:
                    continue
                a, b = min(hits, key=lambda ab: np.linalg.norm(vi.points_lps_mm[ab[0]] - vj.points_lps_mm[ab[1]]))
                point = 0.5 * (vi.points_lps_mm[a] + vj.points_lps_mm[b])
                self.sites.append(Site("crossing", f"{vi.name} x {vj.name}", point, float(max(vi.radii_mm[a], vj.radii_mm[b]))))


SMALL_BRANCH_MM = 0.75   # branches at most this thick at their origin can carry an infundibulum
LOOP_VESSELS = ("M2sup", "M2inf", "A2", "P2")


def add_mimics(tree: ArteryTree, rng: np.random.Generator, infundibulum_probability: float, loop_probability: float,
               avoid: tuple[str, ...] = ()) -> ArteryTree:
    """Add infundibula and full vessel loops to ``tree`` (in place; returned for chaining).

    Each small branch (origin radius <= :data:`SMALL_BRANCH_MM`, not the ACom) gets an infundibulum
    with ``infundibulum_probability``: 1.5-3 mm long, at most 3 mm wide at its base (the clinical
    definition), narrowing to the branch's calibre. Branch origins named in ``avoid`` (the sites of
    aneurysms) get none. Each of the medium vessels :data:`LOOP_VESSELS` gets, with
    ``loop_probability``, a full turn of 2-3.5 mm radius that comes back past its own start, offset
    by a little more than its diameter; the place where it passes itself is a ``loop`` site.
    """
    by_name = {v.name: v for v in tree.vessels}
    for v in list(tree.vessels):
        if v.parent is None or v.name == "ACom" or v.radii_mm[0] > SMALL_BRANCH_MM * 1.0001:
            continue
        if rng.random() >= infundibulum_probability:
            continue
        origin = next((s for s in tree.sites if s.kind == "bifurcation" and s.name.endswith(" origin")
                       and np.linalg.norm(s.point_lps_mm - v.points_lps_mm[0]) < 0.5), None)
        if origin is None:
            origin = next((s for s in tree.sites if s.kind == "bifurcation" and np.linalg.norm(s.point_lps_mm - v.points_lps_mm[0]) < 0.5), None)
        if origin is not None and origin.name in avoid:
            continue
        length = rng.uniform(1.5, 3.0)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(v.points_lps_mm, axis=0), axis=1))])
        k = min(int(np.searchsorted(arc, length)), len(arc) - 1)
        parent_r = float(by_name[v.parent].radii_mm.min()) if v.parent in by_name else 1.0
        base_r = float(min(rng.uniform(1.0, 1.5), max(parent_r, v.radii_mm[0] + 0.3)))
        funnel = Infundibulum(v.points_lps_mm[0].copy(), v.points_lps_mm[k].copy(), base_r, float(v.radii_mm[k]), v.name)
        tree.infundibula.append(funnel)
        tree.sites.append(Site("infundibulum", f"infundibulum of {v.name}", 0.6 * funnel.base_lps_mm + 0.4 * funnel.tip_lps_mm, base_r))
    for v in tree.vessels:
        if not v.name.startswith(LOOP_VESSELS) or "branch" in v.name or rng.random() >= loop_probability:
            continue
        _insert_loop(v, tree, rng)
    return tree


def _insert_loop(v: Vessel, tree: ArteryTree, rng: np.random.Generator) -> None:
    """Insert into the middle of ``v`` a full turn that leaves and rejoins it at the same point,
    bulging sideways by up to a little more than its diameter so the two passes sit side by side."""
    p, r = v.points_lps_mm, v.radii_mm
    k = int(rng.integers(len(p) // 3, max(len(p) // 3 + 1, 2 * len(p) // 3)))
    if k < 3 or k > len(p) - 4:
        return
    axis = p[k + 3] - p[k - 3]
    axis /= np.linalg.norm(axis) + 1e-9
    side = np.cross(axis, rng.normal(size=3))
    side /= np.linalg.norm(side) + 1e-9
    normal = np.cross(axis, side)
    turn_r, gap = rng.uniform(2.0, 3.5), 2.0 * float(r[k]) + rng.uniform(0.4, 0.9)
    theta = np.linspace(0.0, 2 * np.pi, int(np.ceil(2 * np.pi * turn_r / STEP_MM)) + 1)[1:-1]
    turn = (p[k] + turn_r * (np.sin(theta)[:, None] * axis + (1 - np.cos(theta))[:, None] * side)
            + (gap * np.sin(theta / 2))[:, None] * normal)
    v.points_lps_mm = np.vstack([p[: k + 1], turn, p[k:]])
    v.radii_mm = np.concatenate([r[: k + 1], np.full(len(turn), r[k]), r[k:]])
    tree.sites.append(Site("loop", f"loop of {v.name}", p[k].copy(), float(r[k])))


# Where saccular aneurysms arise, with their share (after the large clinical series: ACom, MCA
# bifurcation, ICA-PCom, ICA terminus, basilar tip, others).
ANEURYSM_SITES = {"ACom": 0.3, "MCA bifurcation": 0.22, "ICA-PCom junction": 0.2, "ICA terminus": 0.1, "basilar tip": 0.1, "other": 0.08}


@dataclass
class Aneurysm:
    """A saccular aneurysm: a dome (sphere) joined to its parent vessel by a neck (cone)."""

    centre_lps_mm: np.ndarray
    radius_mm: float
    neck_lps_mm: np.ndarray
    neck_radius_mm: float
    site: str

    def signed_distance(self, points_lps_mm: np.ndarray) -> np.ndarray:
        """Negative inside the dome or neck, mm."""
        dome = np.linalg.norm(points_lps_mm - self.centre_lps_mm, axis=-1) - self.radius_mm
        axis = self.centre_lps_mm - self.neck_lps_mm
        t = np.clip(((points_lps_mm - self.neck_lps_mm) @ axis) / (axis @ axis), 0.0, 1.0)
        closest = self.neck_lps_mm + t[..., None] * axis
        neck = np.linalg.norm(points_lps_mm - closest, axis=-1) - self.neck_radius_mm
        return np.minimum(dome, neck)


def place_aneurysms(tree: ArteryTree, rng: np.random.Generator, count: int, median_diameter_mm: float = 4.0,
                    log_sd: float = 0.45) -> list[Aneurysm]:
    """``count`` aneurysms at distinct bifurcations chosen by :data:`ANEURYSM_SITES` shares.

    Diameters are log-normal (mostly a few mm, near the parent's diameter, a few large); the dome
    points along the parent's flow past the apex (bifurcations) with a random tilt.
    """
    bifurcations = [s for s in tree.sites if s.kind == "bifurcation"]
    chosen: list[Aneurysm] = []
    used: set[str] = set()
    kinds, weights = list(ANEURYSM_SITES), np.array(list(ANEURYSM_SITES.values()))
    for _ in range(count * 10):
        if len(chosen) == count:
            break
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        if kind == "ACom":
            options = [s for s in bifurcations if s.name.startswith("A1-A2 junction")]
        elif kind == "other":
            options = [s for s in bifurcations if not any(s.name.startswith(k) for k in ANEURYSM_SITES)]
        else:
            options = [s for s in bifurcations if s.name.startswith(kind)]
        options = [s for s in options if s.name not in used]
        if not options:
            continue
        site = options[rng.integers(len(options))]
        used.add(site.name)
        diameter = float(np.clip(median_diameter_mm * np.exp(rng.normal(0, log_sd)), 2.0, 14.0))
        radius = diameter / 2
        direction = site.direction + rng.normal(0, 0.35, 3)
        if kind == "ICA-PCom junction":  # side wall: the dome points away from the ICA's axis
            direction = np.cross(site.direction, rng.normal(size=3))
        direction /= np.linalg.norm(direction) + 1e-9
        neck_radius = float(np.clip(rng.uniform(0.5, 0.8) * radius, 0.6 * site.radius_mm, 1.2 * site.radius_mm + 0.5))
        neck = site.point_lps_mm + direction * 0.5 * site.radius_mm
        centre = site.point_lps_mm + direction * (site.radius_mm + radius * rng.uniform(0.6, 0.9))
        chosen.append(Aneurysm(centre, radius, neck, min(neck_radius, radius), f"{kind}: {site.name}"))
    return chosen
