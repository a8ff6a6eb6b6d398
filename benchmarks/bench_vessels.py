"""Vessel extraction on head MRA phantom cases: the extractor as it is (Hessian filters shared between
derivatives and run on the box the seeds need, head-margin distances on the head's box) against the
route before (18 whole-volume Gaussian passes per scale, the distance map of the whole array), alternated
case by case, with the masks asserted equal."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from lmtransfer.phantoms.head_mra import PhantomMRAConfig, generate_dataset
from lmtransfer.transfer import vessels


def _whole_array_route():
    """Replacements that give the route before: every filter and distance over the whole array."""
    def second_derivatives(volume, sigma_vox):
        orders = [(2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2)]
        return {o: ndimage.gaussian_filter(volume, sigma_vox, order=list(o), truncate=vessels.TRUNCATE) for o in orders}

    def deeper_than(body, spacing_zyx, margin_mm):
        padded = np.pad(body, ((0, 0), (1, 1), (1, 1)))
        return ndimage.distance_transform_edt(padded, sampling=spacing_zyx)[:, 1:-1, 1:-1] > margin_mm

    return {"_second_derivatives": second_derivatives, "deeper_than": deeper_than,
            "filtering_box": lambda where, spacing_xyz, sigma_mm: tuple(slice(None) for _ in where.shape)}


def main(cases: int = 6) -> None:
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(PhantomMRAConfig(n_cases=cases), Path(tmp), workers=1, progress=False)
        volumes = []
        for path in sorted((Path(tmp) / "images").glob("*.nii.gz")):
            image = sitk.ReadImage(str(path))
            volumes.append((sitk.GetArrayFromImage(image).astype(np.float32), image.GetSpacing()))
    now = {name: getattr(vessels, name) for name in _whole_array_route()}
    times = {"now": 0.0, "before": 0.0}
    for volume, spacing in volumes:
        masks = {}
        for route in ("before", "now"):
            for name, function in (_whole_array_route() if route == "before" else now).items():
                setattr(vessels, name, function)
            start = time.perf_counter()
            masks[route] = vessels.extract_vessels(volume, spacing)[0]
            times[route] += time.perf_counter() - start
        for name, function in now.items():
            setattr(vessels, name, function)
        assert np.array_equal(masks["now"], masks["before"]), "the extractor's mask changed"
    print(f"vessel extraction ({cases} MRA phantom cases, no read/write): {times['now'] / cases:5.2f} s/case; "
          f"whole-volume filters and distances (before): {times['before'] / cases:5.2f} s/case; "
          f"ratio {times['before'] / times['now']:.2f}x, masks identical")


if __name__ == "__main__":
    main()
