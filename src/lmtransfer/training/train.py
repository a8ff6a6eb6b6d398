"""Training loop for the landmark CNN on CPU: class-balanced draws, augmentation, early stopping."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from typing import Protocol
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from lmtransfer.devices import autocast, grad_scaler, optimiser_step, prepare, to_device, torch_threads
from lmtransfer.models.mini_vgg import MiniVGG
from lmtransfer.training.data import Normaliser, PatchSet, augment_intensity, balanced_weights
from lmtransfer.training.randomise import Randomisation, randomise


@dataclass(frozen=True)
class TrainConfig:
    """Network and optimisation settings (``pretrain`` in ``params.yaml``)."""

    depth: int = 3
    width: int = 16
    convs_per_block: int = 2
    feature_dim: int = 256
    dropout: float = 0.3
    hu_low: float = -1000.0
    hu_high: float = 1000.0
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 25
    patience: int = 5
    epoch_patches: int = 8000
    intensity_scale: float = 0.05
    intensity_shift_hu: float = 20.0
    # domain randomisation (training/randomise.py): share of patches, band-remapping strength, blur, noise
    randomise_probability: float = 0.0
    randomise_strength: float = 1.0
    randomise_blur_px: float = 1.0
    randomise_noise_hu: float = 25.0
    seed: int = 0
    threads: int = 2

    @property
    def randomisation(self) -> Randomisation:
        return Randomisation(self.randomise_probability, self.randomise_strength, self.randomise_blur_px, self.randomise_noise_hu)

    @property
    def normaliser(self) -> Normaliser:
        return Normaliser(self.hu_low, self.hu_high)

    def build(self, n_classes: int, pixels: int) -> MiniVGG:
        return MiniVGG(n_classes, self.depth, self.width, self.convs_per_block, 3, pixels, self.feature_dim, self.dropout)


def predict(model: nn.Module, x_hu: np.ndarray, normaliser: Normaliser, batch_size: int = 512,
            device: torch.device | str = "cpu") -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` for int16 HU patches ``(n, 3, P, P)``, computed on ``device``
    (where the model is)."""
    batches = (normaliser(torch.from_numpy(np.array(x_hu[start : start + batch_size]))) for start in range(0, len(x_hu), batch_size))
    return _probabilities(model, batches, device)


