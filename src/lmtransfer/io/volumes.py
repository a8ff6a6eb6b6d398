"""Reading 3D volumes (NIfTI, NRRD, MHA/MHD, DICOM series) through SimpleITK."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lmtransfer.io.coords import Geometry

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


class VolumeReadError(RuntimeError):
    """A volume could not be read; the message names the path and the reason."""


def case_id_from_path(path: Path) -> str:
    """Case identifier of a volume: its file name without the volume suffix (or the folder name)."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_volume_path(path: Path) -> bool:
    """True for a volume file with a known suffix, or a folder holding DICOM files."""
    if path.is_dir():
        return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def find_volumes(folder: Path) -> list[Path]:
    """Volume files and DICOM-series folders directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: image folder does not exist")
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and is_volume_path(p))


def read_volume(path: Path) -> sitk.Image:
    """Read a volume file or a folder holding one DICOM series, with voxel data.

    Raises:
        VolumeReadError: unreadable, not 3D, not scalar, several DICOM series in one folder,
            or non-finite voxel values. The message names the path.
    """
    path = Path(path)
    image = _guarded(path, lambda: _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path)))
    if path.name.lower().endswith(".gz"):
        _check_gzip_complete(path)
    _check_3d_scalar(path, image.GetDimension(), image.GetNumberOfComponentsPerPixel())
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise VolumeReadError(f"{path}: {bad} voxels are NaN or infinite")
    return image


def _check_gzip_complete(path: Path, chunk_bytes: int = 1 << 22) -> None:
    """Raise if a gzip stream ends early: ITK's NIfTI reader fills a truncated file with zeros silently."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            try:
                decompressor.decompress(chunk, 0)
            except zlib.error as exc:
                raise VolumeReadError(f"{path}: corrupt gzip data ({exc})") from exc
            if decompressor.eof:
                return
    raise VolumeReadError(f"{path}: truncated file (the gzip stream ends before its end marker)")


def read_geometry(path: Path) -> Geometry:
    """Geometry of a volume from its header only (DICOM series are read whole)."""
    path = Path(path)
    if path.is_dir():
        return Geometry.from_sitk(read_volume(path))

    def header() -> sitk.ImageFileReader:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return reader

    reader = _guarded(path, header)
    _check_3d_scalar(path, reader.GetDimension(), reader.GetNumberOfComponents())
    return Geometry(
        size_ijk=tuple(int(s) for s in reader.GetSize()),
        spacing_mm=tuple(float(s) for s in reader.GetSpacing()),
        origin_lps_mm=tuple(float(o) for o in reader.GetOrigin()),
        direction=np.asarray(reader.GetDirection(), dtype=float).reshape(3, 3),
    )


def _guarded(path: Path, read):
    """Run a SimpleITK read, turning its long ITK traces into a one-line error naming ``path``."""
    try:
        return read()
    except VolumeReadError:
        raise
    except Exception as exc:
        text = str(exc).strip()
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln.split("ERROR:", 1)[1].strip() for ln in lines if "ERROR:" in ln]
        reason = errors[-1] if errors else (lines[-1] if lines else type(exc).__name__)
        raise VolumeReadError(f"{path}: cannot read volume ({reason[:300]})") from exc


def _check_3d_scalar(path: Path, dimension: int, components: int) -> None:
    if dimension != 3:
        raise VolumeReadError(f"{path}: expected a 3D volume, got {dimension}D")
    if components != 1:
        raise VolumeReadError(f"{path}: expected a scalar volume, got {components} components per voxel")


def _read_dicom_series(folder: Path) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise VolumeReadError(f"{folder}: no DICOM series found in the folder")
    if len(series_ids) > 1:
        raise VolumeReadError(
            f"{folder}: {len(series_ids)} DICOM series in one folder; put each series in its own folder"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    image = reader.Execute()
    if image.GetSize()[2] < 2:
        raise VolumeReadError(f"{folder}: the DICOM series has a single slice, not a volume")
    return image
