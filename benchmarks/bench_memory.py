"""Peak memory of `lmtransfer detect` against the size of the volume, and a million-row landmark CSV.

Each case runs in a fresh process (peak resident memory, VmHWM, is per process) and reports the
peak above what the process held just before the work started.

- detect: a synthetic 512 x 512 x 600 int16 CT (a water cylinder with a bony core) written as
  uncompressed NIfTI, detected with an untrained default network on a coarse grid (the memory
  is the volume's, not the search's). Side by side: the route `detect` takes (the int16 voxels
  read in place) and the earlier route (a float32 C-ordered copy of the transposed array).
- ingest: 1,000,000 landmark rows in one CSV (100 cases x 10,000 points) against 100 small
  volumes: seconds and peak memory of ``build_manifest``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE_IJK = (512, 512, 600)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _write_volume(path: Path) -> None:
    import SimpleITK as sitk

    i, j = np.meshgrid(np.arange(SIZE_IJK[0]), np.arange(SIZE_IJK[1]), indexing="ij")
    r = np.hypot((i - 256) / 200.0, (j - 256) / 150.0)
    plane = np.where(r < 1, 40, -1000).astype(np.int16)
    plane[np.hypot(i - 256, j - 300) < 20] = 700
    volume = np.broadcast_to(plane.T[None], SIZE_IJK[::-1]).copy()
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.7, 0.7, 1.0))
    sitk.WriteImage(image, str(path), False)


def _detect_child(path: str, route: str) -> dict:
    import SimpleITK as sitk

    from lmtransfer.detection.detector import DetectConfig, LandmarkDetector
    from lmtransfer.io.coords import Geometry
    from lmtransfer.io.volumes import read_volume
    from lmtransfer.sampling.cache import BACKGROUND, PatchCacheConfig
    from lmtransfer.training.pretrain import model_card
    from lmtransfer.training.train import TrainConfig

    train = TrainConfig()
    model = train.build(61, PatchCacheConfig().pixels)
    names = [f"landmark_{i}" for i in range(60)] + [BACKGROUND]
    config = DetectConfig(coarse_step_mm=24.0, refine_steps_mm=(4.0,), candidates=1, threads=2)
    detector = LandmarkDetector(model, model_card(model, names, PatchCacheConfig(), train), config)
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    if route == "in place":
        detector.detect_file(Path(path), progress=False)
    else:
        image = read_volume(Path(path))
        volume = np.ascontiguousarray(sitk.GetArrayFromImage(image).T, dtype=np.float32)
        detector.detect(volume, Geometry.from_sitk(image), progress=False)
    return {"peak_mib": (_rss_kib("VmHWM") - before) / 1024, "seconds": time.perf_counter() - start}


def _ingest_child(folder: str) -> dict:
    from lmtransfer.io.manifest import build_manifest

    folder = Path(folder)
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    manifest, report = build_manifest(folder / "images", [folder / "landmarks.csv"], progress=False)
    return {"peak_mib": (_rss_kib("VmHWM") - before) / 1024, "seconds": time.perf_counter() - start,
            "rows": len(manifest), "errors": report.n_errors}


def _in_child(function: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, function, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_landmarks(folder: Path, cases: int = 100, per_case: int = 10_000) -> None:
    import SimpleITK as sitk

    (folder / "images").mkdir(parents=True)
    image = sitk.GetImageFromArray(np.zeros((8, 10, 12), np.int16))
    rng = np.random.default_rng(0)
    with open(folder / "landmarks.csv", "w") as handle:
        handle.write("case,landmark,x,y,z\n")
        for c in range(cases):
            sitk.WriteImage(image, str(folder / "images" / f"case_{c:03d}.nii.gz"))
            points = rng.uniform(0, 8, (per_case, 3))
            handle.writelines(f"case_{c:03d},point_{k},{x:.3f},{y:.3f},{z:.3f}\n" for k, (x, y, z) in enumerate(points))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "ct.nii"
        _write_volume(path)
        volume_mib = np.prod(SIZE_IJK) * 2 / 2**20
        print(f"detect memory, {' x '.join(map(str, SIZE_IJK))} int16 volume ({volume_mib:.0f} MiB), peak above the process's start:")
        results = {route: _in_child("detect", str(path), route) for route in ("in place", "float32 copy")}
        for route, result in results.items():
            print(f"  {route:13s}: {result['peak_mib']:7.0f} MiB = {result['peak_mib'] / volume_mib:4.2f}x the volume "
                  f"({result['seconds']:.1f} s)")
        print(f"  ratio float32 copy / in place: {results['float32 copy']['peak_mib'] / results['in place']['peak_mib']:.2f}x")
        _write_landmarks(tmp / "landmarks")
        result = _in_child("ingest", str(tmp / "landmarks"))
        print(f"ingest of a 1,000,000-row landmark CSV (100 cases): {result['seconds']:.1f} s, peak {result['peak_mib']:.0f} MiB, "
              f"{result['rows']:,} manifest rows, {result['errors']} errors")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        child = {"detect": _detect_child, "ingest": _ingest_child}[sys.argv[1]]
        print(json.dumps(child(*sys.argv[2:])))
    else:
        main()
