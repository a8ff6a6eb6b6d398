"""`lmtransfer transfer`: frozen CNN features + AdaBoost: AUC vs number of weak learners, LM-CNN vs CIFAR-CNN vs random."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmtransfer.stages import Command, option, stage_device, stage_params
from lmtransfer.transfer.boosting import BoostConfig

COMMAND = Command(
    name="transfer",
    help="frozen CNN features + AdaBoost: AUC vs number of weak learners, LM-CNN vs CIFAR-CNN vs random",
    description=(
        "For each feature source, AdaBoost with decision stumps on the training cases; AUC of every ensemble "
        "size on the test cases, over repeated case splits (mean, 95 % interval); paired case bootstrap of LM"
        " vs CIFAR; the figure, tables and MLflow runs (experiment transfer-auc)."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section transfer)"),
        option("--lesions", help="lesion patch folder"),
        option("--out", help="report folder"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


@dataclass(frozen=True)
class TransferParams:
    """The ``transfer`` section of params.yaml."""

    boost: BoostConfig = field(default_factory=BoostConfig)
    lesions: Path = Path("data/lesion_patches")
    lm_model: Path = Path("models/lm_cnn_lm60.pt")
    cifar_model: Path = Path("models/cifar_cnn.pt")
    sources: tuple[str, ...] = ("lm", "cifar", "random")
    roc_sizes: tuple[int, ...] = (5, 50)
    out_dir: Path = Path("reports/transfer")
    track: bool = True


def lesion_tags(lesion_dir: Path, transfer) -> dict:
    """Provenance tags of a transfer run: the lesion set's hash, and each model's path and hash."""
    from lmtransfer.transfer.experiment import model_hash
    from lmtransfer.transfer.lesions import set_hash

    tags = {"lesion_set_hash": set_hash(lesion_dir)}
    for name, path in (("lm_model", transfer.lm_model), ("cifar_model", transfer.cifar_model)):
        if Path(path).exists():
            tags[f"{name}_hash"], tags[name] = model_hash(Path(path)), str(path)
    return tags


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.tracking import make_tracker
    from lmtransfer.transfer.experiment import run_transfer
    from lmtransfer.transfer.features import load_sources
    from lmtransfer.transfer.lesions import load_lesion_set

    everything = stage_params(args)
    params = everything.transfer
    lesion_dir = Path(args.lesions or params.lesions)
    lesions = load_lesion_set(lesion_dir)
    models = load_sources(params.lm_model, params.cifar_model, tuple(params.sources), params.boost.seed)
    metrics = run_transfer(lesions, models, params.boost, Path(args.out or params.out_dir), everything.compute.threads,
                           make_tracker(params.track), lesion_tags(lesion_dir, params), tuple(params.roc_sizes),
                           device=stage_device(args, everything))
    n = params.boost.n_weak_learners
    for name in params.sources:
        parts = [f"{k}: {metrics[f'{name}_auc_at_{k}']:.3f}" for k in ("5", "10", "50", "all") if f"{name}_auc_at_{k}" in metrics]
        print(f"{name:7s} AUC " + ", ".join(parts) + f" (all = {n} weak learners)")
    if "lm_vs_cifar_significant_sizes" in metrics:
        print(f"LM vs CIFAR significant at weak learners: {metrics['lm_vs_cifar_significant_sizes'] or 'none'}")
    return 0
