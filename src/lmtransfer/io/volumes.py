"""Reading 3D volumes (NIfTI, NRRD, MHA/MHD, DICOM series) through SimpleITK."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from isal import igzip, isal_zlib    # Intel ISA-L's deflate and inflate: standard gzip, several times faster than zlib

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


DEFAULT_MAX_VOXELS = 800_000_000  # 1.6 GB as int16; a 512 x 512 x 2000 CT is 524 M voxels


def read_volume(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> sitk.Image:
    """Read a volume file or a folder holding one DICOM series, with voxel data.

    The header is checked before any voxel is allocated: more than ``max_voxels`` voxels, or a
    file (or decompressed stream) shorter than its header declares, is an error. ITK's NIfTI
    reader would otherwise fill the missing part with zeros without a word.

    Raises:
        VolumeReadError: unreadable, not 3D, not scalar, too large, shorter than declared,
            several DICOM series in one folder, or non-finite voxel values. The message names the path.
    """
    path = Path(path)
    if path.is_dir():
        image = _guarded(path, lambda: _read_dicom_series(path, max_voxels))
    else:
        reader = _header(path, max_voxels)
        image = None
        if path.name.lower().endswith(".nii.gz"):
            image = _read_nifti_gzip(path, reader)
        elif path.name.lower().endswith(".gz"):
            _gunzipped_length(path)  # raises on a corrupt or truncated stream
        if image is None:
            image = _guarded(path, lambda: sitk.ReadImage(str(path)))
    _check_3d_scalar(path, image.GetDimension(), image.GetNumberOfComponentsPerPixel())
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise VolumeReadError(f"{path}: {bad} voxels are NaN or infinite")
    return image


#: ISA-L's deflate level for written .nii.gz files: 4x faster than ITK's gzip for 4 % more bytes on noisy CT
GZIP_LEVEL = 2


def write_volume(image: sitk.Image, path: Path) -> None:
    """Write ``image`` to ``path`` (any suffix SimpleITK writes; ``.nii.gz`` compressed by ISA-L).

    The gzip stream carries no time stamp, so the same image gives the same bytes.
    """
    path = Path(path)
    if not path.name.lower().endswith(".nii.gz"):
        sitk.WriteImage(image, str(path), useCompression=True)
        return
    plain = path.with_name(f".tmp_{os.getpid()}_plain_{path.name.removesuffix('.gz')}")   # swept like other temporaries
    try:
        sitk.WriteImage(image, str(plain), useCompression=False)
        path.write_bytes(igzip.compress(plain.read_bytes(), compresslevel=GZIP_LEVEL, mtime=0))
    finally:
        plain.unlink(missing_ok=True)


def _gunzipped(path: Path, chunk_bytes: int = 1 << 22) -> Iterator[bytes]:
    """The decompressed pieces of a gzip file, streamed (nothing large in memory).

    Raises:
        VolumeReadError: corrupt data, or a stream that ends before its end marker.
    """
    decompressor = isal_zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            try:
                yield decompressor.decompress(chunk)
            except isal_zlib.error as exc:
                raise VolumeReadError(f"{path}: corrupt gzip data ({exc})") from exc
            if decompressor.eof:
                return
    raise VolumeReadError(f"{path}: truncated file (the gzip stream ends before its end marker)")


def _gunzipped_length(path: Path) -> int:
    """Decompressed length of a gzip file (raises as :func:`_gunzipped` does)."""
    return sum(len(piece) for piece in _gunzipped(path))


def _nifti_data_end(header: bytes) -> int | None:
    """Byte offset where a NIfTI-1/2 file's voxel data ends (vox_offset + voxels x bitpix / 8), or None."""
    import struct

    if len(header) < 4:
        return None
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0]
        if size == 348 and len(header) >= 348:
            dim = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
        elif size == 540 and len(header) >= 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dim = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
        else:
            continue
        if not 1 <= dim[0] <= 7:
            return None
        voxels = int(np.prod([max(int(d), 1) for d in dim[1 : dim[0] + 1]], dtype=object))
        return max(offset, size) + voxels * max(int(bitpix), 0) // 8
    return None


#: NIfTI datatype codes whose voxels ITK hands over unchanged (no scaling), as NumPy types
_NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}


