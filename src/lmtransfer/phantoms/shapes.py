"""Solid shapes in the phantom's canonical body frame (LPS mm) and a smooth body warp.

Each shape answers two questions: its bounding box in canonical mm (so painting touches only the
voxels near it) and which canonical points lie inside it. Points are passed as three broadcastable
arrays ``x, y, z`` in mm.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numpy as np


class Shape(ABC):
    """A solid in canonical LPS mm."""

    @abstractmethod
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box ``(low, high)`` in canonical mm."""

    @abstractmethod
    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean mask of the points inside."""


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Rotation matrix: roll about x (L), pitch about y (P), then yaw about z (S)."""
    a, b, c = np.deg2rad([roll_deg, pitch_deg, yaw_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def frame_from_axis(axis: np.ndarray, hint: np.ndarray = np.array([1.0, 0.0, 0.0])) -> np.ndarray:
    """Rotation whose third column is ``axis`` (normalised); first column as close to ``hint`` as possible."""
    w = np.asarray(axis, dtype=float)
    w = w / np.linalg.norm(w)
    u = np.asarray(hint, dtype=float) - np.dot(hint, w) * w
    if np.linalg.norm(u) < 1e-6:
        u = np.array([0.0, 1.0, 0.0]) - w[1] * w
    u = u / np.linalg.norm(u)
    return np.column_stack([u, np.cross(w, u), w])


def to_local(rot: np.ndarray, center: np.ndarray, x, y, z):
    """Canonical points in a shape's own axes (the columns of ``rot``) round ``center``: ``u, v, w``."""
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    return (
        rot[0, 0] * dx + rot[1, 0] * dy + rot[2, 0] * dz,
        rot[0, 1] * dx + rot[1, 1] * dy + rot[2, 1] * dz,
        rot[0, 2] * dx + rot[1, 2] * dy + rot[2, 2] * dz,
    )


@dataclass
class Ellipsoid(Shape):
    """Ellipsoid with ``semi_axes`` (mm) along the columns of ``rot``."""

    center: np.ndarray
    semi_axes: np.ndarray
    rot: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=float)
        self.semi_axes = np.asarray(self.semi_axes, dtype=float)
        self.rot = np.eye(3) if self.rot is None else np.asarray(self.rot, dtype=float)

    def bounds(self):
        half = np.sqrt(((self.rot * self.semi_axes) ** 2).sum(axis=1))
        return self.center - half, self.center + half

    def contains(self, x, y, z):
        u, v, w = to_local(self.rot, self.center, x, y, z)
        a, b, c = self.semi_axes
        return (u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2 <= 1.0

    def extreme_point(self, direction: np.ndarray) -> np.ndarray:
        """Surface point furthest along ``direction`` (e.g. the top of an organ)."""
        d = np.asarray(direction, dtype=float)
        m = self.rot @ np.diag(self.semi_axes**2) @ self.rot.T
        return self.center + m @ d / np.sqrt(d @ m @ d)

    def point(self, local_unit: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Point at ``scale`` times the surface along a direction given in the ellipsoid's own axes."""
        u = np.asarray(local_unit, dtype=float)
        u = u / np.linalg.norm(u)
        return self.center + self.rot @ (self.semi_axes * u) * scale

    def shrunk(self, by_mm: float) -> Ellipsoid:
        return Ellipsoid(self.center, np.maximum(self.semi_axes - by_mm, 0.5), self.rot)


@dataclass
class Capsule(Shape):
    """Segment ``p0``-``p1`` swept by a sphere whose radius goes linearly from ``r0`` to ``r1``."""

    p0: np.ndarray
    p1: np.ndarray
    r0: float
    r1: float | None = None

    def __post_init__(self) -> None:
        self.p0 = np.asarray(self.p0, dtype=float)
        self.p1 = np.asarray(self.p1, dtype=float)
        self.r1 = self.r0 if self.r1 is None else self.r1

    def bounds(self):
        r = max(self.r0, self.r1)
        return np.minimum(self.p0, self.p1) - r, np.maximum(self.p0, self.p1) + r

    def contains(self, x, y, z):
        d = self.p1 - self.p0
        length2 = float(d @ d) or 1e-9
        t = ((x - self.p0[0]) * d[0] + (y - self.p0[1]) * d[1] + (z - self.p0[2]) * d[2]) / length2
        t = np.clip(t, 0.0, 1.0)
        r = self.r0 + (self.r1 - self.r0) * t
        return (x - self.p0[0] - t * d[0]) ** 2 + (y - self.p0[1] - t * d[1]) ** 2 + (z - self.p0[2] - t * d[2]) ** 2 <= r * r


@dataclass
class RoundedBox(Shape):
    """Box with half-extents ``half`` (mm) along the columns of ``rot``, edges rounded by ``rounding``."""

    center: np.ndarray
    half: np.ndarray
    rot: np.ndarray = None  # type: ignore[assignment]
    rounding: float = 1.0

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=float)
        self.half = np.asarray(self.half, dtype=float)
        self.rot = np.eye(3) if self.rot is None else np.asarray(self.rot, dtype=float)

    def bounds(self):
        half = np.abs(self.rot) @ self.half
        return self.center - half, self.center + half

    def contains(self, x, y, z):
        u, v, w = to_local(self.rot, self.center, x, y, z)
        inner = np.maximum(self.half - self.rounding, 0.0)
        qu = np.maximum(np.abs(u) - inner[0], 0.0)
        qv = np.maximum(np.abs(v) - inner[1], 0.0)
        qw = np.maximum(np.abs(w) - inner[2], 0.0)
        return qu * qu + qv * qv + qw * qw <= self.rounding**2


@dataclass
class Region(Shape):
    """Any solid given by a bounding box and an inside test (organ cut by the diaphragm, lungs, ...)."""

    low: np.ndarray
    high: np.ndarray
    test: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

    def bounds(self):
        return np.asarray(self.low, dtype=float), np.asarray(self.high, dtype=float)

    def contains(self, x, y, z):
        return self.test(x, y, z)


def intersect(shape: Shape, test: Callable, low=None, high=None) -> Region:
    """``shape`` restricted to the points where ``test`` holds."""
    lo, hi = shape.bounds()
    return Region(
        lo if low is None else np.maximum(lo, low),
        hi if high is None else np.minimum(hi, high),
        lambda x, y, z: shape.contains(x, y, z) & test(x, y, z),
    )


def tube(points: np.ndarray, radii: np.ndarray | float) -> list[Capsule]:
    """A vessel, airway or rib: capsules along a polyline with (optionally tapering) radii."""
    points = np.asarray(points, dtype=float)
    radii = np.broadcast_to(np.asarray(radii, dtype=float), (len(points),))
    return [Capsule(points[i], points[i + 1], radii[i], radii[i + 1]) for i in range(len(points) - 1)]


def smooth_curve(control: np.ndarray, step_mm: float = 4.0) -> np.ndarray:
    """Catmull-Rom curve through control points, resampled about every ``step_mm``."""
    control = np.asarray(control, dtype=float)
    if len(control) < 3:
        n = max(int(np.linalg.norm(control[-1] - control[0]) / step_mm), 1)
        return np.linspace(control[0], control[-1], n + 1)
    padded = np.vstack([2 * control[0] - control[1], control, 2 * control[-1] - control[-2]])
    out = [control[0]]
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        n = max(int(np.linalg.norm(p2 - p1) / step_mm), 1)
        for t in np.linspace(0, 1, n + 1)[1:]:
            t2, t3 = t * t, t * t * t
            out.append(
                0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)
            )
    return np.asarray(out)


@dataclass
class SmoothFunction1D:
    """Sum of a few sinusoids: a smooth random function of one coordinate (mm -> value)."""

    amplitudes: np.ndarray
    wavelengths_mm: np.ndarray
    phases: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float, wavelengths=(180.0, 600.0), terms: int = 3) -> SmoothFunction1D:
        amplitudes = rng.normal(0.0, amplitude / np.sqrt(terms), terms)
        return cls(amplitudes, rng.uniform(*wavelengths, terms), rng.uniform(0, 2 * np.pi, terms))

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        out = np.zeros_like(t)
        for a, lam, phi in zip(self.amplitudes, self.wavelengths_mm, self.phases):
            out = out + a * np.sin(2 * np.pi * t / lam + phi)
        return out


