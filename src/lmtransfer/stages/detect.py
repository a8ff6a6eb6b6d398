"""`lmtransfer detect`: find every landmark kind of the landmark CNN in a CT volume; write 3D Slicer markups and CSV."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lmtransfer.stages import Command, option, stage_params

COMMAND = Command(
    name="detect",
    help="find every landmark kind of the landmark CNN in a CT volume; write 3D Slicer markups and CSV",
    description=(
        "Coarse pass inside the body (offset voting with detect.voter, else a grid), then refinement around the best "
        "responses; per landmark kind the best "
        "position (LPS mm) and its probability, or 'not found' under detect.min_probability."
    ),
    options=(
        option("volume", help="CT volume in HU: NIfTI, NRRD, MHA/MHD, or a DICOM series folder"),
        option("--model", help="landmark CNN checkpoint, or a registry URI such as models:/lm-cnn@champion (default: detect.model)"),
        option("--out", help="markups file to write (default: <volume>_landmarks.mrk.json here)"),
        option("--csv", help="CSV to write (default: beside the markups file)"),
        option("--shape", help="landmark shape model that vets detections (default: detect.shape_model, models/landmark_shape.json, when it exists)"),
        option("--no-shape", action="store_true", help="no shape check: each kind takes its most probable position"),
        option("--voter", help="voting network for the coarse pass (default: detect.voter when it exists)"),
        option("--no-voter", action="store_true", help="scan the coarse grid with the landmark CNN instead of voting"),
        option("--min-probability", type=float, help="threshold under which a landmark is 'not found'"),
        option("--params", default="params.yaml", help="parameter file (section detect; defaults when absent)"),
        option("--quiet", action="store_true", help="no progress bar, no per-landmark listing"),
        option("--device", help="where the network runs: auto, cpu, cuda, cuda:N, mps (overrides compute.device)"),
    ),
)


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.detection.cases import write_detections
    from lmtransfer.detection.detector import LandmarkDetector
    from lmtransfer.detection.shape import ShapeModel
    from lmtransfer.devices import resolve_device
    from lmtransfer.io.volumes import case_id_from_path
    from lmtransfer.stages.detect_eval import DetectEvalParams
    from lmtransfer.tracking import model_file

    params = stage_params(args) if Path(args.params).exists() else None
    stage = params.detect if params else DetectEvalParams()
    cfg = stage.detect
    if args.min_probability is not None:
        cfg = replace(cfg, min_probability=args.min_probability)
    model = model_file(args.model or stage.model)  # a file, or models:/lm-cnn@champion from the registry
    shape_path = Path(args.shape or stage.shape_model)
    shape = None
    if not args.no_shape and (args.shape or shape_path.exists()):
        shape = ShapeModel.load(shape_path)
    elif not args.no_shape and not args.quiet:
        print(f"no landmark shape model at {shape_path} (`dvc repro detect_eval` fits it): each kind takes its most "
              "probable position, unchecked")
    voter = None
    if not args.no_voter and (args.voter or (stage.voter and Path(stage.voter).exists())):
        voter = Path(args.voter or stage.voter)
    device = resolve_device(args.device or (params.compute.device if params else "auto"))
    detector = LandmarkDetector.from_checkpoint(model, cfg, shape, device, voter)
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
    unknown = unknown_kinds(result.table["landmark"])
    if unknown:
        print(f"not looked for: {len(unknown)} landmark kind(s) this model was not trained on: {', '.join(unknown)}")
    return 0


def unknown_kinds(known) -> list[str]:
    """The phantom's landmark kinds (the pipeline's full set) that a model with classes ``known`` cannot find."""
    from lmtransfer.phantoms.torso_anatomy import LANDMARKS

    return [name for name in LANDMARKS if name not in set(known)]
