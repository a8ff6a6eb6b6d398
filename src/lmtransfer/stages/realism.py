"""`lmtransfer realism`: compare phantom HU statistics, noise and texture with a real CT series."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmtransfer.stages import Command, option

COMMAND = Command(
    name="realism",
    help="compare phantom HU statistics, noise and texture with a real CT series",
    description=(
        "Per-tissue HU mean, spread, percentiles and noise of phantom cases (one contrast phase) next to a "
        "real CT series with a TotalSegmentator-style segmentation; writes a CSV and histograms."
    ),
    options=(
        option("--phantom", default="data/phantom_ct", help="phantom folder"),
        option("--real-dicom", default="../shared/data/real_ct_dicom", help="real CT (DICOM folder or volume)"),
        option("--real-seg", default="../shared/data/real_ct_dicom_seg.nii.gz", help="its label map"),
        option("--phase", default="portal", choices=["native", "arterial", "portal"], help="phantom phase to compare"),
        option("--cases", type=int, default=5, help="phantom cases to use"),
        option("--out", default="reports/realism", help="output folder"),
    ),
)


def run(args) -> int:
    """Run the subcommand with the parsed command line; the exit status."""
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
