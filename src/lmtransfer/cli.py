"""The ``lmtransfer`` command: one subcommand per pipeline job; the logic lives in importable modules."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
import time
from dataclasses import replace
from pathlib import Path

from lmtransfer import __version__


def _params(args):
    from lmtransfer.config import load_params

    return load_params(args.params)


def cmd_phantom_ct(args) -> int:
    from lmtransfer.phantoms.torso_ct import case_id, generate_dataset, write_index

    params = _params(args).phantom_ct
    cfg = params.phantom
    if args.n_cases is not None:
        cfg = replace(cfg, n_cases=args.n_cases)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if args.spacing_inplane_mm is not None:
        cfg = replace(cfg, spacing_inplane_mm=args.spacing_inplane_mm)
    out_dir = Path(args.out or params.out_dir)
    workers = args.workers or params.workers
    start = time.perf_counter()
    table = generate_dataset(cfg, out_dir, workers=workers, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    print(f"{len(table)} cases in {out_dir} ({elapsed:.1f} s); "
          f"landmarks inside the image per case: {table['landmarks_in_image'].min()}-{table['landmarks_in_image'].max()} of 64")
    if args.preview:
        import numpy as np
        import SimpleITK as sitk

        from lmtransfer.phantoms.preview import save_preview

        for index in params.preview_cases:
            if index >= cfg.n_cases:
                continue
            cid = case_id(index)
            meta = json.loads((out_dir / "meta" / f"{cid}.json").read_text())
            visible = {k: np.array(v["lps_mm"]) for k, v in meta["landmarks"].items() if v["in_image"]}
            image = sitk.ReadImage(str(out_dir / "images" / f"{cid}.nii.gz"))
            path = save_preview(image, visible, out_dir / "previews" / f"{cid}.png", title=f"{cid} ({meta['phase']} phase)")
            print(f"preview: {path}")
    write_index(out_dir, cfg.n_cases)
    return 0


def cmd_ingest(args) -> int:
    from lmtransfer.io.manifest import build_manifest, write_outputs

    params = _params(args).ingest
    images = Path(args.images or params.images)
    landmarks = [Path(p) for p in (args.landmarks or params.landmarks)]
    out_dir = Path(args.out or params.out_dir)
    verify = params.verify_voxels if args.verify is None else args.verify
    manifest, report = build_manifest(images, landmarks, verify_voxels=verify, workers=args.workers or params.workers,
                                      progress=not args.quiet, max_voxels=params.max_voxels)
    summary = write_outputs(manifest, report, out_dir)
    print(f"manifest: {out_dir / 'manifest.csv'} ({summary['cases']} cases, {summary['landmarks']} landmarks, "
          f"{summary['landmark_kinds']} kinds, {summary['outside_image']} outside the image)")
    print(f"report: {out_dir / 'ingest_report.csv'} ({summary['errors']} errors, {summary['warnings']} warnings)")
    for row in report.rows[:20]:
        print(f"  {row['severity']}: {row['file']}: {row['problem']}")
    if len(report.rows) > 20:
        print(f"  ... {len(report.rows) - 20} more in the report")
    strict = params.strict if args.strict is None else args.strict
    return 1 if strict and report.n_errors else 0


def cmd_patches(args) -> int:
    import pandas as pd

    from lmtransfer.sampling.cache import build_patch_cache, file_hash, split_cases

    params = _params(args)
    stage = params.patches
    manifest_path = Path(args.manifest or stage.manifest)
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: manifest not found; run `lmtransfer ingest` first")
    manifest = pd.read_csv(manifest_path)
    out_dir = Path(args.out or stage.out_dir)
    start = time.perf_counter()
    build_patch_cache(manifest, file_hash(manifest_path), stage.patch, out_dir, workers=args.workers or stage.workers, progress=not args.quiet)
    splits = split_cases(sorted(manifest.loc[manifest["in_image"].astype(bool), "case"].unique()), params.split.fractions, params.split.seed)
    split_path = Path(args.splits or params.split.out)
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split_path.write_text(json.dumps(splits, indent=1) + "\n")
    index = pd.read_csv(out_dir / "index.csv")
    print(f"patch cache: {out_dir} ({len(index)} patches, {index['name'].nunique()} names, "
          f"{time.perf_counter() - start:.1f} s); splits: {split_path} "
          f"({len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])} cases)")
    return 0


def cmd_tune(args) -> int:
    from lmtransfer.tuning.apply import apply_best
    from lmtransfer.tracking import make_tracker
    from lmtransfer.tuning.search import TuneInputs, run_study

    params = _params(args)
    cfg = params.tune
    overrides = {k: v for k, v in {"n_trials": args.n_trials, "timeout_s": args.timeout_s, "storage": args.storage,
                                    "study_name": args.study_name}.items() if v is not None}
    cfg = replace(cfg, **overrides)
    manifest = Path(params.patches.manifest)
    split_path = Path(params.split.out)
    for needed in (manifest, split_path):
        if not needed.exists():
            raise FileNotFoundError(f"{needed}: not found; run `dvc repro patches` first (make tune does)")
    inputs = TuneInputs(manifest, json.loads(split_path.read_text()), params.patches.patch, params.pretrain.train,
                        params.pretrain.class_order_seed, reuse_caches=(Path(params.patches.out_dir),))
    summary = run_study(cfg, inputs, workers=args.workers, tracker=make_tracker(params.pretrain.track))
    print(f"trials: {summary['trials']} ({summary['complete']} complete, {summary['pruned']} pruned, {summary['failed']} failed); "
          f"reports in {cfg.reports}")
    if "best_params" not in summary:
        print("no complete trial yet: params.yaml unchanged")
        return 0
    print(f"best: trial {summary['best_trial']}, validation top-1 {summary['best_val_top1']:.4f}, {summary['best_params']}")
    if cfg.apply_best and not args.dry_run:
        changes = apply_best(Path(args.params), summary["best_params"])
        changed = {k: v for k, v in changes.items() if v[0] != v[1]}
        print(f"{args.params}: " + (", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) if changed else "already the best setting")
              + "; `dvc repro` retrains with it, `dvc params diff` shows the change")
    return 0


def cmd_pretrain(args) -> int:
    from lmtransfer.sampling.cache import file_hash
    from lmtransfer.tracking import make_tracker
    from lmtransfer.training.pretrain import run_step

    params = _params(args)
    cache_dir = Path(args.cache or params.patches.out_dir)
    split_path = Path(args.splits or params.split.out)
    if not (cache_dir / "patches.npy").exists():
        raise FileNotFoundError(f"{cache_dir}: no patch cache; run `lmtransfer patches` first")
    splits = json.loads(split_path.read_text())
    name = args.name or f"lm{args.landmarks}"
    cache_info = json.loads((cache_dir / "cache.json").read_text())
    result = run_step(
        name, args.landmarks, cache_dir, splits, params.patches.patch, params.pretrain.train, params.pretrain.class_order_seed,
        Path(args.reports or f"reports/pretrain/{name}"), Path(args.model or f"models/lm_cnn_{name}.pt"),
        Path(args.init) if args.init else None, tracker=make_tracker(params.pretrain.track),
        tags={"data_hash": cache_info["manifest_hash"], "patch_cache_key": cache_info["key"], "splits_hash": file_hash(split_path)},
    )
    print(f"{name}: test top-1 {result.test['top1']:.4f}, top-5 {result.test['top5']:.4f}, balanced {result.test['balanced_accuracy']:.4f} "
          f"(best validation top-1 {result.val_top1:.4f}, {result.epochs} epochs, {result.seconds:.0f} s)")
    return 0


def cmd_realism(args) -> int:
    from lmtransfer.phantoms.realism import compare

    phantom = Path(args.phantom)
    metas = sorted((phantom / "meta").glob("case_*.json"))
    chosen = []
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        if meta["phase"] == args.phase:
            cid = meta["case"]
            chosen.append((phantom / "images" / f"{cid}.nii.gz", phantom / "labels" / f"{cid}.nii.gz"))
        if len(chosen) >= args.cases:
            break
    if not chosen:
        print(f"no phantom cases in {args.phase} phase under {phantom}", file=sys.stderr)
        return 2
    table = compare(Path(args.real_dicom), Path(args.real_seg), chosen, Path(args.out))
    summary = table.assign(source=table["source"].where(table["source"] == "real CT", "phantom"))
    summary = summary.groupby(["tissue", "source"])[["mean_hu", "std_hu", "noise_hu"]].mean().round(1)
    print(summary.to_string())
    print(f"written: {Path(args.out) / 'realism.csv'}, {Path(args.out) / 'realism_histograms.png'}")
    return 0


def cmd_phantom_mra(args) -> int:
    import numpy as np
    import SimpleITK as sitk

    from lmtransfer.phantoms.dataset import case_id
    from lmtransfer.phantoms.head_mra import generate_dataset, save_mip_preview

    params = _params(args).phantom_mra
    cfg = params.phantom if args.n_cases is None else replace(params.phantom, n_cases=args.n_cases)
    out_dir = Path(args.out or params.out_dir)
    start = time.perf_counter()
    table = generate_dataset(cfg, out_dir, workers=args.workers or params.workers, progress=not args.quiet)
    print(f"{len(table)} MRA cases in {out_dir} ({time.perf_counter() - start:.1f} s); {int((table['aneurysms'] > 0).sum())} with "
          f"aneurysms, {int(table['aneurysms'].sum())} aneurysms in all")
    if args.preview:
        for index in params.preview_cases:
            if index < cfg.n_cases:
                cid = case_id(index)
                meta = json.loads((out_dir / "meta" / f"{cid}.json").read_text())
                centres = np.array([a["centre_lps_mm"] for a in meta["aneurysm_list"]]).reshape(-1, 3)
                path = save_mip_preview(sitk.ReadImage(str(out_dir / "images" / f"{cid}.nii.gz")), centres,
                                        out_dir / "previews" / f"{cid}_mip.png", f"{cid}: {len(centres)} aneurysm(s) circled")
                print(f"preview: {path}")
    return 0


def cmd_vessels(args) -> int:
    from lmtransfer.transfer.vessels import extract_dataset

    params = _params(args).vessels
    images = Path(args.images or params.images)
    truth = Path(params.truth) if params.truth and Path(params.truth).exists() else None
    start = time.perf_counter()
    table = extract_dataset(images, Path(args.out or params.out_dir), params.vessel, truth, workers=args.workers or params.workers,
                            progress=not args.quiet)
    reports = Path(params.reports)
    reports.mkdir(parents=True, exist_ok=True)
    table.to_csv(reports / "extraction.csv", index=False)
    metrics = {"cases": len(table),
               "mean_vessel_voxels": round(float(table["vessel_voxels"].mean()), 1)}
    if "dice" in table:
        metrics.update(dice_mean=round(float(table["dice"].mean()), 4), dice_min=round(float(table["dice"].min()), 4),
                       dice_median=round(float(table["dice"].median()), 4))
        if "aneurysm_voxels_found" in table and table["aneurysm_voxels_found"].notna().any():
            metrics["aneurysm_voxels_found_mean"] = round(float(table["aneurysm_voxels_found"].mean()), 4)
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"vessel masks for {len(table)} cases" + (f"; Dice mean {metrics['dice_mean']:.3f} (min {metrics['dice_min']:.3f})"
                                                     if "dice_mean" in metrics else "")
          + f"; {reports / 'metrics.json'} ({time.perf_counter() - start:.0f} s)")
    return 0


def cmd_lesion_patches(args) -> int:
    from lmtransfer.transfer.datasets import luna_lesion_set, medmnist_lesion_set
    from lmtransfer.transfer.lesions import phantom_lesion_set, save_lesion_set

    params = _params(args).lesion
    source = args.source or params.source
    start = time.perf_counter()
    if source == "phantom":
        lesions = phantom_lesion_set(params.phantom_dir, params.vessels_dir, params.patch, params.workers, progress=not args.quiet)
    elif source == "medmnist":
        if not params.medmnist_npz:
            raise FileNotFoundError("lesion.source is medmnist but lesion.medmnist_npz is empty in params.yaml")
        lesions = medmnist_lesion_set(Path(params.medmnist_npz), params.medmnist_positive_labels, params.patch.pixels)
    else:
        if not (params.luna_dir and params.luna_candidates):
            raise FileNotFoundError("lesion.source is luna16: set lesion.luna_dir and lesion.luna_candidates in params.yaml")
        lesions = luna_lesion_set(Path(params.luna_dir), Path(params.luna_candidates), params.patch, tuple(params.luna_hu_window),
                                  params.luna_max_negatives_per_case)
    out = save_lesion_set(lesions, Path(args.out or params.out_dir))
    summary = lesions.summary()
    print(f"lesion patches ({source}): {summary['cases']} cases, {summary['lesion_patches']} lesion and {summary['normal_patches']} "
          f"normal patches (+{summary['augmented_lesion_copies']} augmented lesion copies), {summary['normal_by_kind']}; "
          f"{out} ({time.perf_counter() - start:.1f} s)")
    return 0


def cmd_cifar_pretrain(args) -> int:
    from lmtransfer.models.checkpoint import ModelCard, save_checkpoint
    from lmtransfer.transfer.cifar import LABEL_NAMES, load_cifar10, pretrain_cifar

    params = _params(args)
    stage, arch = params.cifar, params.pretrain.train
    data = load_cifar10(stage.cifar)
    print(f"CIFAR-10 from {data.origin}: {len(data.y_train)} training, {len(data.y_test)} test images")
    architecture = {"depth": arch.depth, "width": arch.width, "convs_per_block": arch.convs_per_block,
                    "feature_dim": arch.feature_dim, "dropout": arch.dropout}
    start = time.perf_counter()
    model, history, test_top1 = pretrain_cifar(data, architecture, stage.cifar)
    model_path = Path(args.model or stage.model)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    card = ModelCard(architecture="mini-VGG", config=dict(model.config), class_names=tuple(LABEL_NAMES[: model.config["n_classes"]]),
                     normalisation={"input": "uint8 RGB", "maps_to": [-1, 1]},
                     pretraining=f"CIFAR-10 ({len(data.y_train)} images from {data.origin})")
    save_checkpoint(model_path, model, card)
    reports = Path(stage.reports)
    reports.mkdir(parents=True, exist_ok=True)
    history.to_csv(reports / "history.csv", index=False, float_format="%.5f")
    metrics = {"test_top1": round(test_top1, 4), "train_images": int(len(data.y_train)), "epochs": int(len(history)),
               "best_val_top1": round(float(history["val_top1"].max()), 4), "source": data.origin}
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"CIFAR-CNN: test top-1 {test_top1:.4f} after {len(history)} epochs ({time.perf_counter() - start:.0f} s); {model_path}")
    return 0


def _lesion_tags(lesion_dir: Path, transfer) -> dict:
    from lmtransfer.transfer.experiment import model_hash
    from lmtransfer.transfer.lesions import set_hash

    tags = {"lesion_set_hash": set_hash(lesion_dir)}
    for name, path in (("lm_model", transfer.lm_model), ("cifar_model", transfer.cifar_model)):
        if Path(path).exists():
            tags[f"{name}_hash"], tags[name] = model_hash(Path(path)), str(path)
    return tags


def cmd_transfer(args) -> int:
    from lmtransfer.tracking import make_tracker
    from lmtransfer.transfer.experiment import run_transfer
    from lmtransfer.transfer.features import load_sources
    from lmtransfer.transfer.lesions import load_lesion_set

    params = _params(args).transfer
    lesion_dir = Path(args.lesions or params.lesions)
    lesions = load_lesion_set(lesion_dir)
    models = load_sources(params.lm_model, params.cifar_model, tuple(params.sources), params.boost.seed)
    metrics = run_transfer(lesions, models, params.boost, Path(args.out or params.out_dir), params.threads,
                           make_tracker(params.track), _lesion_tags(lesion_dir, params), tuple(params.roc_sizes))
    n = params.boost.n_weak_learners
    for name in params.sources:
        parts = [f"{k}: {metrics[f'{name}_auc_at_{k}']:.3f}" for k in ("5", "10", "50", "all") if f"{name}_auc_at_{k}" in metrics]
        print(f"{name:7s} AUC " + ", ".join(parts) + f" (all = {n} weak learners)")
    if "lm_vs_cifar_significant_sizes" in metrics:
        print(f"LM vs CIFAR significant at weak learners: {metrics['lm_vs_cifar_significant_sizes'] or 'none'}")
    return 0


def cmd_finetune(args) -> int:
    from lmtransfer.tracking import make_tracker
    from lmtransfer.transfer.finetune import run_finetune
    from lmtransfer.transfer.lesions import load_lesion_set

    params = _params(args)
    stage, transfer = params.finetune, params.transfer
    out_dir = Path(args.out or stage.out_dir)
    if not stage.enabled:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps({"enabled": False}) + "\n")
        print("fine-tuning is off (finetune.enabled: false)")
        return 0
    lesion_dir = Path(transfer.lesions)
    metrics = run_finetune(load_lesion_set(lesion_dir), stage, transfer.boost, transfer.lm_model, transfer.cifar_model, out_dir,
                           tags=_lesion_tags(lesion_dir, transfer), tracker=make_tracker(stage.track))
    print("fine-tuned test AUC: " + ", ".join(f"{s} {metrics[f'{s}_test_auc']:.3f}" for s in stage.sources))
    return 0


def cmd_detect(args) -> int:
    from lmtransfer.detection.detector import LandmarkDetector
    from lmtransfer.detection.run import DetectEvalParams, write_detections
    from lmtransfer.detection.shape import ShapeModel
    from lmtransfer.io.volumes import case_id_from_path

    stage = _params(args).detect if Path(args.params).exists() else DetectEvalParams()
    cfg = stage.detect
    if args.min_probability is not None:
        cfg = replace(cfg, min_probability=args.min_probability)
    model = Path(args.model or stage.model)
    shape_path = Path(args.shape or stage.shape_model)
    shape = None
    if not args.no_shape and (args.shape or shape_path.exists()):
        shape = ShapeModel.load(shape_path)
    elif not args.no_shape and not args.quiet:
        print(f"no landmark shape model at {shape_path} (`dvc repro detect_eval` fits it): each kind takes its most "
              "probable position, unchecked")
    detector = LandmarkDetector.from_checkpoint(model, cfg, shape)
    volume = Path(args.volume)
    result = detector.detect_file(volume, progress=not args.quiet)
    markups = Path(args.out or f"{case_id_from_path(volume)}_landmarks.mrk.json")
    csv_path = Path(args.csv) if args.csv else markups.with_name(markups.name.removesuffix(".mrk.json") + ".csv")
    write_detections(result, markups, csv_path)
    if not args.quiet:
        listing = result.table.sort_values(["found", "z_lps_mm"], ascending=False)  # head to feet, then the missing
        for row in listing.itertuples():
            where = f"({row.x_lps_mm:8.1f}, {row.y_lps_mm:8.1f}, {row.z_lps_mm:8.1f})" if row.found else "not found"
            print(f"  {row.landmark:30s} p={row.probability:.3f}  {where}")
    print(f"{volume}: {len(result.found)} of {len(result.table)} landmark kinds found (LPS mm) in {result.seconds:.1f} s "
          f"({result.patches_scored} patches); wrote {markups} and {csv_path}")
    return 0


def cmd_detect_eval(args) -> int:
    from lmtransfer.detection.run import run_detect_eval
    from lmtransfer.tracking import make_tracker

    stage = _params(args).detect
    overrides = {k: v for k, v in {"max_cases": args.max_cases, "out_dir": Path(args.out) if args.out else None}.items() if v is not None}
    metrics = run_detect_eval(replace(stage, **overrides), progress=not args.quiet, tracker=make_tracker(stage.track))
    print(f"detection on {metrics['cases']} {stage.split} cases: median error {metrics['median_error_mm']} mm, "
          f"90th percentile {metrics['p90_error_mm']} mm, detection rate {metrics['detection_rate']}, "
          f"false detections {metrics['false_detections']} of {metrics['landmarks_absent']} absent, "
          + (f"{metrics['seconds_per_volume']} s per volume" if "seconds_per_volume" in metrics else "every case kept from before"))
    print("worst five (median error, mm): " + ", ".join(f"{k} {v}" for k, v in metrics["worst_five"].items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmtransfer",
        description="Landmark pre-training of CNNs on 3D CT and transfer to lesion recognition. "
        "Each subcommand is one pipeline job; settings come from params.yaml, options override them.",
    )
    parser.add_argument("--version", action="version", version=f"lmtransfer {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print the full traceback too (also: LMTRANSFER_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "phantom-ct",
        help="generate the built-in torso CT phantom set (volumes in HU + 64 landmarks in LPS mm)",
        description="Render N procedural torso CT cases: int16 HU volumes (.nii.gz), tissue label maps, "
        "landmarks inside each image as 3D Slicer markups (LPS mm), per-case parameters. Deterministic from "
        "the seed; cases already written with the same settings are kept, so an interrupted run resumes.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (section phantom_ct)")
    p.add_argument("--n-cases", type=int, help="number of cases (default: params)")
    p.add_argument("--seed", type=int, help="random seed (default: params)")
    p.add_argument("--spacing-inplane-mm", type=float, help="in-plane spacing, e.g. 0.7 for clinical resolution")
    p.add_argument("--out", help="output folder (default: params)")
    p.add_argument("--workers", type=int, help="processes (default: params)")
    p.add_argument("--preview", action="store_true", help="also save PNGs of three planes with landmarks")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantom_ct)

    p = sub.add_parser(
        "ingest",
        help="validate volumes + landmark files and write the manifest and a problem report",
        description="Read volumes (NIfTI, NRRD, MHA/MHD, DICOM series folders) and landmark files (CSV "
        "case,landmark,x,y,z[,space]; 3D Slicer .mrk.json and .fcsv; VerSe *_ctd.json), convert every "
        "landmark to LPS mm and voxel index, and write manifest.csv, ingest_report.csv (every problem, "
        "with file and reason) and ingest_summary.json.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (section ingest)")
    p.add_argument("--images", help="folder of volumes / DICOM series folders")
    p.add_argument("--landmarks", nargs="+", help="landmark files or folders")
    p.add_argument("--out", help="output folder")
    p.add_argument("--workers", type=int, help="processes reading volumes")
    p.add_argument("--verify", dest="verify", action="store_true", default=None, help="read every voxel (finds truncated files, NaN)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="read headers only (fast)")
    p.add_argument("--strict", dest="strict", action="store_true", default=None, help="exit 1 when the report has errors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "patches",
        help="cut the 2.5D patch cache (landmarks + background) and the case splits",
        description="Cut every landmark-centred and background 2.5D patch (axial, coronal, sagittal planes, "
        "resampled to fov_mm) from the manifest's volumes once, into data/patches (int16 HU array + index), "
        "and fix the train/validation/test cases. Resumes per case.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (sections patches, split)")
    p.add_argument("--manifest", help="manifest.csv from `lmtransfer ingest`")
    p.add_argument("--out", help="cache folder")
    p.add_argument("--splits", help="where to write the case splits (JSON)")
    p.add_argument("--workers", type=int, help="processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_patches)

    p = sub.add_parser(
        "pretrain",
        help="train and evaluate the landmark CNN for N landmark classes + background",
        description="Train mini-VGG on the patch cache for the first N landmark kinds (seeded order) plus the "
        "background class, with early stopping on validation cases; report test-case metrics, confusion "
        "matrix, gallery and learning curves; log the run and the model (registered as lm-cnn) to MLflow. "
        "--init widens an earlier, smaller model (class expansion).",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (section pretrain)")
    p.add_argument("--landmarks", type=int, required=True, help="number of landmark classes (the +1 background is added)")
    p.add_argument("--init", help="checkpoint of a smaller step to start from")
    p.add_argument("--name", help="step name (default lmN)")
    p.add_argument("--cache", help="patch cache folder")
    p.add_argument("--splits", help="case splits JSON")
    p.add_argument("--model", help="checkpoint to write (default models/lm_cnn_NAME.pt)")
    p.add_argument("--reports", help="report folder (default reports/pretrain/NAME)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "tune",
        help="Optuna search of patch size, depth, width, learning rate and weight decay",
        description="Run or resume the Optuna study in `tune` of params.yaml: each trial trains briefly on the "
        "patch cache of its field of view (built on first use) and is scored by validation top-1; poor trials are "
        "pruned. Trials, plots and the fov x depth table go to reports/tune and MLflow (experiment landmark-tuning, "
        "one parent run per study, nested runs per trial). The best setting is written back into params.yaml.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (sections tune, patches, split, pretrain)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes on this machine (default 1)")
    p.add_argument("--n-trials", type=int, help="finished trials to reach (overrides tune.n_trials)")
    p.add_argument("--timeout-s", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--storage", help="Optuna RDB URL (overrides tune.storage), e.g. postgresql://user@host/db")
    p.add_argument("--study-name", help="study name (overrides tune.study_name)")
    p.add_argument("--dry-run", action="store_true", help="do not write the best setting into params.yaml")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "realism",
        help="compare phantom HU statistics, noise and texture with a real CT series",
        description="Per-tissue HU mean, spread, percentiles and noise of phantom cases (one contrast phase) "
        "next to a real CT series with a TotalSegmentator-style segmentation; writes a CSV and histograms.",
    )
    p.add_argument("--phantom", default="data/phantom_ct", help="phantom folder")
    p.add_argument("--real-dicom", default="../shared/data/real_ct_dicom", help="real CT (DICOM folder or volume)")
    p.add_argument("--real-seg", default="../shared/data/real_ct_dicom_seg.nii.gz", help="its label map")
    p.add_argument("--phase", default="portal", choices=["native", "arterial", "portal"], help="phantom phase to compare")
    p.add_argument("--cases", type=int, default=5, help="phantom cases to use")
    p.add_argument("--out", default="reports/realism", help="output folder")
    p.set_defaults(func=cmd_realism)

    p = sub.add_parser(
        "phantom-mra",
        help="generate the built-in head MRA phantom set (TOF-like volumes, artery tree, aneurysms)",
        description="Render N time-of-flight-MRA-like head volumes with a circle-of-Willis artery tree and saccular "
        "aneurysms at bifurcations: int16 images, label maps (vessel 5, aneurysm 6), aneurysm centres as 3D Slicer "
        "markups, look-alike sites (bifurcations, bends, crossings). Resumes; --preview writes MIP PNGs.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (section phantom_mra)")
    p.add_argument("--n-cases", type=int, help="number of cases (default: params)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--workers", type=int, help="processes")
    p.add_argument("--preview", action="store_true", help="also save maximum intensity projections")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantom_mra)

    p = sub.add_parser(
        "vessels",
        help="extract vessels from MRA volumes (Hessian vesselness + region growing) and score them",
        description="Multi-scale Frangi vesselness seeds grown to the half-maximum edge of the lumen; one mask per "
        "volume in data/vessels/masks, Dice against the phantom's vessel labels when present.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (section vessels)")
    p.add_argument("--images", help="folder of .nii.gz MRA volumes")
    p.add_argument("--out", help="output folder")
    p.add_argument("--workers", type=int, help="processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_vessels)

    p = sub.add_parser(
        "lesion-patches",
        help="cut lesion and normal 2.5D patches (MRA phantom, MedMNIST 3D .npz or LUNA16 folder)",
        description="Lesion (label 1) and normal look-alike (label 0) patches by case, in [-1, 1], cut by the same "
        "sampler as the landmark patches. Sources: the MRA phantom on its extracted vessels, a MedMNIST 3D .npz, "
        "or a LUNA16-style folder with a candidates CSV (lesion.source in params.yaml).",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (section lesion)")
    p.add_argument("--source", choices=["phantom", "medmnist", "luna16"], help="override lesion.source")
    p.add_argument("--out", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_lesion_patches)

    p = sub.add_parser(
        "cifar-pretrain",
        help="pre-train the same mini-VGG on CIFAR-10 (the natural-image baseline)",
        description="Train mini-VGG with the landmark CNN's architecture on CIFAR-10. Images come from cifar.source in "
        "params.yaml, $LMTRANSFER_CIFAR10, or torchvision's download, in that order.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (sections cifar, pretrain)")
    p.add_argument("--model", help="checkpoint to write (default models/cifar_cnn.pt)")
    p.set_defaults(func=cmd_cifar_pretrain)

    p = sub.add_parser(
        "transfer",
        help="frozen CNN features + AdaBoost: AUC vs number of weak learners, LM-CNN vs CIFAR-CNN vs random",
        description="For each feature source, AdaBoost with decision stumps on the training cases; AUC of every "
        "ensemble size on the test cases, over repeated case splits (mean, 95 % interval); paired case bootstrap of "
        "LM vs CIFAR; the figure, tables and MLflow runs (experiment transfer-auc).",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (section transfer)")
    p.add_argument("--lesions", help="lesion patch folder")
    p.add_argument("--out", help="report folder")
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser(
        "finetune",
        help="fine-tune the whole CNN on the lesion patches (LM-CNN vs CIFAR-CNN vs scratch)",
        description="Beyond the research: train all layers with a new 2-class head, same first split as `transfer`; "
        "test AUC with case-bootstrap intervals; MLflow experiment transfer-finetune.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (sections finetune, transfer)")
    p.add_argument("--out", help="report folder")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "detect",
        help="find every landmark kind of the landmark CNN in a CT volume; write 3D Slicer markups and CSV",
        description="Coarse grid inside the body, then refinement around the best responses; per landmark kind the "
        "best position (LPS mm) and its probability, or 'not found' under detect.min_probability.",
    )
    p.add_argument("volume", help="CT volume in HU: NIfTI, NRRD, MHA/MHD, or a DICOM series folder")
    p.add_argument("--model", help="landmark CNN checkpoint (default: detect.model, models/lm_cnn_lm60.pt)")
    p.add_argument("--out", help="markups file to write (default: <volume>_landmarks.mrk.json here)")
    p.add_argument("--csv", help="CSV to write (default: beside the markups file)")
    p.add_argument("--shape", help="landmark shape model that vets detections (default: detect.shape_model, "
                   "models/landmark_shape.json, when it exists)")
    p.add_argument("--no-shape", action="store_true", help="no shape check: each kind takes its most probable position")
    p.add_argument("--min-probability", type=float, help="threshold under which a landmark is 'not found'")
    p.add_argument("--params", default="params.yaml", help="parameter file (section detect; defaults when absent)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no per-landmark listing")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser(
        "detect-eval",
        help="detection on the held-out test cases: error in mm, detection rate, false detections, figures",
        description="Runs `detect` on every case of detect.split, scores against the landmark truth and logs the "
        "MLflow experiment landmark-detection. Resumes after an interruption.",
    )
    p.add_argument("--params", default="params.yaml", help="parameter file (section detect)")
    p.add_argument("--max-cases", type=int, help="evaluate only the first N cases of the split")
    p.add_argument("--out", help="report folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_detect_eval)
    return parser


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    from lmtransfer.config import ConfigError
    from lmtransfer.io.volumes import VolumeReadError
    from lmtransfer.transfer.cifar import CifarSourceError

    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # `kill` and DVC's cancel send SIGTERM: unwind like Ctrl-C, so runs are closed as KILLED
        signal.signal(signal.SIGTERM, _terminated)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, VolumeReadError, CifarSourceError, FileNotFoundError, ValueError, RuntimeError) as exc:
        if args.debug or os.environ.get("LMTRANSFER_DEBUG"):
            traceback.print_exc()
        print(f"lmtransfer {args.command}: error: {exc}", file=sys.stderr)
        if not isinstance(exc, (ConfigError, VolumeReadError, CifarSourceError, FileNotFoundError)):
            print(f"lmtransfer {args.command}: (`lmtransfer --debug {args.command} ...` shows where it came from)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
