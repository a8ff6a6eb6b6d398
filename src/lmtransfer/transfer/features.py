"""Frozen CNN features: the penultimate layer of a pre-trained mini-VGG for every lesion patch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lmtransfer.devices import prepare, to_device, torch_threads
from lmtransfer.models.checkpoint import ModelCard, load_checkpoint
from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.transfer.handcrafted import HandcraftedSource


def random_cnn(config: dict, seed: int) -> MiniVGG:
    """The control: the same architecture with random initial weights (no pre-training)."""
    torch.manual_seed(seed)
    return MiniVGG(**config)


SOURCES = ("lm", "lm_native", "cifar", "random", "handcrafted")
NATIVE = "_native"   # a source with this suffix reads the lesion set's native patches (LesionSet.native)


def check_native(card: ModelCard, native: dict | None, model_path: Path) -> None:
    """The lesion set's native patches must be cut at the model's own field of view and, for CT, its HU window."""
    if native is None:
        raise ValueError("source lm_native: the lesion set has no native patches; set lesion.native_fov_mm to the landmark "
                         "CNN's field of view (patches.fov_mm) and re-run lesion-patches, or drop lm_native from transfer.sources (a MedMNIST set "
                         "has no physical field of view to cut at)")
    if abs(float(native["fov_mm"]) - card.fov_mm) > 1e-6:
        raise ValueError(f"{model_path}: trained at a {card.fov_mm:g} mm field of view, but the lesion set's native patches are "
                         f"cut at {float(native['fov_mm']):g} mm (lesion.native_fov_mm)")
    if "hu_window" in native and tuple(map(float, native["hu_window"])) != card.hu_window:
        raise ValueError(f"{model_path}: trained on the HU window {list(card.hu_window)}, but the lesion set's native patches use "
                         f"{native['hu_window']} (native_hu_window of the lesion source)")


def source_patches(lesions, name: str) -> np.ndarray:
    """The patches source ``name`` sees: the native ones for ``*_native`` sources, else the fixed ones."""
    if name.endswith(NATIVE):
        if lesions.native is None:
            raise ValueError(f"source {name}: the lesion set has no native patches (lesion.native_fov_mm is 0)")
        return lesions.native
    return lesions.x


def load_sources(lm_model: Path, cifar_model: Path, sources: tuple[str, ...], seed: int,
                 native: dict | None = None) -> dict[str, MiniVGG | HandcraftedSource]:
    """Feature extractors by name: ``lm`` (landmark CNN), ``lm_native`` (the same network, fed the
    patches cut at its own field of view and normalisation: ``native`` describes them), ``cifar``
    (CIFAR-CNN), ``random`` (control), ``handcrafted`` (the sceptic's baseline: no network,
    :mod:`lmtransfer.transfer.handcrafted`)."""
    models: dict[str, MiniVGG | HandcraftedSource] = {}
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown feature sources {sorted(unknown)}; use {', '.join(SOURCES)}")
    for name, path in (("lm", lm_model), ("cifar", cifar_model)):
        if name in sources or (name == "lm" and "lm" + NATIVE in sources):
            if not Path(path).exists():
                raise FileNotFoundError(f"{path}: {name} model not found; run `dvc repro` (its stage) first")
            models[name], card = load_checkpoint(Path(path))
            if name == "lm" and "lm" + NATIVE in sources:
                check_native(card, native, Path(path))
                models["lm" + NATIVE] = models[name]
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
