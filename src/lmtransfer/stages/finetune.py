"""`lmtransfer finetune`: fine-tune the whole CNN on the lesion patches (LM-CNN vs CIFAR-CNN vs scratch)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from lmtransfer.stages import HEADLINE_JSON, Command, option, stage_device, stage_params, write_headline
from lmtransfer.stages.transfer import Paths as TransferPaths
from lmtransfer.stages.transfer import feature_paths, lesion_tags

# what `dvc metrics show` prints: the fine-tuned test AUC per initialisation (intervals in metrics.json)
HEADLINE = {"auc_lm": "lm_test_auc", "auc_cifar": "cifar_test_auc", "auc_scratch": "scratch_test_auc"}

COMMAND = Command(
    name="finetune",
    help="fine-tune the whole CNN on the lesion patches (LM-CNN vs CIFAR-CNN vs scratch)",
    description=(
        "Beyond the research: train all layers with a new 2-class head on the first split of `transfer` (its whole"
        " training set and its few-label subsets finetune.few_label_cases), keeping"
        " the epoch of the best validation AUC (the set's own validation cases, or a share of the training cases);"
        " test AUC with case-bootstrap intervals; MLflow experiment transfer-finetune."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (sections finetune, transfer)"),
        option("--lesions", help="lesion patch folder"),
        option("--out", help="report folder"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


@dataclass(frozen=True)
class FinetuneParams:
    """The ``finetune`` section of params.yaml."""

    enabled: bool = True
    sources: tuple[str, ...] = ("lm", "cifar", "scratch")
    max_epochs: int = 15
    patience: int = 4
    epoch_patches: int = 4000
    lr: float = 0.0005
    weight_decay: float = 0.0001
    batch_size: int = 64
    few_label_cases: tuple[int, ...] = (10,)   # also fine-tune on these few-label subsets of the split (as transfer's)
    val_fraction: float = 0.15        # of the training cases, for early stopping on validation AUC (a set's own validation split wins)
    out_dir: Path = Path("reports/finetune")
    seed: int = 0
    track: bool = True


def paths(params, args) -> TransferPaths:
    """What the transfer stage reads (lesion set, LM-CNN, CIFAR-CNN) in; ``finetune.out_dir`` out."""
    return feature_paths(params, Path(args.out or params.finetune.out_dir), args.lesions)


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.tracking import make_tracker, model_file
    from lmtransfer.transfer.finetune import run_finetune
    from lmtransfer.transfer.lesions import load_lesion_set

    params = stage_params(args)
    stage, transfer, where = params.finetune, params.transfer, paths(params, args)
    where = replace(where, lm_model=model_file(where.lm_model))
    out_dir = where.out_dir
    if not stage.enabled:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps({"enabled": False}) + "\n")
        write_headline({}, HEADLINE, out_dir / HEADLINE_JSON)
        print("fine-tuning is off (finetune.enabled: false)")
        return 0
    metrics = run_finetune(load_lesion_set(where.lesions), stage, transfer.boost, where.lm_model, where.cifar_model, out_dir,
                           tags=lesion_tags(where), tracker=make_tracker(stage.track), threads=params.compute.threads,
                           device=stage_device(args, params))
    write_headline(metrics, HEADLINE, out_dir / HEADLINE_JSON)
    print("fine-tuned test AUC: " + ", ".join(f"{s} {metrics[f'{s}_test_auc']:.3f}" for s in stage.sources))
    for n in stage.few_label_cases:
        if f"{stage.sources[0]}_test_auc_at_{n}_cases" in metrics:
            print(f"  on {n} training cases: " + ", ".join(f"{s} {metrics[f'{s}_test_auc_at_{n}_cases']:.3f}" for s in stage.sources))
    return 0
