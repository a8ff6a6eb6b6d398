"""Phantom sets resume by stamps kept beside the set: a code change that keeps the voxels keeps the set's bytes."""

import hashlib
from pathlib import Path

import pytest

from lmtransfer.phantoms.dataset import resume_dir
from lmtransfer.phantoms.torso_ct import PhantomCTConfig, generate_dataset

TINY = PhantomCTConfig(n_cases=2, spacing_inplane_mm=3.0, slice_mm_choices=(3.0,), slice_mm_weights=(1.0,))


def folder_digest(folder: Path) -> str:
    """The bytes of every file under ``folder`` with their relative paths (what DVC's hash depends on)."""
    digest = hashlib.md5()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def image_times(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (folder / "images").iterdir()}


@pytest.fixture()
def rendered(tmp_path):
    out = tmp_path / "phantom_ct"
    generate_dataset(TINY, out, workers=1, progress=False)
    return out


def test_a_code_change_that_keeps_the_voxels_keeps_the_sets_bytes(rendered, monkeypatch):
    before, times = folder_digest(rendered), image_times(rendered)
    assert sorted(p.name for p in resume_dir(rendered).iterdir()) == ["case_000.json", "case_001.json"]
    # what an edit of the rendering code does: the fingerprint (settings + code digest) changes
    monkeypatch.setattr(PhantomCTConfig, "fingerprint", lambda self: "other code")
    generate_dataset(TINY, rendered, workers=1, progress=False)
    assert all(image_times(rendered)[name] != t for name, t in times.items())   # every case rendered again ...
    assert folder_digest(rendered) == before                                     # ... to the same bytes


def test_resume_keeps_stamped_cases_and_redoes_touched_or_unstamped_ones(rendered):
    times = image_times(rendered)
    generate_dataset(TINY, rendered, workers=1, progress=False)
    assert image_times(rendered) == times                                        # nothing to do
    labels = rendered / "labels" / "case_000.nii.gz"
    labels.write_bytes(labels.read_bytes())                                      # replaced after its stamp
    (resume_dir(rendered) / "case_001.json").unlink()                            # killed before its stamp
    generate_dataset(TINY, rendered, workers=1, progress=False)
    after = image_times(rendered)
    assert after["case_000.nii.gz"] != times["case_000.nii.gz"] and after["case_001.nii.gz"] != times["case_001.nii.gz"]


def test_fewer_cases_remove_the_extra_stamps(rendered):
    generate_dataset(PhantomCTConfig(**{**TINY.__dict__, "n_cases": 1}), rendered, workers=1, progress=False)
    assert [p.name for p in resume_dir(rendered).iterdir()] == ["case_000.json"]


def test_the_code_is_hashed_once_per_set_not_once_per_case(tmp_path, monkeypatch):
    from lmtransfer.phantoms import torso_ct

    calls = []
    digest = torso_ct.source_digest
    monkeypatch.setattr(torso_ct, "source_digest", lambda module: calls.append(module) or digest(module))
    generate_dataset(TINY, tmp_path / "phantom_ct", workers=1, progress=False)
    assert len(calls) == 1      # it parses every module of the renderer: once more per case before
