"""The natural-image baseline: the same mini-VGG pre-trained on CIFAR-10 (the research's CIFAR-CNN).

Where the images come from, in order: ``cifar.source`` in ``params.yaml``, the environment
variable ``LMTRANSFER_CIFAR10``, then torchvision's download into ``cifar.download_dir``. Each
may be a ``.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``, images uint8
``(n, 3, 32, 32)``), the official ``cifar-10-batches-py`` folder (or its parent), or the official
``cifar-10-python.tar.gz``. The official batches are Python pickles; they are read with an
unpickler that admits only NumPy arrays, so a doctored batch cannot run code.
"""

from __future__ import annotations

import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmtransfer.training.data import PatchSet
from lmtransfer.training.train import TrainConfig, predict, train_model

ENV_VAR = "LMTRANSFER_CIFAR10"
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class CifarSourceError(FileNotFoundError):
    """No usable CIFAR-10 source; the message says how to provide one."""


@dataclass(frozen=True)
class CifarData:
    x_train: np.ndarray  # uint8 (n, 3, 32, 32)
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    origin: str


@dataclass(frozen=True)
class CifarConfig:
    """``cifar`` in ``params.yaml``."""

    source: str = "../shared/data/cifar10_subset.npz"
    download: bool = True
    download_dir: Path = Path("data/cifar10")
    max_epochs: int = 30
    patience: int = 5
    val_fraction: float = 0.1       # of the training images, for early stopping
    batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 0.0005
    seed: int = 0
    threads: int = 2


class _BatchUnpickler(pickle.Unpickler):
    """Reads a CIFAR-10 batch without running code: a batch is a dict of bytes, lists of ints and
    one uint8 array, so only NumPy's array reconstruction is admitted; any other global (a
    ``__reduce__`` payload such as ``os.system``) is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in a protocol-2 pickle
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}: a CIFAR-10 batch holds only arrays, lists and bytes")


def _unpack(handle, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels of one pickled CIFAR-10 batch (``name`` for errors)."""
    try:
        batch = _BatchUnpickler(handle, encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
        return np.asarray(data, np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels, np.uint8)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CifarSourceError(f"{name}: not a CIFAR-10 python batch ({exc})") from exc


def _read_batches(folder: Path) -> CifarData:
    def read(name):
        with open(folder / name, "rb") as handle:
            return _unpack(handle, str(folder / name))

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return CifarData(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), x_test, y_test, str(folder))


def _read_tar(path: Path) -> CifarData:
    arrays = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name.startswith(("data_batch_", "test_batch")):
                arrays[name] = _unpack(tar.extractfile(member), f"{path}:{member.name}")
    missing = ({f"data_batch_{i}" for i in range(1, 6)} | {"test_batch"}) - set(arrays)
    if missing:
        raise CifarSourceError(f"{path}: not the CIFAR-10 python archive (missing {sorted(missing)})")
    train = [arrays[f"data_batch_{i}"] for i in range(1, 6)]
    return CifarData(np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), *arrays["test_batch"], str(path))


def read_cifar10(path: Path) -> CifarData:
    """Read CIFAR-10 from a ``.npz``, the ``cifar-10-batches-py`` folder (or its parent) or the ``.tar.gz``."""
    path = Path(path)
    if not path.exists():
        raise CifarSourceError(f"{path}: no such file or folder")
    if path.is_dir():
        for folder in (path, path / "cifar-10-batches-py"):
            if (folder / "data_batch_1").exists():
                return _read_batches(folder)
        raise CifarSourceError(f"{path}: no CIFAR-10 batches (data_batch_1 ... test_batch) in this folder")
    if path.name.endswith((".tar.gz", ".tgz")):
        return _read_tar(path)
    with np.load(path, allow_pickle=False) as data:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(data.files)
        if missing:
            raise CifarSourceError(f"{path}: missing arrays {sorted(missing)}")
        x_train, x_test = data["x_train"], data["x_test"]
        if x_train.ndim != 4 or x_train.shape[1:] != (3, 32, 32):
            if x_train.shape[1:] == (32, 32, 3):  # channels-last, as Keras stores it
                x_train, x_test = x_train.transpose(0, 3, 1, 2), x_test.transpose(0, 3, 1, 2)
            else:
                raise CifarSourceError(f"{path}: x_train has shape {x_train.shape}, expected (n, 3, 32, 32)")
        return CifarData(np.ascontiguousarray(x_train, np.uint8), data["y_train"].astype(np.int64).ravel(),
                         np.ascontiguousarray(x_test, np.uint8), data["y_test"].astype(np.int64).ravel(), str(path))


def load_cifar10(cfg: CifarConfig) -> CifarData:
    """The first source that exists: params path, ``$LMTRANSFER_CIFAR10``, torchvision download."""
    tried = []
    for candidate, where in ((cfg.source, "cifar.source in params.yaml"), (os.environ.get(ENV_VAR), f"${ENV_VAR}")):
        if candidate:
            if Path(candidate).exists():
                return read_cifar10(Path(candidate))
            tried.append(f"{where} = {candidate} (not found)")
    if cfg.download:
        try:
            from torchvision.datasets import CIFAR10
        except ImportError:
            tried.append("torchvision download (torchvision is not installed)")
        else:
            try:
                CIFAR10(str(cfg.download_dir), train=True, download=True)
                return _read_batches(Path(cfg.download_dir) / "cifar-10-batches-py")
            except Exception as exc:  # noqa: BLE001 - reported with the other attempts
                tried.append(f"torchvision download into {cfg.download_dir} ({exc})")
    raise CifarSourceError(
        "no CIFAR-10 images for the natural-image baseline. Tried: " + "; ".join(tried or ["nothing"]) + ". Provide one of: "
        f"`cifar.source` in params.yaml or ${ENV_VAR} pointing at cifar-10-python.tar.gz, the cifar-10-batches-py folder or a "
        ".npz (x_train, y_train, x_test, y_test); or install torchvision on a machine with internet access (cifar.download: true)."
    )


def pretrain_cifar(data: CifarData, arch: dict, cfg: CifarConfig, progress=print, device="cpu"):
    """Train mini-VGG (architecture ``arch``: depth, width, convs_per_block, feature_dim, dropout) on CIFAR-10.

    Returns the model, its history and the test accuracy. Images are scaled [0, 255] -> [-1, 1]
    (the range lesion patches are given to every feature extractor).
    """
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(data.y_train))
    n_val = max(1, int(round(cfg.val_fraction * len(order))))
    val_idx, train_idx = order[:n_val], order[n_val:]
    classes = LABEL_NAMES[: int(max(data.y_train.max(), data.y_test.max())) + 1]
    train = PatchSet(data.x_train[train_idx], data.y_train[train_idx].astype(np.int64), None, classes)
    val = PatchSet(data.x_train[val_idx], data.y_train[val_idx].astype(np.int64), None, classes)
    train_cfg = TrainConfig(
        depth=arch["depth"], width=arch["width"], convs_per_block=arch["convs_per_block"], feature_dim=arch["feature_dim"],
        dropout=arch["dropout"], hu_low=0.0, hu_high=255.0, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
        max_epochs=cfg.max_epochs, patience=cfg.patience, epoch_patches=len(train_idx), intensity_scale=0.1,
        intensity_shift_hu=12.0, seed=cfg.seed, threads=cfg.threads,
    )
    model, history = train_model(train, val, train_cfg, progress=progress, device=device)
    scores = predict(model.to(device), data.x_test, train_cfg.normaliser, device=device)
    model = model.cpu()
    test_top1 = float((scores.argmax(1) == data.y_test).mean())
    return model, history, test_top1
