"""Frozen CNN features: the penultimate layer of a pre-trained mini-VGG for every lesion patch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lmtransfer.devices import prepare, to_device, torch_threads
from lmtransfer.models.checkpoint import load_checkpoint
from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.transfer.handcrafted import HandcraftedSource


def random_cnn(config: dict, seed: int) -> MiniVGG:
    """The control: the same architecture with random initial weights (no pre-training)."""
    torch.manual_seed(seed)
    return MiniVGG(**config)


SOURCES = ("lm", "cifar", "random", "handcrafted")


def load_sources(lm_model: Path, cifar_model: Path, sources: tuple[str, ...], seed: int) -> dict[str, MiniVGG | HandcraftedSource]:
    """Feature extractors by name: ``lm`` (landmark CNN), ``cifar`` (CIFAR-CNN), ``random`` (control),
    ``handcrafted`` (the sceptic's baseline: no network, :mod:`lmtransfer.transfer.handcrafted`)."""
    models: dict[str, MiniVGG | HandcraftedSource] = {}
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown feature sources {sorted(unknown)}; use {', '.join(SOURCES)}")
    for name, path in (("lm", lm_model), ("cifar", cifar_model)):
        if name in sources:
            if not Path(path).exists():
                raise FileNotFoundError(f"{path}: {name} model not found; run `dvc repro` (its stage) first")
            models[name] = load_checkpoint(Path(path))[0]
    if "random" in sources:
        # the control has the architecture of the networks it controls for, asked for or not
        reference = next(iter(models.values()), None)
        if reference is None and Path(lm_model).exists():
            reference = load_checkpoint(Path(lm_model))[0]
        config = dict(reference.config) if reference is not None else {"n_classes": 2}
        models["random"] = random_cnn(config, 1000 + seed)  # a seed no pre-training run uses
    if "handcrafted" in sources:
        models["handcrafted"] = HandcraftedSource()
    return {name: models[name] for name in sources}


LAYERS = ("penultimate", "multilayer")


def multilayer_features(model: MiniVGG, x: torch.Tensor) -> torch.Tensor:
    """Every block's output averaged over the plane (after its max-pool), then the penultimate layer:
    ``(B, sum of block channels + feature_dim)``; early blocks see edges and blobs, late ones shapes."""
    pooled = []
    h = x
    for layer in model.blocks:
        h = layer(h)
        if isinstance(layer, torch.nn.MaxPool2d):
            pooled.append(h.mean(dim=(2, 3)))
    return torch.cat(pooled + [model.feature(h)], dim=1)


def extract_features(model: MiniVGG | HandcraftedSource, x: np.ndarray, batch_size: int = 512, threads: int = 2,
                     device="cpu", layers: str = "penultimate") -> np.ndarray:
    """Features of patches ``x`` (n, 3, P, P) already in [-1, 1], float32, computed on ``device`` (full
    precision: the features feed AdaBoost as they are): ``layers="penultimate"`` the network's
    ``features`` (n, feature_dim), ``"multilayer"`` :func:`multilayer_features`. A source that is not
    a network computes its own."""
    if layers not in LAYERS:
        raise ValueError(f"feature layers {layers!r}: use {' or '.join(LAYERS)}")
    if isinstance(model, HandcraftedSource):
        return model(x)
    device = torch.device(device)
    model = prepare(model, device).eval()
    out = []
    with torch_threads(threads), torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = to_device(torch.from_numpy(np.array(x[start : start + batch_size], dtype=np.float32)), device)
            out.append((model.features(batch) if layers == "penultimate" else multilayer_features(model, batch)).cpu().numpy())
    features = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    if not np.isfinite(features).all():
        raise ValueError("the CNN produced NaN or infinite features: check the patches and the checkpoint")
    return features
