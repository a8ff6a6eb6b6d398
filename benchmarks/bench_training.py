"""mini-VGG training and inference throughput (patches/s), side by side.

The default pre-training model (width 16, depth 3, 32 px, batch 128) with 1 thread and with all
cores, and a wider model (width 32) for the price of `make tune` searching widths. Then the
same model on every device present (CPU, CUDA, MPS) through the route `compute.device` takes
(mixed precision and channels-last on CUDA), with the ratio to the CPU.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from lmtransfer.devices import autocast, grad_scaler, optimiser_step, prepare, to_device
from lmtransfer.models.mini_vgg import MiniVGG


def train_rate(width: int, depth: int, threads: int, batch: int = 128, steps: int = 20) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MiniVGG(n_classes=61, depth=depth, width=width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 61, (batch,))
    model.train()
    for step in range(steps + 3):  # 3 warm-up steps
        if step == 3:
            start = time.perf_counter()
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return steps * batch / (time.perf_counter() - start)


def infer_rate(width: int, depth: int, threads: int, batch: int = 512, steps: int = 10) -> float:
    torch.set_num_threads(threads)
    model = MiniVGG(n_classes=61, depth=depth, width=width).eval()
    x = torch.randn(batch, 3, 32, 32)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
    return steps * batch / (time.perf_counter() - start)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_rates(device: torch.device, batch: int = 128, steps: int = 20) -> tuple[float, float]:
    """Training and inference patches/s of the default model on ``device``, as the pipeline runs it."""
    torch.manual_seed(0)
    model = prepare(MiniVGG(n_classes=61, depth=3, width=16), device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = grad_scaler(device)
    x, y = to_device(torch.randn(batch, 3, 32, 32), device), to_device(torch.randint(0, 61, (batch,)), device)
    model.train()
    for step in range(steps + 3):
        if step == 3:
            _synchronise(device)
            start = time.perf_counter()
        optimiser.zero_grad()
        with autocast(device):
            loss = nn.functional.cross_entropy(model(x), y)
        optimiser_step(loss, optimiser, scaler)
    _synchronise(device)
    train = steps * batch / (time.perf_counter() - start)
    model.eval()
    x = to_device(torch.randn(512, 3, 32, 32), device)
    with torch.inference_mode(), autocast(device):
        model(x)
        _synchronise(device)
        start = time.perf_counter()
        for _ in range(10):
            model(x)
        _synchronise(device)
    return train, 10 * 512 / (time.perf_counter() - start)


def devices_present() -> list[torch.device]:
    found = [torch.device("cpu")]
    found += [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append(torch.device("mps"))
    return found


def main() -> dict:
    cores = torch.get_num_threads()
    rows = {
        "train, width 16 depth 3, 1 thread": train_rate(16, 3, 1),
        f"train, width 16 depth 3, {cores} threads": train_rate(16, 3, cores),
        f"train, width 32 depth 3, {cores} threads": train_rate(32, 3, cores),
        f"inference, width 16 depth 3, {cores} threads": infer_rate(16, 3, cores),
    }
    torch.set_num_threads(cores)
    print("mini-VGG patches/s (32 px, 3 planes, 61 classes):")
    for name, value in rows.items():
        print(f"  {name:45s} {value:8.0f}")
    names = list(rows)
    print(f"  ratio {cores} threads / 1 thread: {rows[names[1]] / rows[names[0]]:.2f}x; "
          f"width 16 / width 32: {rows[names[1]] / rows[names[2]]:.2f}x; inference / training: {rows[names[3]] / rows[names[1]]:.1f}x")
    print("per device (width 16 depth 3; the compute.device route):")
    cpu_train = cpu_infer = None
    for device in devices_present():
        train, infer = device_rates(device)
        cpu_train, cpu_infer = (train, infer) if device.type == "cpu" else (cpu_train, cpu_infer)
        print(f"  {str(device):8s} train {train:9.0f}/s ({train / cpu_train:6.1f}x CPU)   inference {infer:9.0f}/s "
              f"({infer / cpu_infer:6.1f}x CPU)")
        rows[f"{device} train"], rows[f"{device} inference"] = train, infer
    torch.set_num_threads(cores)
    return rows


if __name__ == "__main__":
    main()