def _read_nifti_gzip(path: Path, reader: sitk.ImageFileReader) -> sitk.Image | None:
    """A ``.nii.gz`` decompressed once: its length checked against the header, then its voxels taken
    from that same buffer with the geometry ITK read from the header (``reader``).

    Returns None (after the checks) when the file is not a plain NIfTI-1 volume whose voxels ITK keeps
    as stored (scaled values, other layouts): the caller then lets ITK read it.
    """
    head, data, end, length = b"", None, 0, 0
    for piece in _gunzipped(path):
        if data is None:    # the header first: it says how many bytes to keep
            head += piece
            if len(head) < 540:
                continue
            end = _nifti_data_end(head[:540]) or 0
            data, piece = np.empty(end, dtype=np.uint8), head
        take = min(len(piece), max(end - length, 0))
        data[length : length + take] = np.frombuffer(piece, dtype=np.uint8, count=take)
        length += len(piece)
    if data is None:    # the whole stream is shorter than the longest header
        end, length = _nifti_data_end(head) or 0, len(head)
        data = np.frombuffer(head, dtype=np.uint8)[:end].copy()
    if end and length < end:
        raise VolumeReadError(
            f"{path}: truncated volume: the header declares {end} bytes of NIfTI data, the decompressed file holds {length}"
        )
    return _nifti_image(data, reader) if end else None


def _nifti_image(data: np.ndarray, reader: sitk.ImageFileReader) -> sitk.Image | None:
    """The image ITK would read from the NIfTI-1 bytes ``data``, or None where its reader would change the
    stored values or layout (scaling, not 3D, a type it converts)."""
    import struct

    if len(data) < 348:
        return None
    data = data.data    # a memoryview: struct and frombuffer read it in place
    endian = next((e for e in "<>" if struct.unpack(e + "i", data[:4])[0] == 348), None)
    if endian is None or bytes(data[344:348]) != b"n+1\0":
        return None
    dim = struct.unpack(endian + "8h", data[40:56])
    datatype, bitpix = struct.unpack(endian + "2h", data[70:74])
    offset, slope, inter = struct.unpack(endian + "3f", data[108:120])
    code = _NIFTI_DTYPES.get(datatype)
    if code is None or dim[0] != 3 or slope not in (0.0, 1.0) or inter != 0.0 or offset < 348:
        return None
    dtype = np.dtype(endian + code)
    size = tuple(int(d) for d in dim[1:4])
    native = _pixel_dtype(reader)
    if dtype.itemsize * 8 != bitpix or size != tuple(reader.GetSize()) or dtype.newbyteorder("=") != native:
        return None
    voxels = np.frombuffer(data, dtype=dtype, count=int(np.prod(size)), offset=int(offset)).reshape(size[::-1])
    image = sitk.GetImageFromArray(voxels.astype(native, copy=False))
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    return image


def _check_declared_length(path: Path, voxel_bytes: int) -> None:
    """Uncompressed files: the bytes on disk must cover what the header declares (NIfTI exactly;
    MetaImage and NRRD with raw data attached or in a detached file)."""
    name = path.name.lower()
    size = path.stat().st_size
    if name.endswith(".nii"):
        with open(path, "rb") as handle:
            end = _nifti_data_end(handle.read(540))
        if end is not None and size < end:
            raise VolumeReadError(f"{path}: truncated volume: the header declares {end} bytes, the file holds {size}")
        return
    if not name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
        return
    with open(path, "rb") as handle:
        head = handle.read(65536)
    data_file, header_end, compressed = _raw_data_file(path, head)
    if compressed or data_file is False:
        return
    available = size - header_end if data_file is None else (data_file.stat().st_size if data_file.is_file() else 0)
    if available < voxel_bytes:
        where = "after its header" if data_file is None else f"in {data_file}"
        raise VolumeReadError(
            f"{path}: truncated volume: the header declares {voxel_bytes} bytes of voxel data, {available} are there {where}"
        )


