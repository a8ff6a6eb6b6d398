"""Where the natural-image baseline and the real lesion data come from: CIFAR-10, MedMNIST, LUNA16."""

import pickle
import tarfile

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import PicklePayload
from lmtransfer.transfer.cifar import ENV_VAR, CifarConfig, CifarSourceError, load_cifar10, read_cifar10
from lmtransfer.transfer.datasets import luna_lesion_set, medmnist_lesion_set
from lmtransfer.transfer.lesions import LesionPatchConfig


def _batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}


def _official_folder(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        with open(folder / name, "wb") as handle:
            pickle.dump(_batch(4, i), handle)
    return folder


def test_cifar_subset_npz_is_read(shared_data):
    data = read_cifar10(shared_data / "cifar10_subset.npz")
    assert data.x_train.shape == (5085, 3, 32, 32) and data.x_train.dtype == np.uint8
    assert set(np.unique(data.y_train)) == set(range(10))


def test_cifar_official_folder_and_archive(tmp_path):
    folder = _official_folder(tmp_path / "raw")
    for path in (folder, folder.parent):
        data = read_cifar10(path)
        assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    assert np.array_equal(read_cifar10(archive).x_train, read_cifar10(folder).x_train)


def test_cifar_batches_of_every_pickle_protocol(tmp_path):
    folder = _official_folder(tmp_path / "raw")
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump(_batch(4, 9), handle, protocol=2)  # the official files are Python 2 protocol-2 pickles
    assert read_cifar10(folder).x_test.shape == (4, 3, 32, 32)


def test_cifar_batch_cannot_run_code(tmp_path):
    folder = _official_folder(tmp_path / "raw")
    target = tmp_path / "written_by_payload"
    batch = _batch(4, 0)
    batch[b"labels"] = PicklePayload(target)
    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump(batch, handle)
    with pytest.raises(CifarSourceError, match="data_batch_3") as error:
        read_cifar10(folder)
    assert "refused" in str(error.value)
    assert not target.exists()


def test_cifar_source_order_and_clear_message(tmp_path, monkeypatch):
    folder = _official_folder(tmp_path / "env")
    monkeypatch.setenv(ENV_VAR, str(folder))
    data = load_cifar10(CifarConfig(source=str(tmp_path / "missing.npz"), download=False))
    assert data.origin == str(folder)  # the params path does not exist: the environment variable is next
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(CifarSourceError, match=ENV_VAR) as error:
        load_cifar10(CifarConfig(source=str(tmp_path / "missing.npz"), download=False))
    assert "missing.npz" in str(error.value) and "cifar.source" in str(error.value)


def test_medmnist_real_file(shared_data):
    lesions = medmnist_lesion_set(shared_data / "adrenalmnist3d.npz")
    summary = lesions.summary()
    assert summary["cases"] == 1188 + 98 + 298
    assert lesions.index["fixed_split"].value_counts().to_dict() == {"train": 1188, "val": 98, "test": 298}
    assert lesions.x.shape == (1584, 3, 32, 32) and lesions.x.min() == -1.0 and lesions.x.max() == 1.0
    # the axial channel is the central slice of the 28^3 mask, resampled: empty masks give empty patches
    assert (lesions.x.reshape(1584, -1).max(axis=1) > 0).mean() > 0.9


def test_medmnist_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, train_images=np.zeros((2, 8, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="missing arrays"):
        medmnist_lesion_set(bad)
    small = tmp_path / "small.npz"
    arrays = {f"{s}_images": np.zeros((3, 8, 8, 8), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.zeros((3, 1), np.uint8) for s in ("train", "val", "test")})
    np.savez(small, **arrays)
    with pytest.raises(ValueError, match="positive_labels"):
        medmnist_lesion_set(small)


def _luna_volume(path, nodule_lps):
    image = sitk.Image(40, 40, 30, sitk.sitkInt16)
    image.SetSpacing((0.8, 0.8, 1.5))
    image.SetOrigin((-16.0, -16.0, -22.0))
    array = np.full((30, 40, 40), -850, np.int16)
    geometry_index = image.TransformPhysicalPointToContinuousIndex(nodule_lps)
    z, y, x = np.mgrid[:30, :40, :40]
    sphere = ((x - geometry_index[0]) * 0.8) ** 2 + ((y - geometry_index[1]) * 0.8) ** 2 + ((z - geometry_index[2]) * 1.5) ** 2 < 16
    array[sphere] = 40
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def test_luna_folder(tmp_path):
    folder = tmp_path / "luna"
    folder.mkdir()
    _luna_volume(folder / "1.2.3.mhd", (2.0, -3.0, 0.0))
    _luna_volume(folder / "1.2.4.mhd", (-4.0, 1.0, 3.0))
    rows = [("1.2.3", 2.0, -3.0, 0.0, 1), ("1.2.3", -8.0, 8.0, -10.0, 0), ("1.2.3", 9.0, 0.0, 5.0, 0),
            ("1.2.4", -4.0, 1.0, 3.0, 1), ("1.2.4", 8.0, 8.0, 8.0, 0), ("1.2.4", 500.0, 0.0, 0.0, 0), ("9.9.9", 0.0, 0.0, 0.0, 1)]
    csv = tmp_path / "candidates.csv"
    pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "class"]).to_csv(csv, index=False)
    with pytest.warns(UserWarning) as caught:
        lesions = luna_lesion_set(folder, csv, LesionPatchConfig(fov_mm=20.0, positive_copies=2))
    messages = " ".join(str(w.message) for w in caught)
    assert "9.9.9" in messages and "outside" in messages
    clean = lesions.index[lesions.index["variant"] == 0]
    assert clean["label"].tolist() == [1, 0, 0, 1, 0]
    nodule = lesions.x[clean.index[clean["label"] == 1]]
    assert nodule[:, :, 15:17, 15:17].mean() == pytest.approx((40 + 1000) / 1400 * 2 - 1)  # HU 40 in the [-1000, 400] window
    assert lesions.x[clean.index[clean["label"] == 0]][:, :, 15:17, 15:17].mean() < 0


def test_luna_csv_errors(tmp_path):
    csv = tmp_path / "c.csv"
    pd.DataFrame({"seriesuid": ["a"], "coordX": [1.0]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="missing columns"):
        luna_lesion_set(tmp_path, csv, LesionPatchConfig())
    pd.DataFrame({"seriesuid": ["a"], "coordX": [1.0], "coordY": [float("nan")], "coordZ": [0.0], "class": [1]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="line"):
        luna_lesion_set(tmp_path, csv, LesionPatchConfig())
