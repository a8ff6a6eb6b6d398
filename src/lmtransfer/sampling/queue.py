"""Patches on the fly, for collections too large to cache: the cases as TorchIO subjects and a
:class:`torchio.Queue` that draws landmark and background patches from them while training.

The subjects list the same points as the patch cache (the same background points, from the same
seeds), so the validation and test patches cut here are the cache's exact (variant 0) patches.
Training patches are drawn at random, every class equally often, and jittered and rotated as the
cache's augmented copies are; volumes are read while training instead of once, ahead of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import torch
import torchio as tio
from torch.utils.data import DataLoader

from lmtransfer.sampling.cache import PatchCacheConfig, case_seed, case_subject, int16_hu
from lmtransfer.sampling.sampler import NAMES_KEY, POINTS_KEY, LandmarkSampler, collate


def case_subjects(manifest: pd.DataFrame, cases: list[str], cfg: PatchCacheConfig, class_names: list[str],
                  loaded: bool = False) -> Iterator[tio.Subject]:
    """One subject per case listing the points of ``class_names`` (landmarks of other kinds are left
    out: they are neither a class nor background), one case at a time. Each volume is read here for
    its background points; ``loaded`` keeps that read in the subject (to cut patches at once),
    otherwise the subject reads its image again whenever a queue visits it."""
    usable = manifest[manifest["in_image"].astype(bool)]
    keep = set(class_names)
    found = 0
    for case in cases:
        rows = usable[usable["case"] == case]
        if rows.empty:
            continue
        full = case_subject(case, rows, cfg, case_seed(cfg, case))
        names = np.asarray(full[NAMES_KEY], dtype=object)
        chosen = np.array([name in keep for name in names])
        if chosen.any():
            found += 1
            image = full["ct"] if loaded else tio.ScalarImage(rows["image_path"].iloc[0])  # lazy: not kept between visits
            yield tio.Subject(ct=image, case=case, **{POINTS_KEY: np.asarray(full[POINTS_KEY])[chosen], NAMES_KEY: names[chosen].tolist()})
    if not found:
        raise ValueError(f"no point of the {len(class_names)} classes in {len(cases)} cases")


def exact_patches(subjects: Iterable[tio.Subject], cfg: PatchCacheConfig) -> tuple[np.ndarray, pd.DataFrame]:
    """Every listed point of every subject, unaugmented: int16 HU planes (n, 3, P, P) and their rows
    (case, name, variant 0, centre), as the patch cache stores its exact patches."""
    planes, rows = [], []
    for subject in subjects:
        cut, centres, names = collate(LandmarkSampler(cfg.spec)(subject), cfg.pixels)
        planes.append(int16_hu(cut))
        rows += [(subject["case"], name, 0, *centre) for name, centre in zip(names, centres)]
    index = pd.DataFrame(rows, columns=["case", "name", "variant", "x_lps_mm", "y_lps_mm", "z_lps_mm"])
    return np.concatenate(planes), index


class QueuePatches:
    """Training batches drawn from a :class:`torchio.Queue` over ``subjects``: each visit to a case
    cuts ``samples_per_volume`` patches of random points (every class name equally likely within the
    case), jittered and rotated by ``cfg``. Randomness comes from ``seed`` and torch's global
    generator (the Queue shuffles with it), which training seeds.

    Args:
        subjects: from :func:`case_subjects`.
        class_names: the classes, background last; a patch's label is its name's position here.
        cfg: patch settings (field of view, pixels, jitter, rotation).
        samples_per_volume: patches cut per visit to a case.
        max_length: patches the queue holds (the more, the better mixed across cases).
        num_workers: processes loading volumes for the queue.
    """

    def __init__(self, subjects: list[tio.Subject], class_names: list[str], cfg: PatchCacheConfig, seed: int = 0,
                 samples_per_volume: int = 64, max_length: int = 512, num_workers: int = 0):
        self.class_names = list(class_names)
        self._label = {name: i for i, name in enumerate(self.class_names)}
        sampler = LandmarkSampler(cfg.spec, cfg.jitter_mm, cfg.rotation_deg, seed=seed, draws=samples_per_volume)
        self.queue = tio.Queue(tio.SubjectsDataset(subjects), max_length=max(max_length, samples_per_volume),
                               samples_per_volume=samples_per_volume, sampler=sampler, num_workers=num_workers,
                               shuffle_subjects=True, shuffle_patches=True, verbose=False)

    def batches(self, n_patches: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``n_patches`` patches in batches of ``batch_size`` (the last may be smaller): float HU planes
        (b, 3, P, P) and labels (b,). The queue refills itself as often as needed."""
        patches = self._patches()
        for start in range(0, n_patches, batch_size):
            group = [next(patches) for _ in range(min(batch_size, n_patches - start))]
            yield (torch.stack([p["planes"][tio.DATA][..., 0] for p in group]),
                   torch.as_tensor([self._label[p["name"]] for p in group]))

    def _patches(self) -> Iterator[tio.Subject]:
        while True:  # one pass over the queue visits every case once; then it starts again
            yield from DataLoader(self.queue, batch_size=None, num_workers=0)
