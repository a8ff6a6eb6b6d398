"""`lmtransfer pretrain`: train and evaluate the landmark CNN for N landmark classes + background."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from lmtransfer.stages import HEADLINE_JSON, Command, StagePaths, option, reads, stage_device, stage_params, write_headline, writes
from lmtransfer.training.train import TrainConfig

COMMAND = Command(
    name="pretrain",
    help="train and evaluate the landmark CNN for N landmark classes + background",
    description=(
        "Train mini-VGG on the patch cache for the first N landmark kinds (seeded order) plus the background "
        "class, with early stopping on validation cases; report test-case metrics, confusion matrix, gallery "
        "and learning curves; log the run and the model (registered as lm-cnn) to MLflow. --init widens an "
        "earlier, smaller model (class expansion)."
    ),
    options=(
        option("--params", default="params.yaml", help="parameter file (section pretrain)"),
        option("--landmarks", type=int, required=True, help="number of landmark classes (the +1 background is added)"),
        option("--init", help="checkpoint of a smaller step to start from"),
        option("--name", help="step name (default lmN)"),
        option("--cache", help="patch cache folder"),
        option("--splits", help="case splits JSON"),
        option("--model", help="checkpoint to write (default: pretrain.models_dir/lm_cnn_NAME.pt)"),
        option("--reports", help="report folder (default: pretrain.reports_dir/NAME)"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


@dataclass(frozen=True)
class PretrainParams:
    """The ``pretrain`` section of params.yaml."""

    train: TrainConfig = field(default_factory=TrainConfig)
    class_order_seed: int = 0
    loader: str = "cache"                         # cache: patches cut once (`patches` stage); queue: cut while training
    samples_per_volume: int = 64                  # queue: patches cut per visit to a case
    champion: str = "lm60"                        # the step whose registered model gets the alias `champion`
    # epochs of the named steps: the cosine schedule runs its whole length (no early stopping) and the best
    # validation epoch is kept; steps not named train up to max_epochs with early stopping (patience)
    step_epochs: dict[str, int] = field(default_factory=dict)
    models_dir: Path = Path("models")             # each step writes lm_cnn_<name>.pt here
    reports_dir: Path = Path("reports/pretrain")  # and its reports into <name>/ here
    track: bool = True

    def __post_init__(self) -> None:
        if self.loader not in ("cache", "queue"):
            raise ValueError(f"pretrain.loader must be cache or queue, got {self.loader!r}")
        if not isinstance(self.step_epochs, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1 for k, v in self.step_epochs.items()):
            raise ValueError(f"pretrain.step_epochs must map step names to whole numbers of epochs >= 1, got {self.step_epochs!r}")

    def step_train(self, name: str) -> TrainConfig:
        """The training settings of step ``name``: ``step_epochs`` replaces its schedule length and patience."""
        epochs = self.step_epochs.get(name)
        return self.train if epochs is None else replace(self.train, max_epochs=epochs, patience=epochs)

    def model_path(self, name: str) -> Path:
        """The checkpoint of step ``name`` (``lm20``, ``lm60``, ...)."""
        return Path(self.models_dir) / f"lm_cnn_{name}.pt"


@dataclass(frozen=True)
class Paths(StagePaths):
    cache: Path | None = reads()
    manifest: Path | None = reads()
    splits: Path = reads()
    init: Path | None = reads()
    model: Path = writes()
    reports: Path = writes()


# what `dvc metrics show` prints for a pre-training step (all of it: reports/pretrain/<step>/metrics.json)
HEADLINE = {"top1": "test_top1", "epochs": "epochs"}


def step_name(args) -> str:
    return args.name or f"lm{args.landmarks}"


def paths(params, args) -> Paths:
    """The patch cache (or, with ``loader: queue``, ingest's manifest), the splits and ``--init`` in;
    this step's checkpoint and reports out."""
    name = step_name(args)
    queue = params.pretrain.loader == "queue"
    return Paths(None if queue else Path(args.cache or params.patches.out_dir), params.ingest.manifest if queue else None,
                 Path(args.splits or params.split.out),
                 Path(args.init) if args.init else None, Path(args.model or params.pretrain.model_path(name)),
                 Path(args.reports or Path(params.pretrain.reports_dir) / name))


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.sampling.cache import file_hash
    from lmtransfer.tracking import make_tracker
    from lmtransfer.training.pretrain import REGISTERED_MODEL, run_step

    params = stage_params(args)
    device = stage_device(args, params)  # a missing GPU is named before any work
    where, stage = paths(params, args), params.pretrain
    splits = json.loads(where.splits.read_text())
    name = step_name(args)
    if stage.loader == "queue":
        import pandas as pd

        from lmtransfer.training.pretrain import queue_step_data
        from lmtransfer.io.manifest import read_manifest

        data = queue_step_data(read_manifest(where.manifest), splits, args.landmarks, stage.class_order_seed, params.patches.patch,
                               stage.train.seed, stage.samples_per_volume)
        tags = {"data_hash": file_hash(where.manifest), "loader": "queue"}
    else:
        if not (where.cache / "patches.npy").exists():
            raise FileNotFoundError(f"{where.cache}: no patch cache; run `lmtransfer patches` first")
        data = where.cache
        cache_info = json.loads((where.cache / "cache.json").read_text())
        tags = {"data_hash": cache_info["manifest_hash"], "patch_cache_key": cache_info["key"]}
    tracker = make_tracker(stage.track)
    result = run_step(
        name, args.landmarks, data, splits, params.patches.patch, stage.step_train(name), stage.class_order_seed,
        where.reports, where.model, where.init, tracker=tracker, device=device,
        tags={**tags, "splits_hash": file_hash(where.splits)},
    )
    write_headline(json.loads((where.reports / "metrics.json").read_text()), HEADLINE, where.reports / HEADLINE_JSON)
    if tracker.enabled and name == stage.champion:
        tracker.set_alias(REGISTERED_MODEL, "champion", result.run_id)
        print(f"{REGISTERED_MODEL}@champion -> this run's model (models:/{REGISTERED_MODEL}@champion)")
    print(f"{name}: test top-1 {result.test['top1']:.4f}, top-5 {result.test['top5']:.4f}, balanced {result.test['balanced_accuracy']:.4f} "
          f"(best validation top-1 {result.val_top1:.4f}, {result.epochs} epochs, {result.seconds:.0f} s)")
    return 0
