"""Offset voting: a network that, from a patch near landmarks, says which lie within reach and where.

The landmark CNN answers only within a few mm of a landmark, which forces its search onto a fine
grid. Regression voting (the idea of Dabbah et al.'s forests) needs far fewer points: every point of
a coarse grid looks at a wider patch and votes for the position of every landmark within
``reach_mm`` of it. The votes of one kind cluster round its landmark; the densest cluster is where
the fine search starts (:class:`lmtransfer.detection.detector.LandmarkDetector`).

Training data are patches cut at points drawn uniformly in a ball round each training landmark and
at random body points; the targets are, for every landmark kind, whether it lies within reach and
its offset in LPS mm. Axis-aligned planes keep the patch frame the LPS frame, so offsets need no
rotation.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from lmtransfer.detection.body import body_mask, grid_points
from lmtransfer.detection.evaluate import LPS
from lmtransfer.devices import autocast, grad_scaler, optimiser_step, prepare, to_device, torch_threads
from lmtransfer.io.coords import Geometry
from lmtransfer.models.mini_vgg import OffsetVoter
from lmtransfer.sampling.planes import AIR_HU, PatchSpec, sample_planes
from lmtransfer.training.data import Normaliser, augment_intensity


@dataclass(frozen=True)
class VoterConfig:
    """Patch geometry, sampling and optimisation of the voting network (``voter`` in ``params.yaml``); mm."""

    fov_mm: float = 96.0              # wider than the landmark CNN's: a landmark 40 mm away is still in view
    pixels: int = 32
    reach_mm: float = 40.0            # a patch votes for the landmarks within this distance of its centre
    sample_radius_mm: float = 56.0    # training centres: uniform in a ball this big round each landmark ...
    per_landmark: int = 12            # ... this many per landmark and case
    background_per_case: int = 96     # ... plus this many body points of an 8 mm grid
    body_hu: float = -300.0
    depth: int = 3
    width: int = 16
    convs_per_block: int = 2
    feature_dim: int = 256
    dropout: float = 0.1
    hu_low: float = -1000.0
    hu_high: float = 1000.0
    batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 0.0001
    max_epochs: int = 30
    patience: int = 6
    epoch_patches: int = 16000
    val_patches: int = 4000           # the validation loss each epoch on this many (a seeded subset); 0: all
    offset_weight: float = 4.0        # offset loss (units of reach) against the presence loss
    intensity_scale: float = 0.05
    intensity_shift_hu: float = 20.0
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if min(self.fov_mm, self.reach_mm, self.sample_radius_mm) <= 0:
            raise ValueError("voter: fov_mm, reach_mm and sample_radius_mm must be positive")
        if self.sample_radius_mm < self.reach_mm:
            raise ValueError(f"voter: sample_radius_mm ({self.sample_radius_mm}) must be at least reach_mm ({self.reach_mm}): "
                             "the network must see points just out of reach to learn where reach ends")
        if min(self.per_landmark, self.batch_size, self.max_epochs, self.epoch_patches) < 1 or self.background_per_case < 0:
            raise ValueError("voter: per_landmark, batch_size, max_epochs and epoch_patches must be at least 1")
        if self.val_patches < 0:
            raise ValueError(f"voter: val_patches must be 0 (all) or positive, got {self.val_patches}")

    @property
    def spec(self) -> PatchSpec:
        return PatchSpec(self.fov_mm, self.pixels)

    @property
    def normaliser(self) -> Normaliser:
        return Normaliser(self.hu_low, self.hu_high)

    def build(self, n_landmarks: int) -> OffsetVoter:
        return OffsetVoter(n_landmarks, self.reach_mm, self.depth, self.width, self.convs_per_block, 3, self.pixels,
                           self.feature_dim, self.dropout)


@dataclass
class VoterSet:
    """Voting patches: int16 HU ``x`` (n, 3, P, P), their ``centres_lps_mm`` (n, 3), ``case`` (n,), and the
    targets for every kind of ``names``: ``present`` (n, L) within reach, ``offsets_mm`` (n, L, 3) to it."""

    x: np.ndarray
    centres_lps_mm: np.ndarray
    case: np.ndarray
    present: np.ndarray
    offsets_mm: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def concat(cls, parts: list[VoterSet]) -> VoterSet:
        if not parts:
            raise ValueError("no voting patches: no case with landmarks")
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "centres_lps_mm", "case", "present", "offsets_mm")),
                   parts[0].names)

    def take(self, rows: np.ndarray) -> VoterSet:
        """The patches at ``rows`` (in that order)."""
        return VoterSet(self.x[rows], self.centres_lps_mm[rows], self.case[rows], self.present[rows], self.offsets_mm[rows], self.names)

    def subset(self, count: int, seed: int) -> VoterSet:
        """``count`` patches drawn without replacement (seeded; kept in their order), or all of them when
        ``count`` is 0 or at least their number."""
        if count == 0 or count >= len(self):
            return self
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), size=count, replace=False)))


def targets(centres_lps_mm: np.ndarray, landmarks_lps_mm: np.ndarray, reach_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """``present`` (n, L): landmark within ``reach_mm`` of the centre (never for NaN landmarks), and
    ``offsets_mm`` (n, L, 3): landmark minus centre (0 where not present)."""
    offsets = np.asarray(landmarks_lps_mm, float)[None] - np.asarray(centres_lps_mm, float)[:, None]
    distance = np.linalg.norm(offsets, axis=2)
    present = np.nan_to_num(distance, nan=np.inf) <= reach_mm
    return present, np.where(present[..., None], offsets, 0.0).astype(np.float32)


def case_patches(volume_ijk: np.ndarray, geometry: Geometry, landmarks_lps_mm: np.ndarray, names: list[str], case: str,
                 cfg: VoterConfig, rng: np.random.Generator) -> VoterSet:
    """Training patches of one case: ``cfg.per_landmark`` centres in a ball round each landmark (rows of
    ``landmarks_lps_mm`` (L, 3), NaN where the case lacks it) inside the image, and body points."""
    marks = np.asarray(landmarks_lps_mm, float)
    known = marks[np.isfinite(marks).all(axis=1)]
    direction = rng.normal(size=(len(known), cfg.per_landmark, 3))
    direction /= np.linalg.norm(direction, axis=2, keepdims=True)
    radius = cfg.sample_radius_mm * rng.random((len(known), cfg.per_landmark, 1)) ** (1 / 3)
    near = (known[:, None] + direction * radius).reshape(-1, 3)
    near = near[geometry.contains_index(geometry.lps_to_index(near))]
    body = body_mask(volume_ijk, geometry, cfg.body_hu)
    grid = grid_points(geometry, 8.0)
    grid = grid[body.contains(grid)]
    far = grid[rng.choice(len(grid), size=min(cfg.background_per_case, len(grid)), replace=False)] if len(grid) else grid
    centres = np.concatenate([near, far])
    x = sample_planes(volume_ijk, geometry, centres, cfg.spec, fill_hu=AIR_HU)
    x = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    present, offsets = targets(centres, marks, cfg.reach_mm)
    return VoterSet(x, centres, np.full(len(centres), case, dtype=object), present, offsets, list(names))


def landmark_matrix(rows: pd.DataFrame, names: list[str]) -> np.ndarray:
    """(L, 3) LPS positions of ``names`` from one case's landmark rows (``landmark`` + LPS columns); NaN where absent."""
    table = rows.drop_duplicates("landmark").set_index("landmark").reindex(names)
    return table[LPS].to_numpy(dtype=float)


