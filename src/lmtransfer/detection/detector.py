"""Landmark detection on a whole CT with the landmark CNN: a coarse pass (votes or a grid), then refinement.

The CNN was trained to name the landmark at the centre of a 2.5D patch (or "background").
Detection turns that around: patches are cut at candidate centres inside the body, and for each
landmark kind the centre with the highest probability of that kind wins.

1. Coarse pass. With a voting network (:mod:`lmtransfer.detection.voting`, the default): every
   point of a ``vote_step_mm`` grid over the body votes for where each landmark within its reach
   lies; each kind's ``vote_candidates`` densest vote clusters are scored on a small cube
   (``vote_local_mm``) and the best point of each goes to step 2. Without one: the landmark CNN
   scores every point of a ``coarse_step_mm`` grid, optionally screened first (``screen_factor``
   > 1: every ``screen_factor``-th point along each axis, then the grid only within
   ``screen_reach`` steps of the ``screen_top`` best screening points of each kind). Screening is
   off: on three phantom test cases, factor 2 with the top 24 scored 41k patches instead of 86k
   (2.1x faster), but 6 % of the kinds moved (median error 4.7 -> 5.1 mm): this classifier's answer
   is too narrow for a 16 mm lattice to find every kind's peak. Voting on six test cases: 11.5k
   patches instead of 93k, median error 2.9 mm instead of 3.3.
2. Grid scan only: for every kind, the ``candidates`` best grid points (kept apart by two grid
   steps) are the candidates. Each candidate moves to the best of its 26 neighbours at each of
   ``refine_steps_mm``.
3. Each candidate's position becomes the centroid of the points round it where its kind is nearly as
   probable as at the best one (``centroid_mm``, ``centroid_step_mm``, ``centroid_fraction``). The
   network was trained on patches jittered by a few mm, so it answers on a plateau a few mm wide
   whose highest point is as much noise as signal; the plateau's centre lies nearer the landmark
   (README, "Landmark detection": median error 3.34 -> 2.86 mm on the validation cases).
4. Without a shape model, each kind takes its most probable candidate. With one
   (:mod:`lmtransfer.detection.shape`), each kind takes its most probable candidate among those
   that agree with where the other kinds' detections put it; a kind is "not found" when no candidate
   agrees within ``max_inconsistency`` spreads, or when the others place it more than
   ``outside_margin_mm`` outside the image (landmarks cut off by the scan range).
5. A kind whose probability stays under ``min_probability`` is "not found" too.

Patches of the next batch are cut in a helper thread while the network scores the current one,
so both cores stay busy (NumPy and PyTorch release the interpreter lock).
"""

from __future__ import annotations

import copy
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from scipy import ndimage
from torch import nn
from tqdm.auto import tqdm

from lmtransfer.detection.body import body_mask, grid_points
from lmtransfer.detection.shape import ShapeModel
from lmtransfer.devices import autocast, to_device, torch_threads
from lmtransfer.io.coords import Geometry
from lmtransfer.io.volumes import read_volume
from lmtransfer.models.checkpoint import ModelCard, load_checkpoint
from lmtransfer.detection.voting import cluster_votes
from lmtransfer.models.mini_vgg import MiniVGG, OffsetVoter
from lmtransfer.sampling.cache import BACKGROUND
from lmtransfer.sampling.planes import AIR_HU, PatchSpec, sample_planes
from lmtransfer.training.data import Normaliser

RESULT_COLUMNS = ["landmark", "found", "probability", "inconsistency", "x_lps_mm", "y_lps_mm", "z_lps_mm"]


MIN_CORE = 2  # kinds that must agree with each other before they anchor the shape check on their own


