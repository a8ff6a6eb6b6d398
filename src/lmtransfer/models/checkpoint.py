"""Checkpoints: weights plus a typed model card, saved atomically, loaded without running code.

The card says everything a user of the weights needs: which architecture (a name in
:data:`ARCHITECTURES`, so a second network is one registry line), its constructor arguments,
the class names, the patch geometry and intensity normalisation it was trained with, and
hashes of its training data. Files hold tensors and plain containers only and are read with
``torch.load(weights_only=True)``: a checkpoint from anywhere cannot run code while it is read.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmtransfer.models.mini_vgg import MiniVGG, OffsetVoter

ARCHITECTURES: dict[str, type[nn.Module]] = {"mini-VGG": MiniVGG, "mini-VGG-voter": OffsetVoter}


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelCard:
    """What the weights are and how to feed them.

    ``patch``: ``fov_mm``, ``pixels`` (2.5D planes, trilinear, isotropic in mm; absent for
    networks trained on images). ``normalisation``: ``hu_window`` ``[low, high]`` mapped to
    [-1, 1], or ``input`` for 8-bit images. ``training_data``: hashes of what it learnt from.
    """

    architecture: str
    config: dict[str, Any]
    class_names: tuple[str, ...]
    normalisation: dict[str, Any]
    patch: dict[str, Any] | None = None
    training_data: dict[str, str] = field(default_factory=dict)
    pretraining: str = ""
    features: str = "MiniVGG.features(x): penultimate layer, size feature_dim"

    @property
    def fov_mm(self) -> float:
        return float(self._patch("fov_mm"))

    @property
    def pixels(self) -> int:
        return int(self._patch("pixels"))

    @property
    def hu_window(self) -> tuple[float, float]:
        if "hu_window" not in self.normalisation:
            raise CheckpointError(f"the model card has no HU window (normalisation {self.normalisation}): not a CT model")
        low, high = self.normalisation["hu_window"]
        return float(low), float(high)

    def _patch(self, key: str):
        if not self.patch or key not in self.patch:
            raise CheckpointError(f"the model card has no patch {key}: the model was not trained on CT patches")
        return self.patch[key]

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (what ``weights_only`` loading admits, and JSON for MLflow)."""
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "model card") -> ModelCard:
        missing = [k for k in ("architecture", "config", "class_names", "normalisation") if k not in values]
        if missing:
            raise CheckpointError(f"{where}: the model card lacks {missing}")
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        known["class_names"] = tuple(str(c) for c in known["class_names"])
        return cls(**known)


def build_model(card: ModelCard) -> nn.Module:
    """An untrained network of the card's architecture and configuration."""
    if card.architecture not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {card.architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[card.architecture](**card.config)


def save_checkpoint(path: Path, model: nn.Module, card: ModelCard) -> None:
    """Write weights and card; atomic, so a kill leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp_{os.getpid()}_{path.name}")
    # through a file object: torch names the archive's root folder after a path, so a temporary
    # name would change the bytes; a file object gets a fixed root and the same bytes every run
    with open(temporary, "wb") as handle:
        torch.save({"state_dict": model.state_dict(), "card": card.to_dict()}, handle)
    os.replace(temporary, path)


def load_checkpoint(path: Path) -> tuple[nn.Module, ModelCard]:
    """The model (weights loaded, on the CPU) and its card, from a file :func:`save_checkpoint` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike: the file is unusable
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a loadable lmtransfer checkpoint (refused or unreadable: {reason[:300]})") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("card"), dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not an lmtransfer checkpoint (expected a dict with 'state_dict' and 'card')")
    card = ModelCard.from_dict(payload["card"], str(path))
    try:
        model = build_model(card)
        model.load_state_dict(payload["state_dict"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the model card ({str(exc).splitlines()[0][:300]})") from exc
    return model, card