def train_voter(train: VoterSet, val: VoterSet, cfg: VoterConfig, on_epoch: Callable[[int, dict], None] | None = None,
                progress: Callable[[str], None] | None = print, device: torch.device | str = "cpu") -> tuple[OffsetVoter, pd.DataFrame]:
    """Train with early stopping on the validation loss; returns the best model (on the CPU) and the history.

    The validation figures of every epoch come from ``cfg.val_patches`` of ``val`` (a seeded subset):
    they choose the epoch, and a few thousand patches rank epochs as well as all of them at a fraction
    of the cost.

    Loss per patch: binary cross-entropy of every kind's presence (summed over kinds) plus
    ``offset_weight`` x smooth-L1 of the offsets of the kinds present, in units of ``reach_mm``.
    """
    device = torch.device(device)
    val = val.subset(cfg.val_patches, cfg.seed)
    with torch_threads(cfg.threads), torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        model = prepare(cfg.build(len(train.names)), device)
        scaler = grad_scaler(device)
        optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, epochs=cfg.max_epochs,
                                                        steps_per_epoch=-(-cfg.epoch_patches // cfg.batch_size))
        x_all = torch.from_numpy(train.x)
        present_all = torch.from_numpy(train.present.astype(np.float32))
        offsets_all = torch.from_numpy(train.offsets_mm / cfg.reach_mm)
        best_loss, best_state, best_epoch, history = np.inf, None, 0, []
        for epoch in range(1, cfg.max_epochs + 1):
            start = time.perf_counter()
            model.train()
            total, seen = 0.0, 0
            draws = torch.randint(len(train), (cfg.epoch_patches,), generator=generator)
            for batch in draws.split(cfg.batch_size):
                x = augment_intensity(x_all[batch], generator, cfg.intensity_scale, cfg.intensity_shift_hu)
                with autocast(device):
                    out = model(to_device(cfg.normaliser(x), device)).float()
                    loss = _loss(model, out, to_device(present_all[batch], device), to_device(offsets_all[batch], device), cfg)
                optimiser.zero_grad(set_to_none=True)
                optimiser_step(loss, optimiser, scaler)
                scheduler.step()
                total += loss.item() * len(batch)
                seen += len(batch)
            seconds = time.perf_counter() - start
            values = {"train_loss": total / seen, **evaluate_voter(model, val, cfg, device), "patches_per_second": seen / seconds}
            history.append({"epoch": epoch, **values})
            if progress:
                progress(f"  epoch {epoch:3d}  loss {values['train_loss']:.3f}  val loss {values['val_loss']:.3f}  "
                         f"presence F1 {values['val_presence_f1']:.3f}  offset error median {values['val_offset_median_mm']:.1f} mm"
                         f"  ({values['patches_per_second']:.0f} patches/s)")
            if values["val_loss"] < best_loss:
                best_loss, best_state, best_epoch = values["val_loss"], copy.deepcopy(model.state_dict()), epoch
            if on_epoch is not None:
                on_epoch(epoch, values)
            if epoch - best_epoch >= cfg.patience:
                break
        model.load_state_dict(best_state)
    frame = pd.DataFrame(history).drop(columns="patches_per_second")
    frame["best"] = frame["epoch"] == best_epoch
    return model.to("cpu", memory_format=torch.contiguous_format).eval(), frame


def _loss(model: OffsetVoter, out: torch.Tensor, present: torch.Tensor, offsets: torch.Tensor, cfg: VoterConfig) -> torch.Tensor:
    logits, predicted_mm = model.split(out)
    presence = nn.functional.binary_cross_entropy_with_logits(logits, present, reduction="sum")
    error = nn.functional.smooth_l1_loss(predicted_mm / cfg.reach_mm, offsets, reduction="none", beta=0.1).sum(dim=2)
    return (presence + cfg.offset_weight * (error * present).sum()) / len(out)


def _outputs(model: OffsetVoter, x_hu: np.ndarray, normaliser: Normaliser, batch_size: int = 512,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """The network's raw outputs (n, 4 L) for HU patches (n, 3, P, P), on the CPU."""
    device = torch.device(device)
    model.eval()
    out = []
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(x_hu), batch_size):
            batch = to_device(normaliser(torch.as_tensor(np.asarray(x_hu[start: start + batch_size]))), device)
            out.append(model(batch).float().cpu())
    return torch.cat(out) if out else torch.zeros((0, 4 * model.n_landmarks))


def evaluate_voter(model: OffsetVoter, data: VoterSet, cfg: VoterConfig, device: torch.device | str = "cpu") -> dict:
    """The training loss on ``data``, presence F1 at 0.5 and the median and 90th percentile offset error (mm)
    of the kinds present."""
    out = _outputs(model, data.x, cfg.normaliser, device=device)
    loss = float(_loss(model, out, torch.from_numpy(data.present.astype(np.float32)), torch.from_numpy(data.offsets_mm / cfg.reach_mm), cfg))
    logits, offsets_mm = model.split(out)
    said, offsets = (torch.sigmoid(logits) >= 0.5).numpy(), offsets_mm.numpy()
    f1 = 2 * (said & data.present).sum() / max(1, said.sum() + data.present.sum())
    error = np.linalg.norm(offsets - data.offsets_mm, axis=2)[data.present]
    return {"val_loss": loss, "val_presence_f1": float(f1),
            "val_offset_median_mm": float(np.median(error)) if error.size else float("nan"),
            "val_offset_p90_mm": float(np.quantile(error, 0.9)) if error.size else float("nan")}


def cluster_votes(votes_lps_mm: np.ndarray, weights: np.ndarray, radius_mm: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` vote clusters, densest first: their centres (c, 3) and summed weights (c,).

    The densest vote (weights summed within ``radius_mm``) seeds a cluster whose centre is the
    weighted mean of the votes within ``radius_mm`` of it; votes within twice the radius of a
    cluster are spent before the next one is sought.
    """
    votes, weights = np.asarray(votes_lps_mm, float).reshape(-1, 3), np.asarray(weights, float).reshape(-1)
    distance = np.linalg.norm(votes[:, None] - votes[None], axis=2)
    alive = np.ones(len(votes), bool)
    centres, support = [], []
    while alive.any() and len(centres) < count:
        density = ((distance <= radius_mm) & alive[None]) @ weights
        density[~alive] = -1.0
        seed = int(np.argmax(density))
        member = alive & (distance[seed] <= radius_mm)
        centres.append((votes[member] * weights[member, None]).sum(axis=0) / weights[member].sum())
        support.append(float(weights[member].sum()))
        alive &= np.linalg.norm(votes - centres[-1], axis=1) > 2 * radius_mm
    return np.asarray(centres, float).reshape(-1, 3), np.asarray(support, float)


def iter_cases(manifest: pd.DataFrame, cases: Iterable[str]) -> Iterable[tuple[str, str, pd.DataFrame]]:
    """(case, image path, landmark rows) of ``cases`` from an ingest manifest, in the given order."""
    by_case = {case: rows for case, rows in manifest.groupby("case", sort=False)}
    for case in cases:
        if case not in by_case:
            raise ValueError(f"case {case!r} of the split is not in the manifest")
        rows = by_case[case]
        yield case, str(rows["image_path"].iloc[0]), rows


def cut_cases(manifest: pd.DataFrame, cases: list[str], names: list[str], cfg: VoterConfig, workers: int = 1,
              on_case: Callable[[str], None] | None = None) -> VoterSet:
    """Training patches of ``cases`` (an ingest manifest's images and landmarks), ``workers`` processes.

    Each case draws from its own generator, seeded with ``cfg.seed`` and the case's name, so the
    patches do not depend on the worker count or on which other cases are cut.
    """
    from lmtransfer.parallel import process_pool

    jobs = [(case, image, landmark_matrix(rows, names)) for case, image, rows in iter_cases(manifest, cases)]
    parts: list[VoterSet] = []
    if workers > 1 and len(jobs) > 1:
        with process_pool(workers) as pool:
            for part in pool.map(_cut_one, jobs, [names] * len(jobs), [cfg] * len(jobs)):
                parts.append(part)
                if on_case:
                    on_case(part.case[0] if len(part) else "")
    else:
        for job in jobs:
            parts.append(_cut_one(job, names, cfg))
            if on_case:
                on_case(job[0])
    return VoterSet.concat(parts)


def _cut_one(job: tuple[str, str, np.ndarray], names: list[str], cfg: VoterConfig) -> VoterSet:
    import SimpleITK as sitk

    from lmtransfer.io.volumes import read_volume

    case, image_path, marks = job
    image = read_volume(Path(image_path))
    volume = sitk.GetArrayViewFromImage(image).T
    seed = int.from_bytes(hashlib.sha256(case.encode()).digest()[:8], "little")
    return case_patches(volume, Geometry.from_sitk(image), marks, names, case, cfg, np.random.default_rng([cfg.seed, seed]))
