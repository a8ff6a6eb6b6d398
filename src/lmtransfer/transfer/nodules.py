"""The lung-nodule lesion set: torso phantom cases of their own seed, nodules and look-alikes painted
in (:mod:`lmtransfer.phantoms.lung_nodules`), patches cut by the lesion sampler."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torchio as tio

from lmtransfer.io.coords import Geometry
from lmtransfer.phantoms.lung_nodules import NoduleConfig, add_nodules
from lmtransfer.phantoms.tissues import Tissue
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, render_case
from lmtransfer.transfer.lesions import INDEX_COLUMNS, SIZE_COLUMN, LesionPatchConfig, LesionSet, cut_both, join_cases, map_cases, window


@dataclass(frozen=True)
class LungNoduleLesions:
    """Lung nodules painted into torso CT phantom cases of their own seed (the in-domain task): solid,
    part-solid and ground-glass nodules against vessels, branchings, pleura, scars and parenchyma.
    ``lesion.lung_nodules`` in params.yaml."""

    n_cases: int = 60
    seed: int = 52361                 # not phantom_ct.seed: no case is a pre-training case
    spacing_mm: float = 1.6           # in-plane and slice
    fov_mm: float = 48.0              # patch field of view: room for a 30 mm nodule and its surroundings
    hu_window: tuple[float, float] = (-1000.0, 400.0)
    native_hu_window: tuple[float, float] = (-1000.0, 1000.0)   # the landmark CNN's own window (its native patches)
    diameter_mm: tuple[float, float] = (3.0, 30.0)
    nodules_per_case: tuple[int, int] = (1, 4)
    negatives_per_case: int = 40

    def __post_init__(self) -> None:
        if self.n_cases < 1 or not self.spacing_mm > 0 or not self.fov_mm > 0:
            raise ValueError(f"lung_nodules: n_cases >= 1, spacing_mm > 0 and fov_mm > 0 needed, got {self.n_cases}, "
                             f"{self.spacing_mm}, {self.fov_mm}")
        for name in ("hu_window", "native_hu_window"):
            low, high = getattr(self, name)
            if not high > low:
                raise ValueError(f"lung_nodules.{name} [{low}, {high}] is empty")
        self.nodules   # the nodule settings check themselves (diameters, counts) here, not in a worker

    @property
    def nodules(self) -> NoduleConfig:
        return NoduleConfig(diameter_mm=tuple(self.diameter_mm), per_case=tuple(self.nodules_per_case),
                            negatives_per_case=self.negatives_per_case)

    def inputs(self) -> tuple[Path, ...]:
        return ()                     # rendered from the code and these settings alone

    def build(self, patch: LesionPatchConfig, workers: int = 1, progress: bool = False) -> LesionSet:
        return nodule_lesion_set(self, patch, workers, progress)


def _lung_crop(labels: np.ndarray, spacing_zyx: np.ndarray, margin_mm: float) -> tuple[slice, ...]:
    """The box of the lungs plus ``margin_mm`` (the patches reach that far), in (z, y, x) array order."""
    where = np.argwhere(labels == Tissue.LUNG)
    if not len(where):
        raise ValueError("the rendered case has no lungs")
    pad = np.ceil(margin_mm / spacing_zyx).astype(int)
    low, high = np.maximum(where.min(axis=0) - pad, 0), np.minimum(where.max(axis=0) + pad + 1, labels.shape)
    return tuple(slice(a, b) for a, b in zip(low, high))


def nodule_case(index: int, cfg: LungNoduleLesions, patch: LesionPatchConfig
                ) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame, list[dict]]:
    """Patches (n, 3, P, P) in [-1, 1], the native ones (or None), their index rows and the nodules of case ``index``."""
    rendered = render_case(index, PhantomCTConfig(seed=cfg.seed, spacing_inplane_mm=cfg.spacing_mm, spacing_inplane_jitter=0.0,
                                                  slice_mm_choices=(cfg.spacing_mm,), slice_mm_weights=(1.0,), fov_cut_probability=0.0))
    hu, labels = sitk.GetArrayFromImage(rendered.image), sitk.GetArrayFromImage(rendered.labels)
    spacing_zyx = np.array(rendered.image.GetSpacing()[::-1], float)
    crop = _lung_crop(labels, spacing_zyx, max(cfg.fov_mm, patch.native_fov_mm))
    hu, labels = np.ascontiguousarray(hu[crop]), labels[crop]
    rng = np.random.default_rng([cfg.seed, index, 1])
    nodules, sites = add_nodules(hu, labels, spacing_zyx, cfg.nodules, float(rendered.meta["noise_hu"]), rng)
    # the cropped grid keeps its place in physical space: SimpleITK's slicing moves the origin
    box = rendered.image[crop[2].start:crop[2].stop, crop[1].start:crop[1].stop, crop[0].start:crop[0].stop]
    painted = sitk.GetImageFromArray(hu.astype(np.float32))
    painted.CopyInformation(box)
    image = tio.ScalarImage.from_sitk(painted)
    geometry = Geometry.from_sitk(painted)

    def to_lps(zyx: np.ndarray) -> np.ndarray:
        return geometry.index_to_lps(np.asarray(zyx, float).reshape(-1, 3)[:, ::-1])

    centres = np.vstack([to_lps(np.array([n.centre_zyx for n in nodules]).reshape(-1, 3)), to_lps(np.array([p for p, _ in sites]).reshape(-1, 3))])
    labels_ = np.r_[np.ones(len(nodules), int), np.zeros(len(sites), int)]
    kinds = np.array([f"nodule_{n.kind}" for n in nodules] + [kind for _, kind in sites], dtype=object)
    sizes = np.r_[[n.diameter_mm for n in nodules], np.full(len(sites), np.nan)]
    copies = np.where(labels_ == 1, patch.positive_copies, 0)
    (planes, native), (used, variants, source) = cut_both(image, centres, copies, replace(patch, fov_mm=cfg.fov_mm), seed=cfg.seed + index,
                                                          fill_value=-1024.0)
    case = f"lung_{index:03d}"
    rows = pd.DataFrame({"case": case, "label": labels_[source], "variant": variants, "kind": kinds[source],
                         "x_lps_mm": used[:, 0], "y_lps_mm": used[:, 1], "z_lps_mm": used[:, 2], "fixed_split": "",
                         SIZE_COLUMN: sizes[source]})
    described = [{"case": case, **asdict(n), "centre_lps_mm": to_lps(np.array(n.centre_zyx))[0].round(2).tolist()} for n in nodules]
    return (window(planes, *cfg.hu_window), None if native is None else window(native, *cfg.native_hu_window),
            rows[INDEX_COLUMNS + [SIZE_COLUMN]], described)


def _job(args):
    index, cfg, patch = args
    return nodule_case(index, cfg, patch)


def nodule_lesion_set(cfg: LungNoduleLesions, patch: LesionPatchConfig, workers: int = 1, progress: bool = True) -> LesionSet:
    """Every case of the lung-nodule phantom as one lesion set (cases rendered in ``workers`` processes)."""
    results = map_cases(_job, [(i, cfg, patch) for i in range(cfg.n_cases)], workers, "nodule cases", progress)
    info = {"source": "phantom_lung_nodules", "settings": {**asdict(patch), "fov_mm": cfg.fov_mm},
            "nodules": [n for *_, nodules in results for n in nodules]}
    if patch.native_fov_mm:
        info["native"] = {"fov_mm": patch.native_fov_mm, "normalisation": f"HU window {list(cfg.native_hu_window)}",
                          "hu_window": list(cfg.native_hu_window)}
    return join_cases([(x, native, rows) for x, native, rows, _ in results], info)
