"""Patch tensors for training: class lists, case splits, normalisation and class-balanced sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lmtransfer.sampling.cache import BACKGROUND
from lmtransfer.sampling.sampler import equal_class_weights


def class_order(landmark_names: list[str], seed: int) -> list[str]:
    """A fixed, seeded order of landmark kinds; the first N form the N-class step."""
    names = sorted(set(landmark_names) - {BACKGROUND})
    rng = np.random.default_rng(seed)
    return [names[i] for i in rng.permutation(len(names))]


@dataclass
class PatchSet:
    """Patches of one split for one class list: int16 HU ``x`` (n, 3, P, P), labels ``y`` and their index rows."""

    x: np.ndarray
    y: np.ndarray
    rows: pd.DataFrame
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.y)


def select(patches: np.ndarray, index: pd.DataFrame, cases: list[str], class_names: list[str], variants: str) -> PatchSet:
    """Patches of ``cases`` whose name is in ``class_names`` (background last), ``variants``: "clean" or "all".

    Landmarks outside the class list are left out (they are landmarks, not background).
    """
    label_of = {name: i for i, name in enumerate(class_names)}
    keep = index["case"].isin(cases) & index["name"].isin(label_of)
    if variants == "clean":
        keep &= index["variant"] == 0
    rows = index[keep]
    if rows.empty:
        raise ValueError(f"no patches for {len(cases)} cases and {len(class_names)} classes")
    x = np.asarray(patches[rows["row"].to_numpy()])
    y = rows["name"].map(label_of).to_numpy(np.int64)
    missing = sorted(set(class_names) - set(rows["name"]))
    if missing and variants == "all":
        raise ValueError(f"classes with no training patch: {missing}")
    return PatchSet(x, y, rows.reset_index(drop=True), class_names)


@dataclass(frozen=True)
class Normaliser:
    """HU window -> [-1, 1]: values below ``low`` map to -1, above ``high`` to 1."""

    low: float = -1000.0
    high: float = 1000.0

    def __call__(self, x_hu: torch.Tensor) -> torch.Tensor:
        x = (x_hu.float() - self.low) / (self.high - self.low)
        return x.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Sampling weight per patch so that every class is drawn equally often.

    Every centre has the same number of variants, so centres within a class are drawn equally too.
    """
    return equal_class_weights(y)


def augment_intensity(x_hu: torch.Tensor, generator: torch.Generator, scale: float, shift_hu: float) -> torch.Tensor:
    """Random contrast scale and HU shift per patch (scanner and protocol variation)."""
    n = x_hu.shape[0]
    s = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * scale
    b = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * shift_hu
    return x_hu.float() * s + b