@dataclass(frozen=True)
class DetectConfig:
    """How the volume is searched; units in mm, probabilities in [0, 1]."""

    coarse_step_mm: float = 8.0
    screen_factor: int = 1
    screen_top: int = 24
    screen_reach: int = 1
    refine_steps_mm: tuple[float, ...] = (4.0, 2.0, 1.0)
    candidates: int = 3
    min_probability: float = 0.5
    body_hu: float = -300.0
    body_margin_mm: float = 4.0
    batch_size: int = 512
    threads: int = 2
    max_inconsistency: float = 2.0
    outside_margin_mm: float = 10.0
    max_voxels: int = 800_000_000
    vote_step_mm: float = 20.0
    vote_min_presence: float = 0.5
    vote_radius_mm: float = 8.0
    vote_candidates: int = 1
    vote_local_mm: float = 4.0
    centroid_mm: float = 6.0
    centroid_step_mm: float = 3.0
    centroid_fraction: float = 0.8

    def __post_init__(self) -> None:
        if min(self.coarse_step_mm, self.vote_step_mm, self.vote_radius_mm) <= 0 or any(s <= 0 for s in self.refine_steps_mm):
            raise ValueError("detect: coarse_step_mm, vote_step_mm, vote_radius_mm and refine_steps_mm must be positive")
        if self.vote_candidates < 1 or not 0.0 <= self.vote_min_presence <= 1.0:
            raise ValueError("detect: vote_candidates must be at least 1 and vote_min_presence in [0, 1]")
        if self.candidates < 1 or self.batch_size < 1 or self.threads < 1 or min(self.screen_factor, self.screen_top, self.screen_reach) < 1:
            raise ValueError("detect: candidates, batch_size, threads and the screen_* settings must be at least 1")
        if not 0.0 <= self.min_probability <= 1.0:
            raise ValueError(f"detect: min_probability must lie in [0, 1], got {self.min_probability}")
        if self.centroid_mm < 0 or self.centroid_step_mm <= 0 or not 0.0 <= self.centroid_fraction < 1.0:
            raise ValueError("detect: centroid_mm must be >= 0 (0: off), centroid_step_mm positive and centroid_fraction in [0, 1)")


@dataclass
class DetectionResult:
    """One row per landmark kind (``RESULT_COLUMNS``; positions NaN when not found) and the cost."""

    table: pd.DataFrame
    seconds: float
    patches_scored: int
    volume_voxels: int

    @property
    def found(self) -> pd.DataFrame:
        return self.table[self.table["found"]]


