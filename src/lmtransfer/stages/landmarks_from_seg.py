"""`lmtransfer landmarks-from-seg`: landmarks derived from multi-organ label maps (TotalSegmentator or your own table)."""

from __future__ import annotations

import json
from pathlib import Path

from lmtransfer.stages import Command, option

COMMAND = Command(
    name="landmarks-from-seg",
    help="derive the landmark kinds from multi-organ label maps (TotalSegmentator v2 built in, any table as CSV id,name)",
    description=(
        "For each label map: every landmark kind its labels allow, in LPS mm, by a written geometric definition "
        "(vertebral body centres, kidney and spleen poles, femoral head centres, aortic bifurcation, carina, ...), "
        "as 3D Slicer markups or CSV that `lmtransfer ingest` reads; and a report with, for every kind, the "
        "definition used or why it could not be derived. Works in physical space: label maps stored with flipped "
        "or oblique axes relative to their CT give the same points."
    ),
    options=(
        option("segmentations", nargs="+", help="label maps (NIfTI, NRRD, MHA, ...) or folders of them; the case is the file name"),
        option("--labels", default="totalsegmentator_v2",
               help="label table: totalsegmentator_v2 (built in) or a CSV with columns id,name (e.g. TotalSegmentator v1's)"),
        option("--case", help="case name for a single label map (default: its file name), to match its CT in ingest"),
        option("--out-dir", default="landmarks_from_seg", help="where <case>.mrk.json (or .csv) go; reports in <out-dir>/derivation/"),
        option("--format", choices=("mrk.json", "csv"), default="mrk.json", help="landmark file format (both are what ingest reads)"),
        option("--force", action="store_true", help="write the landmarks even when they contradict anatomy (see the report)"),
        option("--quiet", action="store_true", help="only the one-line summary per case"),
    ),
)


def label_maps(inputs: list[str]) -> list[Path]:
    """The label-map files named, folders expanded to the volumes in them."""
    from lmtransfer.io.volumes import find_volumes

    found: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise FileNotFoundError(f"{item}: no such label map or folder")
        found += find_volumes(item) if item.is_dir() else [item]
    if not found:
        raise FileNotFoundError(f"{', '.join(inputs)}: no label maps found")
    return found


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
    from lmtransfer.anatomy.derive import derivation_warnings, derive_landmarks
    from lmtransfer.anatomy.labels import LabelTable
    from lmtransfer.io.landmarks import write_slicer_json
    from lmtransfer.io.volumes import case_id_from_path, read_volume

    table = LabelTable.resolve(args.labels)
    maps = label_maps(args.segmentations)
    if args.case and len(maps) > 1:
        raise ValueError(f"--case names one label map, but {len(maps)} were given")
    out_dir = Path(args.out_dir)
    (out_dir / "derivation").mkdir(parents=True, exist_ok=True)
    for path in maps:
        case = args.case or case_id_from_path(path)
        derived, summary = derive_landmarks(read_volume(path), table)
        if summary["inconsistencies"] and not args.force:
            raise ValueError(f"{path}: the derived landmarks contradict anatomy ({'; '.join(summary['inconsistencies'])}); "
                             f"does the label table {table.source} fit this map? (--force writes them anyway)")
        found = derived[derived["derived"]]
        target = out_dir / f"{case}.{args.format}"
        if args.format == "csv":
            rows = found.assign(case=case, space="LPS")[["case", "landmark", "x", "y", "z", "space"]]
            rows.to_csv(target, index=False, float_format="%.3f")
        else:
            write_slicer_json(target, found["landmark"].tolist(), found[["x", "y", "z"]].to_numpy(), found["definition"].tolist())
        derived.to_csv(out_dir / "derivation" / f"{case}.csv", index=False, float_format="%.3f")
        (out_dir / "derivation" / f"{case}.json").write_text(json.dumps({"case": case, "source": str(path), **summary}, indent=2) + "\n")
        print(f"{case}: {summary['derived']} of {summary['kinds']} landmark kinds derived -> {target} "
              f"(report: {out_dir / 'derivation' / f'{case}.csv'})")
        for warning in derivation_warnings(summary):
            print(f"  warning: {warning}")
        for problem in summary["inconsistencies"]:
            print(f"  warning (--force): {problem}")
        if not args.quiet:
            for row in derived.itertuples():
                where = f"({row.x:7.1f}, {row.y:7.1f}, {row.z:7.1f}) mm LPS" if row.derived else f"not derived: {row.reason}"
                print(f"  {row.landmark:30s} {where}")
    return 0
