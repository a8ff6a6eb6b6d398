import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DIRECTIONS, make_image
from lmtransfer.io.coords import Geometry
from lmtransfer.io.volumes import VolumeReadError, case_id_from_path, find_volumes, read_geometry, read_volume


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_formats_keep_geometry(tmp_path, suffix):
    image = make_image(direction=DIRECTIONS["oblique"])
    path = tmp_path / f"case_a{suffix}"
    sitk.WriteImage(image, str(path))
    full = Geometry.from_sitk(read_volume(path))
    header = read_geometry(path)
    for geometry in (full, header):
        assert geometry.size_ijk == image.GetSize()
        np.testing.assert_allclose(geometry.spacing_mm, image.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(geometry.origin_lps_mm, image.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(geometry.direction, DIRECTIONS["oblique"], atol=1e-5)
    assert case_id_from_path(path) == "case_a"


def test_real_dicom_series(shared_data):
    folder = shared_data / "real_ct_dicom"
    image = read_volume(folder)
    geometry = Geometry.from_sitk(image)
    assert geometry.size_ijk == (512, 512, 20)
    np.testing.assert_allclose(geometry.spacing_mm, (0.9765625, 0.9765625, 2.0))
    assert geometry.orientation == "LPS"
    hu = sitk.GetArrayViewFromImage(image)
    assert hu.min() <= -1000 and 200 < hu.max() < 4000  # air and bone in Hounsfield units
    assert find_volumes(shared_data) == [folder, shared_data / "real_ct_dicom_seg.nii.gz"]


def test_corrupt_file_error_names_the_file(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(VolumeReadError, match="broken.nii.gz: cannot read volume"):
        read_volume(path)
    with pytest.raises(VolumeReadError, match="broken.nii.gz"):
        read_geometry(path)


def test_truncated_file_is_caught_by_full_read(tmp_path):
    path = tmp_path / "cut.nii.gz"
    sitk.WriteImage(make_image(size=(40, 40, 40)), str(path), useCompression=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeReadError, match="cut.nii.gz"):
        read_volume(path)


def test_nan_voxels_are_rejected(tmp_path):
    image = make_image(dtype=np.float32)
    array = sitk.GetArrayFromImage(image)
    array[2, 3, 4] = np.nan
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    path = tmp_path / "nan.nrrd"
    sitk.WriteImage(bad, str(path))
    with pytest.raises(VolumeReadError, match="nan.nrrd: 1 voxels are NaN"):
        read_volume(path)


def test_2d_image_is_rejected(tmp_path):
    path = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.Image([8, 8], sitk.sitkInt16), str(path))
    with pytest.raises(VolumeReadError, match="expected a 3D volume"):
        read_geometry(path)


def _write(tmp_path, name, compress=False):
    path = tmp_path / name
    sitk.WriteImage(make_image(size=(20, 30, 40)), str(path), compress)
    return path


@pytest.mark.parametrize("name", ["short.nii", "short.nrrd", "short.mha"])
def test_truncated_uncompressed_file_is_refused_before_reading(tmp_path, name):
    path = _write(tmp_path, name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for read in (read_volume, read_geometry):  # the header-only route of ingest too
        with pytest.raises(VolumeReadError, match=f"{name}: truncated volume"):
            read(path)


def test_detached_raw_file_shorter_than_declared(tmp_path):
    path = _write(tmp_path, "detached.mhd")
    raw = tmp_path / "detached.raw"
    raw.write_bytes(raw.read_bytes()[:1000])
    with pytest.raises(VolumeReadError, match="detached.mhd: truncated volume.*detached.raw"):
        read_volume(path)


def test_complete_gzip_of_a_short_payload_is_refused(tmp_path):
    """A gzip stream that ends properly but holds half the voxels: ITK would read the rest as zeros."""
    import gzip

    full = _write(tmp_path, "full.nii").read_bytes()
    path = tmp_path / "short.nii.gz"
    path.write_bytes(gzip.compress(full[: len(full) // 2]))
    with pytest.raises(VolumeReadError, match="short.nii.gz: truncated volume"):
        read_volume(path)
    (tmp_path / "whole.nii.gz").write_bytes(gzip.compress(full))
    assert read_volume(tmp_path / "whole.nii.gz").GetSize() == (20, 30, 40)


def test_absurd_header_is_refused_without_allocating(tmp_path):
    """75 bytes that declare 1000^3 voxels: refused from the header, by the voxel cap or by the length."""
    path = tmp_path / "huge.mha"
    path.write_bytes(b"NDims = 3\nDimSize = 1000 1000 1000\nElementType = MET_SHORT\nElementDataFile = LOCAL\n")
    with pytest.raises(VolumeReadError, match="huge.mha: the header declares 1000 x 1000 x 1000 = 1,000,000,000 voxels"):
        read_volume(path)
    with pytest.raises(VolumeReadError, match="huge.mha: truncated volume"):
        read_volume(path, max_voxels=2_000_000_000)
    with pytest.raises(VolumeReadError, match="limit of 1,000"):
        read_volume(_write(tmp_path, "fine.nii.gz", compress=True), max_voxels=1000)


def _same_image(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetPixelID() == b.GetPixelID() and a.GetSize() == b.GetSize()
    assert (a.GetOrigin(), a.GetSpacing(), a.GetDirection()) == (b.GetOrigin(), b.GetSpacing(), b.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


@pytest.mark.parametrize("size", [(23, 17, 11), (2, 2, 2)])   # (2, 2, 2): the whole file is shorter than 540 bytes
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
def test_a_gzipped_nifti_read_in_one_pass_is_what_itk_reads(tmp_path, dtype, size, monkeypatch):
    """The voxels come from the one decompression the length check needs: bit for bit ITK's image."""
    import lmtransfer.io.volumes as volumes

    image = make_image(size=size, dtype=dtype, direction=DIRECTIONS["oblique"])
    path = tmp_path / "case.nii.gz"
    sitk.WriteImage(image, str(path), useCompression=True)
    monkeypatch.setattr(volumes.sitk, "ReadImage", lambda *a: pytest.fail("ITK read the voxels a second time"))
    one_pass = read_volume(path)
    monkeypatch.undo()
    _same_image(one_pass, sitk.ReadImage(str(path)))


@pytest.mark.parametrize("case", ["scaled", "big_endian"])
def test_niftis_itk_converts_are_left_to_itk(tmp_path, case):
    """Scaled values (ITK applies scl_slope) and foreign byte order still read as ITK reads them."""
    import nibabel as nib

    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    header = nib.Nifti1Header()
    if case == "big_endian":
        header = header.as_byteswapped(">")
    nifti = nib.Nifti1Image(data, np.diag([1.5, 2.0, 3.0, 1.0]), header)
    if case == "scaled":
        nifti.header.set_slope_inter(2.0, -5.0)
    path = tmp_path / f"{case}.nii.gz"
    nib.save(nifti, str(path))
    _same_image(read_volume(path), sitk.ReadImage(str(path)))


def test_a_nifti_whose_voxel_offset_points_into_its_header_reads_as_itk_reads_it(tmp_path):
    """vox_offset 0 (malformed): ITK starts the voxels after the header; taking the stated offset would
    read the header's bytes as voxels."""
    import gzip
    import struct

    plain = _write(tmp_path, "plain.nii")
    header = bytearray(plain.read_bytes())
    header[108:112] = struct.pack("<f", 0.0)
    path = tmp_path / "offset0.nii.gz"
    path.write_bytes(gzip.compress(bytes(header)))
    _same_image(read_volume(path), sitk.ReadImage(str(path)))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_written_volumes_read_back_as_itk_writes_them_and_the_same_image_gives_the_same_bytes(tmp_path, suffix):
    from lmtransfer.io.volumes import write_volume

    image = make_image(size=(31, 23, 17), dtype=np.int16, direction=DIRECTIONS["oblique"])
    first, second, itk = tmp_path / f"a{suffix}", tmp_path / "again" / f"a{suffix}", tmp_path / "itk" / f"a{suffix}"
    for path in (second, itk):
        path.parent.mkdir()
    write_volume(image, first)
    write_volume(image, second)
    sitk.WriteImage(image, str(itk), useCompression=True)
    assert first.read_bytes() == second.read_bytes()        # no time stamp in the gzip header
    _same_image(read_volume(first), sitk.ReadImage(str(itk)))
    _same_image(sitk.ReadImage(str(first)), sitk.ReadImage(str(itk)))   # plain gzip: ITK (and any reader) takes it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, "again", "itk"])   # no temporary left


def test_the_content_hash_covers_every_byte_of_a_volume(tmp_path):
    from lmtransfer.io.volumes import content_hash

    image = make_image(dtype=np.int16)
    sitk.WriteImage(image, str(tmp_path / "a.nii.gz"))
    sitk.WriteImage(image, str(tmp_path / "b.nii.gz"))
    assert content_hash(tmp_path / "a.nii.gz") == content_hash(tmp_path / "b.nii.gz")
    # a MetaImage header with its voxels in a detached file: a change to the voxels alone changes the hash
    sitk.WriteImage(image, str(tmp_path / "c.mhd"))
    header = content_hash(tmp_path / "c.mhd")
    raw = next(tmp_path.glob("c.*raw"))
    data = bytearray(raw.read_bytes())
    data[10] ^= 1
    raw.write_bytes(bytes(data))
    assert content_hash(tmp_path / "c.mhd") != header
    # a series folder: each file, and its name
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"one")
    (series / "2.dcm").write_bytes(b"two")
    first = content_hash(series)
    (series / "2.dcm").rename(series / "3.dcm")
    assert content_hash(series) != first
