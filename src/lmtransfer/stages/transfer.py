"""`lmtransfer transfer`: frozen CNN features + AdaBoost: AUC vs number of weak learners, LM-CNN vs CIFAR-CNN vs random."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_device, stage_params, write_headline, writes
from lmtransfer.transfer.boosting import BoostConfig

# what `dvc metrics show` prints: the AUCs at 10 weak learners, where the research sees landmark pre-training help
# most (every size, with intervals and p-values, in metrics.json beside it); `auc_lm` and `auc_cifar` are also the
# fine-tuning stage's columns, on its own row
HEADLINE = {"auc_lm": "lm_auc_at_10", "auc_cifar": "cifar_auc_at_10", "auc_random": "random_auc_at_10",
            "lm-cifar": "lm_minus_cifar_at_10"}

COMMAND = Command(
    name="transfer",
    help="frozen CNN features + AdaBoost: AUC vs number of weak learners, LM-CNN vs CIFAR-CNN vs random",
    description=(
        "For each feature source, AdaBoost with decision stumps on the training cases; AUC of every ensemble "
        "size on the test cases, over repeated cross-validation (mean, 95 % case-bootstrap interval); paired tests of LM"
        " against every other source with the minimal detectable difference; few-label curves; summary.md, the"
        " figures, tables and MLflow runs (experiment transfer-auc)."
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
    lm_model: Path = Path("models/lm_cnn_lm60.pt")   # any landmark CNN checkpoint (the lesion set and CIFAR-CNN come from their stages)
    sources: tuple[str, ...] = ("lm", "lm_native", "cifar", "random", "handcrafted")
    roc_sizes: tuple[int, ...] = (5, 50)
    out_dir: Path = Path("reports/transfer")
    track: bool = True


@dataclass(frozen=True)
class Paths(StagePaths):
    lesions: Path = reads()
    lm_model: Path = reads()
    cifar_model: Path = reads()
    out_dir: Path = writes()


def paths(params, args) -> Paths:
    """The lesion set (``lesion.out_dir``), the LM-CNN (``transfer.lm_model``) and the CIFAR-CNN
    (``cifar.model``) in; the report folder out."""
    return feature_paths(params, Path(args.out or params.transfer.out_dir), args.lesions)


def feature_paths(params, out_dir: Path, lesions: str | None = None) -> Paths:
    """The inputs of every stage that learns on the lesion set from the two CNNs (transfer, finetune)."""
    return Paths(Path(lesions or params.lesion.out_dir), Path(params.transfer.lm_model), Path(params.cifar.model), Path(out_dir))


def lesion_tags(where: Paths) -> dict:
    """Provenance tags of a transfer run: the lesion set's hash, and each model's path and hash."""
    from lmtransfer.transfer.experiment import model_hash
    from lmtransfer.transfer.lesions import set_hash

    tags = {"lesion_set_hash": set_hash(where.lesions)}
    for name, path in (("lm_model", where.lm_model), ("cifar_model", where.cifar_model)):
        if Path(path).exists():
            tags[f"{name}_hash"], tags[name] = model_hash(Path(path)), str(path)
    return tags


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.tracking import make_tracker, model_file
    from lmtransfer.transfer.experiment import run_transfer
    from lmtransfer.transfer.features import load_sources
    from lmtransfer.transfer.lesions import load_lesion_set

    everything = stage_params(args)
    params, where = everything.transfer, paths(everything, args)
    where = replace(where, lm_model=model_file(where.lm_model))  # a file, or models:/lm-cnn@champion from the registry
    lesions = load_lesion_set(where.lesions)
    models = load_sources(where.lm_model, where.cifar_model, tuple(params.sources), params.boost.seed, lesions.info.get("native"))
    metrics = run_transfer(lesions, models, params.boost, where.out_dir, everything.compute.threads,
                           make_tracker(params.track), lesion_tags(where), tuple(params.roc_sizes),
                           device=stage_device(args, everything))
    write_headline(metrics, HEADLINE, where.out_dir / HEADLINE_JSON)
    n = params.boost.n_weak_learners
    for name in params.sources:
        parts = [f"{k}: {metrics[f'{name}_auc_at_{k}']:.3f}" for k in ("5", "10", "50", "all") if f"{name}_auc_at_{k}" in metrics]
        print(f"{name:7s} AUC " + ", ".join(parts) + f" (all = {n} weak learners)")
    for key, label in (("verdict", "verdict"), ("power_statement", "power"), ("sceptic_verdict", "sceptic's baseline")):
        if key in metrics:
            print(f"{label}: {metrics[key]}")
    if "lm_vs_cifar_significant_sizes" in metrics:
        print(f"LM vs CIFAR significant at weak learners: {metrics['lm_vs_cifar_significant_sizes'] or 'none'}")
    return 0