class LandmarkDetector:
    """Finds every landmark kind of a landmark CNN in a CT volume.

    Args:
        model: a trained :class:`MiniVGG` whose last class is background.
        card: its model card (class names, patch field of view and pixels, HU window).
        config: search settings.
    """

    def __init__(self, model: MiniVGG, card: ModelCard, config: DetectConfig | None = None, shape: ShapeModel | None = None,
                 device: torch.device | str = "cpu", voter: tuple[OffsetVoter, ModelCard] | None = None):
        self.device = torch.device(device)
        self.model, self.card = _inference_model(model).to(self.device), card
        self.config = config or DetectConfig()
        self.class_names: list[str] = list(card.class_names)
        self.landmarks = [i for i, name in enumerate(self.class_names) if name != BACKGROUND]
        self.spec = PatchSpec(card.fov_mm, card.pixels)
        self.normaliser = Normaliser(*card.hu_window)
        self.shape = shape.subset([self.class_names[c] for c in self.landmarks]) if shape is not None else None
        self.voter = None
        if voter is not None:
            voter_model, voter_card = voter
            known = list(voter_card.class_names)
            unknown = [self.class_names[c] for c in self.landmarks if self.class_names[c] not in known]
            if unknown:
                raise ValueError(f"the voting network knows no {unknown}: train it on the landmark CNN's kinds")
            self.voter = _Net(_inference_model(voter_model).to(self.device), PatchSpec(voter_card.fov_mm, voter_card.pixels),
                              Normaliser(*voter_card.hu_window), _voter_head(voter_model))
            self.voter_index = np.array([known.index(self.class_names[c]) for c in self.landmarks])
        self.net = _Net(self.model, self.spec, self.normaliser, _softmax)

    @classmethod
    def from_checkpoint(cls, path: Path, config: DetectConfig | None = None, shape: ShapeModel | None = None,
                        device: torch.device | str = "cpu", voter: Path | None = None) -> LandmarkDetector:
        """The detector of the landmark CNN at ``path``; with ``voter`` (a `train-voter` checkpoint) its coarse
        pass votes instead of scanning the fine grid."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: landmark model not found; `dvc repro pretrain_60` trains it")
        model, card = load_checkpoint(path)
        if BACKGROUND not in card.class_names:
            raise ValueError(f"{path}: the model has no background class, so it cannot say where no landmark is")
        voting = None
        if voter is not None:
            if not Path(voter).exists():
                raise FileNotFoundError(f"{voter}: voting network not found; `dvc repro train_voter` trains it")
            voting = load_checkpoint(Path(voter))
            if not isinstance(voting[0], OffsetVoter):
                raise ValueError(f"{voter}: not a voting network (architecture {voting[1].architecture!r})")
        try:
            return cls(model, card, config, shape, device, voting)
        except ValueError as exc:
            if voter is None:
                raise
            raise ValueError(f"{voter}: {exc}") from exc

    def detect_file(self, path: Path, progress: bool = True) -> DetectionResult:
        """Read a volume (any format :func:`read_volume` takes) and detect its landmarks.

        The voxels stay in SimpleITK's buffer and type (int16 for CT): the search reads a view.
        """
        image = read_volume(Path(path), self.config.max_voxels)
        volume_ijk = sitk.GetArrayViewFromImage(image).T
        try:
            return self.detect(volume_ijk, Geometry.from_sitk(image), progress=progress, name=Path(path).name)
        finally:
            del volume_ijk  # the view must not outlive the image that owns its memory

    def detect(self, volume_ijk: np.ndarray, geometry: Geometry, progress: bool = True, name: str = "volume") -> DetectionResult:
        """Best position and probability of every landmark kind in ``volume_ijk`` (HU, ``[i, j, k]``, any
        numeric type, any memory order: it is read in place, never copied)."""
        cfg = self.config
        start = time.perf_counter()
        volume = np.asarray(volume_ijk)
        bar = tqdm(desc=f"detect {name}", unit="patch", disable=not progress, leave=False)
        with torch_threads(cfg.threads), bar:
            body = body_mask(volume, geometry, cfg.body_hu, cfg.body_margin_mm)
            scorer = _Scorer(self, self.net, volume, geometry, bar)
            voter = _Scorer(self, self.voter, volume, geometry, bar) if self.voter is not None else None
            if voter is None:
                grid, coarse = self._coarse(scorer, *_body_grid(body, geometry, cfg.coarse_step_mm, name))
                owners, candidates, peaks = self._refine(scorer, grid, coarse)
            else:
                owners, candidates, peaks = self._vote(scorer, voter, _body_grid(body, geometry, cfg.vote_step_mm, name)[0], geometry)
            candidates = self._centroid(scorer, owners, candidates)
        positions, best, inconsistency, found = self._choose(owners, candidates, peaks, geometry)
        names = [self.class_names[c] for c in self.landmarks]
        table = pd.DataFrame({"landmark": names, "found": found, "probability": best, "inconsistency": inconsistency})
        table[["x_lps_mm", "y_lps_mm", "z_lps_mm"]] = np.where(found[:, None], positions, np.nan)
        scored = scorer.count + (voter.count if voter is not None else 0)
        return DetectionResult(table[RESULT_COLUMNS], time.perf_counter() - start, scored, int(volume.size))

    def probabilities(self, volume_ijk: np.ndarray, geometry: Geometry, centres_lps_mm: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) of patches centred at ``centres_lps_mm`` (n, 3), cut and
        normalised exactly as in training and in :meth:`detect`."""
        centres = np.asarray(centres_lps_mm, dtype=float).reshape(-1, 3)
        with torch_threads(self.config.threads), tqdm(disable=True) as bar:
            return _Scorer(self, self.net, np.asarray(volume_ijk), geometry, bar)(centres)

    def _refinement_patches(self) -> int:
        return len(self.landmarks) * self.config.candidates * self._climb_patches()

    def _climb_patches(self) -> int:
        """Patches one candidate costs after its start: the climb's neighbours, then the centroid's cube."""
        return 26 * len(self.config.refine_steps_mm) + len(self._centroid_offsets())

    def _centroid_offsets(self) -> np.ndarray:
        cfg = self.config
        return _cube_offsets(cfg.centroid_mm, cfg.centroid_step_mm) if cfg.centroid_mm > 0 else np.zeros((0, 3))

    def _coarse(self, scorer: _Scorer, grid: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The grid points scored (m, 3) and their class probabilities (m, classes): the screening
        lattice, then the full grid next to each kind's best screening points."""
        factor, bar = self.config.screen_factor, scorer.bar
        if factor == 1:
            bar.total = len(grid) + self._refinement_patches()
            return grid, scorer(grid)
        screen = np.all(cells % factor == 0, axis=1)
        bar.total = int(screen.sum()) + self._refinement_patches()
        first = scorer(grid[screen])
        top = min(self.config.screen_top, len(first))
        best = np.argpartition(-first[:, self.landmarks], top - 1, axis=0)[:top]  # (top, kinds) rows of the screen
        lattice = np.zeros(cells.max(axis=0) + 1, dtype=bool)
        lattice[tuple(cells[screen][np.unique(best)].T)] = True
        near = ndimage.maximum_filter(lattice, size=2 * self.config.screen_reach + 1, mode="constant")
        rest = ~screen & near[tuple(cells.T)]
        bar.total += int(rest.sum())
        bar.refresh()
        return np.concatenate([grid[screen], grid[rest]]), np.concatenate([first, scorer(grid[rest])])

    def _refine(self, scorer: _Scorer, grid: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates after the refinement steps: owner kind (m,), position (m, 3), probability (m,)."""
        cfg = self.config
        starts = [(slot, index) for slot, c in enumerate(self.landmarks)
                  for index in _separated_top(grid, coarse[:, c], cfg.candidates, 2 * cfg.coarse_step_mm)]
        owners = np.array([slot for slot, _ in starts])
        rows = np.array([index for _, index in starts])
        classes = np.asarray(self.landmarks)[owners]
        return self._climb(scorer, owners, grid[rows], coarse[rows, classes])

    def _vote(self, scorer: _Scorer, voter: _Scorer, points: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates from the voting network: the ``points`` (a grid over the body) vote for every kind
        within reach; each kind's ``vote_candidates`` densest vote clusters start the refinement."""
        cfg = self.config
        cube = _cube_offsets(cfg.vote_local_mm, cfg.refine_steps_mm[0])
        voter.bar.total = len(points) + len(self.landmarks) * cfg.vote_candidates * (len(cube) + self._climb_patches())
        out = voter(points)
        kinds = out.shape[1] // 4
        presence, offsets = out[:, :kinds], out[:, kinds:].reshape(len(out), kinds, 3)
        owners, starts = [], []
        for slot, v in enumerate(self.voter_index):
            said = presence[:, v] >= cfg.vote_min_presence
            if not said.any():  # nobody says it is near: the most confident point's vote, left to min_probability
                said = presence[:, v] == presence[:, v].max()
            centres, _ = cluster_votes(points[said] + offsets[said, v], presence[said, v], cfg.vote_radius_mm, cfg.vote_candidates)
            owners += [slot] * len(centres)
            starts.append(centres)
        owners, position = np.asarray(owners), np.concatenate(starts)
        # a cluster beyond the image edge (a landmark the scan cut off, or stray votes) starts at the nearest
        # voxel inside: every kind gets a scored position, and min_probability and the shape check decide
        size = np.asarray(geometry.size_ijk) - 1
        position = geometry.index_to_lps(np.clip(geometry.lps_to_index(position), 0, size))
        # the cube holds the cluster centre itself, so its best point is the start of the climb
        position, best = self._best_around(scorer, np.asarray(self.landmarks)[owners], position, cube)
        return self._climb(scorer, owners, position, best)

    def _climb(self, scorer: _Scorer, owners: np.ndarray, position: np.ndarray, best: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each candidate moves to the best of its 26 neighbours at each of ``refine_steps_mm`` while that beats it."""
        classes = np.asarray(self.landmarks)[owners]
        for step in self.config.refine_steps_mm:
            there, top = self._best_around(scorer, classes, position, _neighbour_offsets() * step)
            moved = top > best
            position = np.where(moved[:, None], there, position)
            best = np.where(moved, top, best)
        return owners, position, best

    def _centroid(self, scorer: _Scorer, owners: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Each candidate (m, 3) moved to the centroid of the cube points round it where its kind's probability
        is at least ``centroid_fraction`` of the cube's best, weighted by how far above that it is."""
        cube = self._centroid_offsets()
        if len(cube) <= 1:
            return position
        around, values, inside = self._scores_around(scorer, np.asarray(self.landmarks)[owners], position, cube)
        values[~inside] = 0.0
        weight = np.clip(values - self.config.centroid_fraction * values.max(axis=1, keepdims=True), 0.0, None)
        total = weight.sum(axis=1)
        centre = (weight[..., None] * around).sum(axis=1) / np.where(total > 0, total, 1.0)[:, None]
        return np.where(total[:, None] > 0, centre, position)

    @staticmethod
    def _scores_around(scorer: _Scorer, classes: np.ndarray, position: np.ndarray, offsets_mm: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The points ``position + offsets_mm`` round each candidate (m, c, 3), the probability of its class at
        each (m, c), and which of them lie inside the image (m, c)."""
        around = position[:, None, :] + offsets_mm[None]
        scores = scorer(around.reshape(-1, 3))
        values = scores[np.arange(len(scores)), classes.repeat(len(offsets_mm))].reshape(around.shape[:2])
        return around, values, scorer.geometry.contains_index(scorer.geometry.lps_to_index(around))

    @classmethod
    def _best_around(cls, scorer: _Scorer, classes: np.ndarray, position: np.ndarray, offsets_mm: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """For each candidate (m, 3), the best of ``position + offsets_mm`` (c, 3) for its class: position (m, 3)
        and probability (m,); points outside the image score -1 (never left for)."""
        around, values, inside = cls._scores_around(scorer, classes, position, offsets_mm)
        values[~inside] = -1.0
        choice = values.argmax(axis=1)
        rows = np.arange(len(choice))
        return around[rows, choice], values[rows, choice]

    def _choose(self, owners: np.ndarray, candidates: np.ndarray, peaks: np.ndarray, geometry: Geometry):
        """One candidate per kind: position (L, 3), probability, inconsistency (NaN without a shape model), found."""
        cfg = self.config
        pick = _best_per_owner(owners, peaks)
        eligible = peaks >= cfg.min_probability
        if self.shape is None:
            return candidates[pick], peaks[pick], np.full(len(pick), np.nan), eligible[pick]
        chosen, found = candidates[pick], eligible[pick]
        core = self._consistent_core(chosen, peaks[pick], found)
        if core.sum() >= MIN_CORE:
            found = core  # the first vote is among kinds that agree with each other, not among all the confident ones
        for _ in range(3):  # trust the consistent detections, then re-vote
            score = self.shape.inconsistency(candidates, owners, chosen, found)
            score[~eligible] = np.inf
            agrees = score <= cfg.max_inconsistency
            # the most probable candidate that agrees with the others; else the least inconsistent one
            pick = _best_per_owner(owners, np.where(agrees, peaks, -1.0 - np.minimum(score, 1e9)))
            chosen, found = candidates[pick], agrees[pick]
        predicted = self.shape.predicted(chosen, found)
        known = np.isfinite(predicted).all(axis=1)
        margin = cfg.outside_margin_mm / np.asarray(geometry.spacing_mm)
        ijk = geometry.lps_to_index(np.where(known[:, None], predicted, 0.0))
        inside = np.all((ijk >= -0.5 - margin) & (ijk <= np.asarray(geometry.size_ijk) - 0.5 + margin), axis=1)
        return chosen, peaks[pick], score[pick], found & (inside | ~known)


    def _consistent_core(self, chosen: np.ndarray, probability: np.ndarray, eligible: np.ndarray, seeds: int = 10) -> np.ndarray:
        """The largest set of kinds whose best candidates agree pairwise-in-median with each other (L,) bool.

        Grown greedily from each of the ``seeds`` most probable kinds, adding kinds in order of probability
        when they agree with the set so far; the largest set wins (ties: the more probable). Without it,
        a scan where most first guesses are wrong (real CT for a phantom-trained model) leaves every kind
        disagreeing with the crowd and nothing is found; with it, a few kinds that fit together anchor the rest.
        """
        order = [int(k) for k in np.argsort(-probability, kind="stable") if eligible[k]]
        best, best_key = np.zeros(len(chosen), bool), (0, 0.0)
        for seed in order[:seeds]:
            member = np.zeros(len(chosen), bool)
            member[seed] = True
            for k in order:
                if member[k]:
                    continue
                score = self.shape.inconsistency(chosen[k][None], np.array([k]), chosen, member)[0]
                member[k] = score <= self.config.max_inconsistency
            key = (int(member.sum()), float(probability[member].sum()))
            if key > best_key:
                best, best_key = member, key
        return best


@dataclass(frozen=True)
class _Net:
    """A network as the detector runs it: its patch geometry, normalisation and output head."""

    model: nn.Module
    spec: PatchSpec
    normaliser: Normaliser
    head: Callable[[torch.Tensor], torch.Tensor]


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=1)


def _voter_head(voter: OffsetVoter) -> Callable[[torch.Tensor], torch.Tensor]:
    """Presence probabilities (B, L), then offsets in mm (B, 3 L)."""
    def head(outputs: torch.Tensor) -> torch.Tensor:
        logits, offsets_mm = voter.split(outputs.float())
        return torch.cat([torch.sigmoid(logits), offsets_mm.reshape(len(outputs), -1)], dim=1)
    return head


class _Scorer:
    """A network's outputs for patches centred at LPS points, batched, cutting the next batch in a helper thread."""

    def __init__(self, detector: LandmarkDetector, net: _Net, volume_ijk: np.ndarray, geometry: Geometry, bar):
        self.detector, self.net, self.volume, self.geometry, self.bar = detector, net, volume_ijk, geometry, bar
        self.count = 0

    def _cut(self, centres: np.ndarray) -> torch.Tensor:
        planes = sample_planes(self.volume, self.geometry, centres, self.net.spec, fill_hu=AIR_HU)
        return self.net.normaliser(torch.from_numpy(planes)).contiguous(memory_format=torch.channels_last)

    def __call__(self, centres_lps_mm: np.ndarray) -> np.ndarray:
        size = self.detector.config.batch_size
        batches = [centres_lps_mm[i : i + size] for i in range(0, len(centres_lps_mm), size)]
        out = []
        with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
            pending = pool.submit(self._cut, batches[0]) if batches else None
            for number in range(len(batches)):
                x = pending.result()
                if number + 1 < len(batches):
                    pending = pool.submit(self._cut, batches[number + 1])
                x = to_device(x, self.detector.device)
                with autocast(self.detector.device):
                    out.append(self.net.head(self.net.model(x)).cpu().numpy())
                self.bar.update(len(x))
        self.count += len(centres_lps_mm)
        return np.concatenate(out) if out else np.zeros((0, len(self.detector.class_names)), dtype=np.float32)


def _inference_model(model: nn.Module) -> nn.Module:
    """An evaluation copy with batch norms folded into the convolutions, in channels-last layout.

    Same outputs up to float rounding, about 1.5x the patches per second on a CPU (`make bench`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # raised by torch's own imports
        from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    try:
        model = fuse(model)
    except Exception:  # noqa: BLE001 - a model fx cannot trace is still usable unfused
        pass
    return model.to(memory_format=torch.channels_last)


def _neighbour_offsets() -> np.ndarray:
    """The 26 unit offsets of a 3 x 3 x 3 neighbourhood, centre left out."""
    cube = np.stack(np.meshgrid(*[np.array([-1.0, 0.0, 1.0])] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    return cube[np.abs(cube).sum(axis=1) > 0]


def _body_grid(body, geometry: Geometry, step_mm: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The points (n, 3) of a ``step_mm`` grid that lie inside the body, and their lattice indices (n, 3)."""
    grid = grid_points(geometry, step_mm)
    cells = np.rint((grid - grid[0]) / step_mm).astype(int)
    inside = body.contains(grid)
    if not inside.any():
        raise ValueError(f"{name}: no grid point falls inside the body")
    return grid[inside], cells[inside]


def _cube_offsets(half_width_mm: float, step_mm: float) -> np.ndarray:
    """Offsets (c, 3) of a cubic lattice of ``step_mm`` reaching ``half_width_mm`` from its centre (the centre first)."""
    reach = int(np.floor(half_width_mm / step_mm + 1e-9))
    axis = np.arange(-reach, reach + 1) * step_mm
    cube = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return cube[np.argsort(np.abs(cube).sum(axis=1), kind="stable")]


def _separated_top(points: np.ndarray, score: np.ndarray, count: int, min_distance_mm: float) -> list[int]:
    """Indices of up to ``count`` highest scores whose points lie ``min_distance_mm`` apart."""
    chosen: list[int] = []
    for index in np.argsort(-score, kind="stable")[: max(50, 20 * count)]:
        if all(np.linalg.norm(points[index] - points[j]) >= min_distance_mm for j in chosen):
            chosen.append(int(index))
            if len(chosen) == count:
                break
    return chosen


def _best_per_owner(owners: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Row of the highest score of each owner, ordered by owner."""
    order = np.lexsort((-score, owners))
    first = np.r_[True, owners[order][1:] != owners[order][:-1]]
    return order[first]
