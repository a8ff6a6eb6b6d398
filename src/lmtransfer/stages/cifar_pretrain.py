"""`lmtransfer cifar-pretrain`: pre-train the same mini-VGG on CIFAR-10 (the natural-image baseline)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_device, stage_params, write_headline, writes
from lmtransfer.transfer.cifar import CifarConfig

COMMAND = Command(
    name="cifar-pretrain",
    help="pre-train the same mini-VGG on CIFAR-10 (the natural-image baseline)",
    description=(
        "Train mini-VGG with the landmark CNN's architecture on CIFAR-10. Images come from cifar.source in "
        "params.yaml, $LMTRANSFER_CIFAR10, or torchvision's download, in that order."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (sections cifar, pretrain)"),
        option("--model", help="checkpoint to write (default models/cifar_cnn.pt)"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


@dataclass(frozen=True)
class CifarParams:
    """The ``cifar`` section of params.yaml."""

    cifar: CifarConfig = field(default_factory=CifarConfig)
    model: Path = Path("models/cifar_cnn.pt")
    reports: Path = Path("reports/cifar")


@dataclass(frozen=True)
class Paths(StagePaths):
    source: Path | None = reads()
    model: Path = writes()
    reports: Path = writes()


def paths(params, args) -> Paths:
    """CIFAR-10 in (``cifar.source``; the environment variable or a download otherwise); the CIFAR-CNN and its reports out."""
    source = params.cifar.cifar.source
    return Paths(Path(source) if source else None, Path(args.model or params.cifar.model), Path(params.cifar.reports))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.models.checkpoint import ModelCard, save_checkpoint
    from lmtransfer.transfer.cifar import LABEL_NAMES, load_cifar10, pretrain_cifar

    params = stage_params(args)
    stage, arch, where = params.cifar, params.pretrain.train, paths(params, args)
    data = load_cifar10(stage.cifar)
    print(f"CIFAR-10 from {data.origin}: {len(data.y_train)} training, {len(data.y_test)} test images")
    architecture = {"depth": arch.depth, "width": arch.width, "convs_per_block": arch.convs_per_block,
                    "feature_dim": arch.feature_dim, "dropout": arch.dropout}
    start = time.perf_counter()
    model, history, test_top1 = pretrain_cifar(data, architecture, stage.cifar, device=stage_device(args, params))
    model_path = where.model
    model_path.parent.mkdir(parents=True, exist_ok=True)
    card = ModelCard(architecture="mini-VGG", config=dict(model.config), class_names=tuple(LABEL_NAMES[: model.config["n_classes"]]),
                     normalisation={"input": "uint8 RGB", "maps_to": [-1, 1]},
                     pretraining=f"CIFAR-10 ({len(data.y_train)} images from {data.origin})")
    save_checkpoint(model_path, model, card)
    reports = where.reports
    reports.mkdir(parents=True, exist_ok=True)
    history.to_csv(reports / "history.csv", index=False, float_format="%.5f")
    metrics = {"test_top1": round(test_top1, 4), "train_images": int(len(data.y_train)), "epochs": int(len(history)),
               "best_val_top1": round(float(history["val_top1"].max()), 4), "source": data.origin}
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_headline(metrics, {"top1": "test_top1", "epochs": "epochs"}, reports / HEADLINE_JSON)
    print(f"CIFAR-CNN: test top-1 {test_top1:.4f} after {len(history)} epochs ({time.perf_counter() - start:.0f} s); {model_path}")
    return 0