def _probabilities(model: nn.Module, batches, device: torch.device | str) -> np.ndarray:
    """Class probabilities of network inputs given batch by batch."""
    device = torch.device(device)
    model.eval()
    out = []
    with torch.inference_mode(), autocast(device):
        for batch in batches:
            out.append(torch.softmax(model(to_device(batch, device)).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def train_model(
    train: PatchSet | PatchStream,
    val: PatchSet,
    cfg: TrainConfig,
    model: MiniVGG | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: Callable[[str], None] | None = print,
    device: torch.device | str = "cpu",
    select_on: str = "top1",
) -> tuple[MiniVGG, pd.DataFrame]:
    """Train with early stopping on validation top-1 (``select_on="auc"``: on the validation ROC AUC of
    class 1, for two classes) on ``cfg.threads`` CPU threads; returns the best model (on the CPU) and
    the per-epoch history.

    ``train``: patches in memory (class-balanced draws of ``cfg.epoch_patches`` per epoch) or a
    stream that cuts them on the fly (:class:`lmtransfer.sampling.queue.QueuePatches`).

    ``on_epoch(epoch, values)`` is called after every epoch (MLflow logging, Optuna pruning);
    it may raise to stop training. ``device``: where the network runs (see :mod:`lmtransfer.devices`);
    the draws and augmentation stay on the CPU, so every device sees the same batches.
    """
    device = torch.device(device)
    # the seed below and the thread count hold inside this call only: the caller's RNG and threads are left as they were
    with torch_threads(cfg.threads), torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        return _train(train, val, cfg, model, on_epoch, progress, device, select_on)


class PatchStream(Protocol):
    """Training patches cut while training: HU planes ``(b, 3, P, P)`` and labels ``(b,)`` per batch."""

    class_names: list[str]

    def batches(self, n_patches: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def _cached_batches(train: PatchSet, cfg: TrainConfig, generator: torch.Generator, device: torch.device):
    """Class-balanced draws from patches held in memory (the patch cache route)."""
    weights = torch.from_numpy(balanced_weights(train.y))
    x_train, y_train = torch.from_numpy(np.array(train.x)), torch.from_numpy(np.array(train.y))
    if device.type == "cuda":
        x_train = x_train.pin_memory()

    def batches(n_patches: int, batch_size: int):
        draws = torch.multinomial(weights, n_patches, replacement=True, generator=generator)
        for batch in draws.split(batch_size):
            yield x_train[batch], y_train[batch]

    return batches


def _train(train, val: PatchSet, cfg: TrainConfig, model: MiniVGG | None, on_epoch, progress, device: torch.device, select_on: str):
    if select_on not in ("top1", "auc"):
        raise ValueError(f"select_on {select_on!r}: use top1 or auc")
    if select_on == "auc" and (len(train.class_names) != 2 or len(np.unique(val.y)) != 2):
        raise ValueError("selecting on validation AUC needs two classes, both present in the validation patches")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    n_classes = len(train.class_names)
    pixels = val.x.shape[-1]
    model = prepare(model if model is not None else cfg.build(n_classes, pixels), device)
    scaler = grad_scaler(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=cfg.max_epochs)
    loss_fn = nn.CrossEntropyLoss()
    epoch_batches = _cached_batches(train, cfg, generator, device) if isinstance(train, PatchSet) else train.batches
    normalise, randomisation = cfg.normaliser, cfg.randomisation
    val_inputs = normalise(torch.from_numpy(np.array(val.x)))   # once, not every epoch: the same values batch by batch
    best_score, best_state, best_epoch, history = -1.0, None, 0, []
    for epoch in range(1, cfg.max_epochs + 1):
        start = time.perf_counter()
        model.train()
        total_loss = correct = seen = 0
        for x_hu, y_cpu in epoch_batches(cfg.epoch_patches, cfg.batch_size):
            if randomisation.enabled:   # off: nothing drawn, so the generator's stream is what it always was
                x_hu = randomise(x_hu, generator, randomisation)
            x = augment_intensity(x_hu, generator, cfg.intensity_scale, cfg.intensity_shift_hu)
            y = to_device(y_cpu, device)
            with autocast(device):
                logits = model(to_device(normalise(x), device))
                loss = loss_fn(logits, y)
            optimiser.zero_grad(set_to_none=True)
            optimiser_step(loss, optimiser, scaler)
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        scheduler.step()
        train_seconds = time.perf_counter() - start
        scores = _probabilities(model, val_inputs.split(512), device)
        val_loss = float(nn.functional.nll_loss(torch.log(torch.from_numpy(scores).clamp_min(1e-12)), torch.as_tensor(np.array(val.y))))
        val_top1 = float((scores.argmax(1) == val.y).mean())
        values = {"train_loss": total_loss / seen, "train_top1": correct / seen, "val_loss": val_loss, "val_top1": val_top1,
                  "patches_per_second": seen / train_seconds, "lr": scheduler.get_last_lr()[0]}
        if select_on == "auc":
            values["val_auc"] = float(roc_auc_score(val.y, scores[:, 1]))
        history.append({"epoch": epoch, **values})
        if progress:
            progress(f"  epoch {epoch:3d}  loss {values['train_loss']:.3f}  train top-1 {values['train_top1']:.3f}  "
                     f"val top-1 {val_top1:.3f}" + (f"  val AUC {values['val_auc']:.3f}" if "val_auc" in values else "")
                     + f"  ({values['patches_per_second']:.0f} patches/s)")
        score = values["val_auc"] if select_on == "auc" else val_top1
        if score > best_score:
            best_score, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
        if on_epoch is not None:
            on_epoch(epoch, values)
        if epoch - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    # patches/s went to ``on_epoch`` and the console; the history is a result and stays free of timing
    frame = pd.DataFrame(history).drop(columns="patches_per_second")
    frame["best"] = frame["epoch"] == best_epoch
    return model, frame
