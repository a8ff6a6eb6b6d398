"""Where landmarks lie relative to each other: a pairwise offset model that vets detections.

A patch classifier sees 48 mm of anatomy; somewhere in a whole torso it will be sure of a
landmark that is not there (the next vertebra, the other kidney pole). The other landmarks know
better: from the training cases we learn, for every pair (i, j), the mean offset ``x_j - x_i`` in
LPS mm and its spread. A detection is consistent when the positions predicted for it by the other
detections (``x_j - offset_ij``) agree with it, measured as the median over j of the distance in
units of the pair's spread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmtransfer.detection.evaluate import LPS


@dataclass
class ShapeModel:
    """Pairwise offsets between landmark kinds.

    Attributes:
        names: landmark kinds, in the order of the arrays.
        offset_mm: (L, L, 3) mean of ``x_j - x_i`` over cases where both are in the image.
        spread_mm: (L, L) root-mean-square deviation of that offset (at least ``floor_mm``).
        pairs: (L, L) number of cases behind each pair.
    """

    names: list[str]
    offset_mm: np.ndarray
    spread_mm: np.ndarray
    pairs: np.ndarray

    @classmethod
    def fit(cls, table: pd.DataFrame, names: list[str], floor_mm: float = 3.0, min_pairs: int = 5) -> ShapeModel:
        """From rows ``case, landmark, x_lps_mm, y_lps_mm, z_lps_mm`` (only landmarks inside the image).

        Pairs seen together in fewer than ``min_pairs`` cases get no say (infinite spread).
        """
        index = {n: i for i, n in enumerate(names)}
        rows = table[table["landmark"].isin(index)]
        if "in_image" in rows.columns:
            rows = rows[rows["in_image"].astype(bool)]
        cases = sorted(rows["case"].unique())
        if len(cases) < 2:
            raise ValueError(f"the shape model needs landmarks of at least 2 cases, got {len(cases)}")
        min_pairs = min(min_pairs, len(cases))  # few cases (a tiny test set): every pair they share counts
        points = np.full((len(cases), len(names), 3), np.nan)
        case_row = {c: k for k, c in enumerate(cases)}
        points[rows["case"].map(case_row).to_numpy(), rows["landmark"].map(index).to_numpy()] = rows[LPS].to_numpy(float)
        offsets = points[:, None, :, :] - points[:, :, None, :]  # [case, i, j] = x_j - x_i
        valid = np.isfinite(offsets).all(axis=-1)
        pairs = valid.sum(axis=0)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(valid[..., None], offsets, np.nan), axis=0)
            deviation = np.linalg.norm(offsets - mean[None], axis=-1)
            spread = np.sqrt(np.nanmean(np.where(valid, deviation**2, np.nan), axis=0))
        spread = np.maximum(np.nan_to_num(spread, nan=np.inf), floor_mm)
        spread[pairs < min_pairs] = np.inf  # too few cases: this pair has no say
        return cls(list(names), np.nan_to_num(mean), spread, pairs)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"names": self.names, "offset_mm": np.round(self.offset_mm, 3).tolist(),
                                    "spread_mm": np.where(np.isfinite(self.spread_mm), np.round(self.spread_mm, 3), -1).tolist(),
                                    "pairs": self.pairs.tolist()}))

    @classmethod
    def load(cls, path: Path) -> ShapeModel:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: landmark shape model not found; `dvc repro detect_eval` fits it")
        try:
            raw = json.loads(path.read_text())
            spread = np.asarray(raw["spread_mm"], dtype=float)
            return cls(list(raw["names"]), np.asarray(raw["offset_mm"], dtype=float), np.where(spread < 0, np.inf, spread),
                       np.asarray(raw["pairs"], dtype=int))
        except (json.JSONDecodeError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a landmark shape model ({exc})") from exc

    def subset(self, names: list[str]) -> ShapeModel:
        """The model restricted to (and ordered like) ``names``; kinds it does not know get no constraints."""
        index = [self.names.index(n) if n in self.names else -1 for n in names]
        n = len(names)
        offset, spread, pairs = np.zeros((n, n, 3)), np.full((n, n), np.inf), np.zeros((n, n), dtype=int)
        for a, i in enumerate(index):
            for b, j in enumerate(index):
                if i >= 0 and j >= 0:
                    offset[a, b], spread[a, b], pairs[a, b] = self.offset_mm[i, j], self.spread_mm[i, j], self.pairs[i, j]
        return ShapeModel(list(names), offset, spread, pairs)

    def predicted(self, positions_lps_mm: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """(L, 3) median position of each kind predicted by the ``reference`` kinds (NaN without any)."""
        guesses = positions_lps_mm[None, :, :] - self.offset_mm  # [i, j] = x_j - offset_ij
        usable = reference[None, :] & np.isfinite(self.spread_mm) & ~np.eye(len(self.names), dtype=bool)
        out = np.full((len(self.names), 3), np.nan)
        for i in range(len(self.names)):
            if usable[i].any():
                out[i] = np.median(guesses[i, usable[i]], axis=0)
        return out

    def inconsistency(self, candidates_lps_mm: np.ndarray, owner: np.ndarray, positions_lps_mm: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Median distance, in pair spreads, between each candidate and the predictions of the reference kinds.

        ``candidates_lps_mm`` (m, 3) belong to kinds ``owner`` (m,); ``positions_lps_mm`` (L, 3) are the
        current positions, ``reference`` (L,) which of them to trust. A kind never votes for itself.
        """
        out = np.full(len(owner), np.inf)
        for row, (point, i) in enumerate(zip(candidates_lps_mm, owner)):
            voters = reference & np.isfinite(self.spread_mm[i])
            voters[i] = False
            if voters.any():
                guesses = positions_lps_mm[voters] - self.offset_mm[i, voters]
                out[row] = float(np.median(np.linalg.norm(point - guesses, axis=1) / self.spread_mm[i, voters]))
        return out
