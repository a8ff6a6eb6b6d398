"""A clinical-size case through every step that touches it: seconds and peak memory per step.

The shared real abdomen-pelvis CT and its TotalSegmentator segmentation (3 mm) are resampled to
0.7 x 0.7 x 0.56 mm, 519 x 429 x 595 voxels: the size of a thin-slice clinical CT. Each step runs
in a fresh process (peak resident memory, VmHWM, is per process; the figure is the peak above
what the process held before the step):

- derive: read the label map and derive the landmarks (`landmarks-from-seg`);
- ingest: manifest of the CT with the derived landmarks, every voxel verified;
- patches: the 2.5D patches at the derived landmarks and 1,000 random body points;
- detect: the default search with an untrained default network (the time and memory are the
  search's, whatever the weights).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_memory import _rss_kib  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_abdomen_ct"
SPACING_MM = (0.7, 0.7, 0.56)


def _measure(work) -> dict:
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    extra = work() or {}
    return {"seconds": time.perf_counter() - start, "peak_mib": (_rss_kib("VmHWM") - before) / 1024, **extra}


def _write_case(folder: Path) -> None:
    import SimpleITK as sitk

    for name, source, interpolator, kind in (("ct.nii", "ct.nii.gz", sitk.sitkLinear, sitk.sitkInt16),
                                              ("seg.nii", "seg_totalsegmentator_v1.nii.gz", sitk.sitkNearestNeighbor, sitk.sitkUInt8)):
        image = sitk.Cast(sitk.ReadImage(str(SHARED / source)), sitk.sitkFloat32)
        # the fine grid spans the coarse voxel centres and no more: beyond them it would hide where the scan was cut
        size = [int((n - 1) * s / t) + 1 for n, s, t in zip(image.GetSize(), image.GetSpacing(), SPACING_MM)]
        fine = sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), SPACING_MM, image.GetDirection(),
                             -1000.0 if kind == sitk.sitkInt16 else 0.0)
        sitk.WriteImage(sitk.Cast(fine, kind), str(folder / name), False)


def _derive(folder: str) -> dict:
    from lmtransfer.anatomy.derive import derive_landmarks
    from lmtransfer.anatomy.labels import LabelTable
    from lmtransfer.io.volumes import read_volume

    folder = Path(folder)

    def work():
        table, summary = derive_landmarks(read_volume(folder / "seg.nii"), LabelTable.resolve(SHARED / "labels_totalsegmentator_v1.csv"))
        found = table[table["derived"]].assign(case="ct", space="LPS")
        found[["case", "landmark", "x", "y", "z", "space"]].to_csv(folder / "landmarks.csv", index=False)
        return {"derived": summary["derived"]}
    return _measure(work)


def _ingest(folder: str) -> dict:
    from lmtransfer.io.manifest import build_manifest

    folder = Path(folder)
    (folder / "images").mkdir(exist_ok=True)
    if not (folder / "images" / "ct.nii").exists():
        (folder / "images" / "ct.nii").symlink_to(folder / "ct.nii")

    def work():
        manifest, report = build_manifest(folder / "images", [folder / "landmarks.csv"], verify_voxels=True, workers=1,
                                          progress=False)
        return {"rows": len(manifest), "errors": report.n_errors}
    return _measure(work)


def _patches(folder: str) -> dict:
    import numpy as np
    import pandas as pd
    import SimpleITK as sitk

    from lmtransfer.io.coords import Geometry
    from lmtransfer.io.volumes import read_volume
    from lmtransfer.sampling.cache import PatchCacheConfig
    from lmtransfer.sampling.planes import PatchSpec, sample_planes

    folder = Path(folder)

    def work():
        image = read_volume(folder / "ct.nii")
        geometry = Geometry.from_sitk(image)
        volume = sitk.GetArrayViewFromImage(image).T
        landmarks = pd.read_csv(folder / "landmarks.csv")[["x", "y", "z"]].to_numpy(float)
        rng = np.random.default_rng(0)
        others = geometry.index_to_lps(rng.uniform(0, np.asarray(geometry.size_ijk) - 1, (1000, 3)))
        cfg = PatchCacheConfig()
        planes = sample_planes(volume, geometry, np.r_[landmarks, others], PatchSpec(cfg.fov_mm, cfg.pixels))
        return {"patches": int(planes.shape[0])}
    return _measure(work)


def _detect(folder: str) -> dict:
    from lmtransfer.detection.detector import DetectConfig, LandmarkDetector
    from lmtransfer.sampling.cache import BACKGROUND, PatchCacheConfig
    from lmtransfer.training.pretrain import model_card
    from lmtransfer.training.train import TrainConfig

    train = TrainConfig()
    model = train.build(61, PatchCacheConfig().pixels)
    names = [f"landmark_{i}" for i in range(60)] + [BACKGROUND]
    detector = LandmarkDetector(model, model_card(model, names, PatchCacheConfig(), train), DetectConfig(threads=2))
    return _measure(lambda: {"patches": detector.detect_file(Path(folder) / "ct.nii", progress=False).patches_scored})


def _in_child(step: str, folder: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, step, str(folder)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import SimpleITK as sitk

    if not SHARED.exists():
        print(f"real-size benchmark: {SHARED} is not here; skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_case(folder)
        size = sitk.ReadImage(str(folder / "ct.nii")).GetSize()
        volume_mib = size[0] * size[1] * size[2] * 2 / 2**20
        print(f"clinical-size case, {' x '.join(map(str, size))} voxels at {' x '.join(map(str, SPACING_MM))} mm "
              f"(int16 CT {volume_mib:.0f} MiB), one process per step, peak memory above the process's start:")
        for step, what in (("derive", "derived"), ("ingest", "rows"), ("patches", "patches"), ("detect", "patches")):
            result = _in_child(step, folder)
            print(f"  {step:8s} {result['seconds']:6.1f} s  peak {result['peak_mib']:6.0f} MiB "
                  f"({result['peak_mib'] / volume_mib:4.2f}x the CT)  {what}: {result[what]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps({"derive": _derive, "ingest": _ingest, "patches": _patches, "detect": _detect}[sys.argv[1]](*sys.argv[2:])))
    else:
        main()
