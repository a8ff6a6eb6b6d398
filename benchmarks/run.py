"""`make bench`: speed figures measured side by side in one run, printed as ratios.

- phantom: seconds to render one default-resolution case vs a coarse one, and rendering with the
  paint operations' hints (only the voxels they can change are tested) vs testing every voxel of
  their boxes, with the labels asserted equal; and painting and texturing in cache-sized z-pieces vs
  whole boxes and volumes, images and labels asserted equal.
- ingest: reading a volume's header only vs reading and verifying every voxel, per case; a .nii.gz
  decompressed once (as now) vs the length check and ITK's read each decompressing it (before); a
  .nii.gz inflated by ISA-L (as now) vs zlib, and written by ``write_volume`` (ISA-L) vs ITK's gzip.
- sampling: 2.5D patches/s, our LandmarkSampler vs the stock TorchIO LabelSampler + Queue route
  (bench_sampler.py).
- training: mini-VGG training and inference patches/s, threads and widths (bench_training.py).
- boosting: one AdaBoost fit of 300 stumps, scikit-learn vs the stump booster (bench_boosting.py).
- vessels: MRA vessel extraction per case, the extractor as it is vs whole-volume filters and distance
  maps (the route before), masks asserted equal (bench_vessels.py).
- detection: seconds per volume of `lmtransfer detect` at two grid sizes and two body sizes,
  one vs two threads (bench_detection.py).
- memory: peak memory of `detect` against the volume's size (in place vs a float32 copy) and of
  ingesting a 1,000,000-row landmark CSV (bench_memory.py).
- real size: a clinical-size (519 x 429 x 595) copy of the shared real CT and its segmentation
  through landmark derivation, ingest, patch cutting and detection, seconds and peak memory per step
  (bench_real_size.py).
- allocator: one phantom case with glibc's defaults vs freed memory kept (the CLI's setting),
  system time, page faults and peak memory (bench_allocator.py).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
import bench_allocator  # noqa: E402
import bench_boosting  # noqa: E402
import bench_detection  # noqa: E402
import bench_memory  # noqa: E402
import bench_real_size  # noqa: E402
import bench_sampler  # noqa: E402
import bench_training  # noqa: E402
import bench_vessels  # noqa: E402

from lmtransfer.io.volumes import read_geometry, read_volume
from lmtransfer.phantoms.torso_anatomy import PaintOp
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, case_id, generate_dataset, render_case


def timed(function, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def render_hint_ratio(cfg: PhantomCTConfig, cases=(3, 10)) -> tuple[float, float]:
    """Seconds per case rendering with the paint hints and without them (the renderer before), alternated."""
    import SimpleITK as sitk

    original = PaintOp.tested_on
    times = {"hinted": 0.0, "every": 0.0}
    for index in cases:
        labels = {}
        for mode in ("hinted", "every"):
            PaintOp.tested_on = original if mode == "hinted" else (lambda op: None)
            try:
                start = time.perf_counter()
                labels[mode] = sitk.GetArrayFromImage(render_case(index, cfg).labels)
                times[mode] += time.perf_counter() - start
            finally:
                PaintOp.tested_on = original
        assert np.array_equal(labels["hinted"], labels["every"]), f"case {index}: the hints changed the labels"
    return times["hinted"] / len(cases), times["every"] / len(cases)


def render_piece_ratio(cfg: PhantomCTConfig, cases=(3, 10, 20)) -> tuple[float, float]:
    """Seconds per case rendering in cache-sized pieces and whole (the renderer before), alternated."""
    import SimpleITK as sitk

    from lmtransfer.phantoms import noise, torso_ct

    sizes = {"pieces": (torso_ct.PIECE_VOXELS, noise.SLAB_VOXELS), "whole": (1 << 40, 1 << 40)}
    times = dict.fromkeys(sizes, 0.0)
    try:
        for index in cases:
            arrays = {}
            for mode, (piece, slab) in sizes.items():
                torso_ct.PIECE_VOXELS, noise.SLAB_VOXELS = piece, slab
                start = time.perf_counter()
                case = render_case(index, cfg)
                times[mode] += time.perf_counter() - start
                arrays[mode] = (sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.labels))
            assert all(np.array_equal(a, b) for a, b in zip(arrays["pieces"], arrays["whole"])), f"case {index}: pieces changed it"
    finally:
        torso_ct.PIECE_VOXELS, noise.SLAB_VOXELS = sizes["pieces"]
    return times["pieces"] / len(cases), times["whole"] / len(cases)


def two_pass_read(path: Path) -> sitk.Image:
    """The read before: the gzip decompressed once for the length check, then again by ITK."""
    from lmtransfer.io.volumes import _gunzipped_length, _header

    _header(path, 10**9)
    _gunzipped_length(path)
    return sitk.ReadImage(str(path))


def gzip_ratios(path: Path, out: Path) -> None:
    """A phantom .nii.gz inflated by zlib (before) and ISA-L (now), bytes asserted equal; the image
    written by ITK's gzip (before) and :func:`write_volume` (now), voxels asserted equal; sizes."""
    import zlib

    from isal import isal_zlib

    from lmtransfer.io.volumes import write_volume

    packed = path.read_bytes()
    inflated = {}
    seconds = {}
    for name, module in (("zlib", zlib), ("isal", isal_zlib)):
        def inflate(module=module, name=name):
            inflated[name] = module.decompressobj(16 + zlib.MAX_WBITS).decompress(packed)
        seconds[name] = timed(inflate)
    assert inflated["zlib"] == inflated["isal"]
    print(f"inflate one phantom .nii.gz ({len(inflated['isal']) / 2**20:.0f} MiB): zlib (before) {seconds['zlib'] * 1e3:6.1f} ms, "
          f"ISA-L {seconds['isal'] * 1e3:6.1f} ms; ratio {seconds['zlib'] / seconds['isal']:.2f}x, bytes identical")
    image = sitk.ReadImage(str(path))
    itk, isal = out / "itk.nii.gz", out / "isal.nii.gz"
    before = timed(lambda: sitk.WriteImage(image, str(itk), useCompression=True))
    now = timed(lambda: write_volume(image, isal))
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(itk))) == sitk.GetArrayFromImage(read_volume(isal))).all()
    print(f"write one phantom image as .nii.gz: ITK's gzip (before) {before * 1e3:6.1f} ms, {itk.stat().st_size / 2**20:.1f} MiB; "
          f"write_volume (ISA-L level 2) {now * 1e3:6.1f} ms, {isal.stat().st_size / 2**20:.1f} MiB; ratio {before / now:.2f}x, "
          "voxels identical")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cfg = PhantomCTConfig(n_cases=2)
        start = time.perf_counter()
        generate_dataset(cfg, out, workers=1, progress=False)
        per_case = (time.perf_counter() - start) / cfg.n_cases
        coarse = PhantomCTConfig(n_cases=2, spacing_inplane_mm=2.4, slice_mm_choices=(5.0,), slice_mm_weights=(1.0,))
        start = time.perf_counter()
        generate_dataset(coarse, out / "coarse", workers=1, progress=False)
        per_coarse = (time.perf_counter() - start) / coarse.n_cases
        print(f"phantom render+write, default grid (~1.2 mm x 2.5 mm): {per_case:6.2f} s/case")
        print(f"phantom render+write, coarse grid (2.4 mm x 5 mm):      {per_coarse:6.2f} s/case  "
              f"(ratio default/coarse {per_case / per_coarse:.1f}x for ~8x the voxels)")
        hinted, every = render_hint_ratio(PhantomCTConfig(), cases=(3, 10))
        print(f"phantom render (no write), tested only where it can change: {hinted:6.2f} s/case; every voxel of the box "
              f"(before): {every:6.2f} s/case; ratio {every / hinted:.2f}x, labels identical")
        pieces, whole = render_piece_ratio(PhantomCTConfig())
        print(f"phantom render (no write), in cache-sized z-pieces: {pieces:6.2f} s/case; whole boxes and volumes "
              f"(before): {whole:6.2f} s/case; ratio {whole / pieces:.2f}x, images and labels identical")

        path = out / "images" / f"{case_id(0)}.nii.gz"
        header = timed(lambda: read_geometry(path), repeat=5)
        full = timed(lambda: read_volume(path))
        size = np.prod(read_geometry(path).size_ijk)
        print(f"ingest header-only read: {header * 1e3:8.2f} ms/case")
        print(f"ingest full read+verify: {full * 1e3:8.2f} ms/case ({size / full / 1e6:.0f} Mvoxel/s); "
              f"ratio full/header {full / header:.0f}x")
        twice = timed(lambda: two_pass_read(path))
        assert (sitk.GetArrayFromImage(read_volume(path)) == sitk.GetArrayFromImage(two_pass_read(path))).all()
        print(f"ingest full read+verify, .nii.gz decompressed once: {full * 1e3:8.2f} ms/case; length check then ITK's read "
              f"(before): {twice * 1e3:8.2f} ms/case; ratio {twice / full:.2f}x, voxels identical")
        gzip_ratios(path, out)


if __name__ == "__main__":
    main()
    print()
    bench_allocator.main()
    print()
    bench_sampler.main()
    print()
    bench_training.main()
    print()
    bench_boosting.main()
    print()
    bench_vessels.main()
    print()
    bench_detection.main()
    print()
    bench_memory.main()
    print()
    bench_real_size.main()