@dataclass
class BodyWarp:
    """Maps physical LPS mm to the canonical body frame: posture tilt plus a smooth deformation.

    ``canonical = centre + R (p - centre) + d(p)`` with ``d`` built from 1D smooth functions so the
    whole-volume map costs a few broadcast operations: lateral and AP bending along z
    (``bend_x(z)``, ``bend_y(z)``), width and depth changes along z (``scale_x(z) * x``,
    ``scale_y(z) * y``) and a vertical shift varying across the body (``lift_x(x) + lift_y(y)``).
    """

    centre: np.ndarray
    rot: np.ndarray
    bend_x: SmoothFunction1D
    bend_y: SmoothFunction1D
    scale_x: SmoothFunction1D
    scale_y: SmoothFunction1D
    lift_x: SmoothFunction1D
    lift_y: SmoothFunction1D

    def displacement_bound_mm(self, half_extent_mm: float) -> float:
        """Upper bound of |d| over a body of the given half-extent (for bounding boxes)."""
        total = 0.0
        for f, factor in (
            (self.bend_x, 1.0), (self.bend_y, 1.0), (self.scale_x, half_extent_mm),
            (self.scale_y, half_extent_mm), (self.lift_x, 1.0), (self.lift_y, 1.0),
        ):
            total += np.abs(f.amplitudes).sum() * factor
        return float(total)

    def canonical_grid(self, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, ...]:
        """Canonical coordinates of a grid given by 1D physical axes; arrays shaped ``[z, y, x]``."""
        X, Y, Z = px[None, None, :], py[None, :, None], pz[:, None, None]
        return self._apply(X, Y, Z)

    def _apply(self, X, Y, Z):
        c, r = self.centre, self.rot
        dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
        qx = (c[0] + r[0, 0] * dx + r[0, 1] * dy + r[0, 2] * dz + self.bend_x(Z) + self.scale_x(Z) * X).astype(np.float32)
        qy = (c[1] + r[1, 0] * dx + r[1, 1] * dy + r[1, 2] * dz + self.bend_y(Z) + self.scale_y(Z) * Y).astype(np.float32)
        qz = (c[2] + r[2, 0] * dx + r[2, 1] * dy + r[2, 2] * dz + self.lift_x(X) + self.lift_y(Y)).astype(np.float32)
        return qx, qy, qz

    def canonical(self, points_lps_mm: np.ndarray) -> np.ndarray:
        p = np.asarray(points_lps_mm, dtype=float).reshape(-1, 3)
        X, Y, Z = p[:, 0], p[:, 1], p[:, 2]
        c, r = self.centre, self.rot
        d = p - c
        q = c + d @ r.T
        q[:, 0] += self.bend_x(Z) + self.scale_x(Z) * X
        q[:, 1] += self.bend_y(Z) + self.scale_y(Z) * Y
        q[:, 2] += self.lift_x(X) + self.lift_y(Y)
        return q.reshape(np.shape(points_lps_mm))

    def physical(self, points_canonical_mm: np.ndarray, iterations: int = 60) -> np.ndarray:
        """Inverse map by fixed-point iteration (the warp is a small perturbation of a rotation)."""
        q = np.asarray(points_canonical_mm, dtype=float).reshape(-1, 3)
        c, r = self.centre, self.rot
        p = c + (q - c) @ r
        for _ in range(iterations):
            residual = self.canonical(p) - q
            p = p - residual @ r
            if np.abs(residual).max() < 1e-5:
                break
        return p.reshape(np.shape(points_canonical_mm))
