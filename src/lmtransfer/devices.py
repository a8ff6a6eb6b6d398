"""Where the networks run: ``compute.device`` in params.yaml (``auto | cpu | cuda | cuda:N | mps``).

On CUDA, training uses mixed precision (bfloat16 where the GPU supports it, else float16 with a
gradient scaler) and channels-last memory; batches move with ``non_blocking``. The CPU path does
exactly what it did before there was a device setting, so CPU results stay the same bytes.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import torch

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ComputeParams:
    """The ``compute`` section of params.yaml."""

    device: str = "auto"
    threads: int = 2           # CPU threads of the networks (every stage; tune divides them among its workers)

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.match(self.device):
            raise ValueError(f"compute.device: expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}")


def resolve_device(name: str) -> torch.device:
    """The device for ``name``; ``auto`` picks CUDA, then Apple's MPS, then the CPU.

    Raises:
        ValueError: an unknown name, or a device this machine does not have (the message says why).
    """
    name = str(name).strip().lower()
    if not DEVICE_PATTERN.match(name):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    mps = getattr(torch.backends, "mps", None)
    mps_available = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA device on this machine "
                             "(a CPU-only build, or no GPU); use compute.device: auto or cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    if name == "mps" and not mps_available:
        raise ValueError("device 'mps' asked for, but Apple's Metal backend is not available here; use auto or cpu")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(threads: int):
    """PyTorch's intra-op CPU threads set to ``threads`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: torch.device):
    """Mixed precision on CUDA (bfloat16 where supported, else float16); nothing elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def grad_scaler(device: torch.device):
    """A gradient scaler for float16 training on CUDA; None where it is not needed."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.amp.GradScaler("cuda")
    return None


def optimiser_step(loss: torch.Tensor, optimiser: torch.optim.Optimizer, scaler) -> None:
    """Back-propagate ``loss`` and step, through the gradient scaler when there is one."""
    if scaler is None:
        loss.backward()
        optimiser.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimiser)
    scaler.update()


def prepare(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``; channels-last on CUDA (convolutions run faster that way there)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device`` (asynchronous from pinned memory on CUDA; the same tensor on the CPU)."""
    if device.type == "cpu":
        return x
    return x.to(device, non_blocking=True)