def _raw_data_file(path: Path, head: bytes) -> tuple[Path | None | bool, int, bool]:
    """Where the raw voxels of a MetaImage / NRRD file are: (None = attached after the header, a
    path, or False when unknown), the header length in bytes, and whether the data are compressed."""
    if path.name.lower().endswith((".mha", ".mhd")):
        offset, compressed = 0, False
        for line in head.split(b"\n"):
            offset += len(line) + 1
            key, _, value = line.decode("latin-1").partition("=")
            key, value = key.strip().lower(), value.strip()
            if key == "compresseddata":
                compressed = value.lower() == "true"
            elif key == "elementdatafile":
                if value.upper() == "LOCAL":
                    return None, offset, compressed
                if value.upper().startswith("LIST") or "%" in value or " " in value:
                    return False, offset, compressed
                return path.parent / value, offset, compressed
        return False, 0, compressed
    end = head.find(b"\n\n")
    if end < 0:
        return False, 0, False
    fields = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[key.strip().lower()] = value.lstrip("=").strip()
    compressed = fields.get("encoding", "raw") != "raw"
    detached = fields.get("data file") or fields.get("datafile")
    if detached is None:
        return None, end + 2, compressed
    if detached.upper().startswith("LIST") or " " in detached:
        return False, end + 2, compressed
    return path.parent / detached, end + 2, compressed


def content_hash(path: Path) -> str:
    """SHA-256 (first 16 hex digits) of every byte that makes the volume at ``path``: the file; for a
    MetaImage or NRRD header, its detached data file too; for a DICOM series, each file of the folder
    (with its name). Recorded beside what is cut or detected from a volume, so work done on a volume
    whose bytes have changed since is redone, never reused."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = [(f.relative_to(path).as_posix(), f) for f in sorted(p for p in path.rglob("*") if p.is_file())]
    else:
        files = [("", path)]
        if path.name.lower().endswith((".mhd", ".nhdr")):
            with open(path, "rb") as handle:
                data_file, _, _ = _raw_data_file(path, handle.read(1 << 16))
            if isinstance(data_file, Path) and data_file.is_file():
                files.append((data_file.name, data_file))
    for name, file in files:
        digest.update(name.encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def read_geometry(path: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> Geometry:
    """Geometry of a volume from its header only (DICOM series are read whole).

    Also refuses volumes over ``max_voxels`` and uncompressed files shorter than their header
    declares; a truncated compressed file is only found when its voxels are read (:func:`read_volume`).
    """
    path = Path(path)
    if path.is_dir():
        return Geometry.from_sitk(read_volume(path, max_voxels))
    reader = _header(path, max_voxels)
    return Geometry(
        size_ijk=tuple(int(s) for s in reader.GetSize()),
        spacing_mm=tuple(float(s) for s in reader.GetSpacing()),
        origin_lps_mm=tuple(float(o) for o in reader.GetOrigin()),
        direction=np.asarray(reader.GetDirection(), dtype=float).reshape(3, 3),
    )


def _header(path: Path, max_voxels: int) -> sitk.ImageFileReader:
    """ITK's reader of ``path`` with the header read: a 3D scalar volume of at most ``max_voxels`` voxels,
    and (uncompressed) a file as long as the header declares."""

    def header() -> sitk.ImageFileReader:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return reader

    reader = _guarded(path, header)
    _check_3d_scalar(path, reader.GetDimension(), reader.GetNumberOfComponents())
    size = tuple(int(s) for s in reader.GetSize())
    _check_voxel_count(path, size, max_voxels)
    item = _pixel_dtype(reader).itemsize
    _check_declared_length(path, int(np.prod(size, dtype=object)) * item)
    return reader


def _pixel_dtype(reader: sitk.ImageFileReader) -> np.dtype:
    """The NumPy type of the voxels ITK will read (from the header alone)."""
    return sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], reader.GetPixelID())).dtype


def _check_voxel_count(path: Path, size: tuple[int, ...], max_voxels: int) -> None:
    voxels = int(np.prod(size, dtype=object))
    if voxels > max_voxels:
        raise VolumeReadError(
            f"{path}: the header declares {' x '.join(map(str, size))} = {voxels:,} voxels, more than the limit of "
            f"{max_voxels:,} (max_voxels); raise it if the volume is real"
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


def _read_dicom_series(folder: Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise VolumeReadError(f"{folder}: no DICOM series found in the folder")
    if len(series_ids) > 1:
        raise VolumeReadError(
            f"{folder}: {len(series_ids)} DICOM series in one folder; put each series in its own folder"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    first = sitk.ImageFileReader()
    first.SetFileName(files[0])
    first.ReadImageInformation()
    _check_voxel_count(folder, (*first.GetSize()[:2], len(files)), max_voxels)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    image = reader.Execute()
    if image.GetSize()[2] < 2:
        raise VolumeReadError(f"{folder}: the DICOM series has a single slice, not a volume")
    return image
