"""params.yaml is checked once, at loading: types (list elements too), strings, ranges; errors name file and key."""

import re
from pathlib import Path

import pytest
import yaml

from lmtransfer.config import ConfigError, load_params

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_the_project_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.phantom_ct.phantom.slice_mm_choices == (2.0, 2.5, 3.0)
    assert params.data.source == "phantom" and params.data.landmarks == Path("data/phantom_ct/landmarks")
    assert params.tune.study_name == "lm-cnn-search"


@pytest.mark.parametrize("text, message", [
    ("phantom_ct:\n  slice_mm_choices: [thin]\n", "phantom_ct.slice_mm_choices[0]: expected a number, got 'thin'"),
    ("tune:\n  study_name: 7\n", "tune.study_name: expected a string, got 7"),
    ("tune:\n  depth_choices: [2, 2.5]\n", "tune.depth_choices[1]: expected a whole number, got 2.5"),
    ("phantom_ct:\n  noise_hu_range: [8]\n", "phantom_ct.noise_hu_range: expected 2 values, got 1"),
    ("data:\n  folder: [7]\n", "data.folder: expected a path, got [7]"),
    ("data:\n  source: s3\n", "data.source must be one of ['phantom', 'folder'], got 's3'"),
    ("ingest:\n  strict: yes please\n", "ingest.strict: expected true or false"),
    ("ingest:\n  workers: 0\n", "ingest.workers: must be at least 1, got 0"),
    ("patches:\n  fov_mm: -48\n", "patches.fov_mm: must not be negative"),
    ("phantom_ct:\n  fov_cut_probability: 1.5\n", "phantom_ct.fov_cut_probability: must lie in [0, 1]"),
    ("pretrain:\n  lr: -0.1\n", "pretrain.lr: must not be negative"),
    ("detect:\n  refine_steps_mm: [4, -1]\n", "detect.refine_steps_mm: must not be negative"),
    ("detect:\n  min_probability: 2\n", "detect.min_probability: must lie in [0, 1]"),
    ("tune:\n  lr_range: [0.1, 0.01]\n", "tune: tune.lr_range: expected [low, high]"),
    ("phantom_ct:\n  psf_sigma_inplane_mm: [1.5, 0.45]\n", "phantom_ct.psf_sigma_inplane_mm: expected [low, high]"),
    ("phantom_ct:\n  psf_sigma_inplane_mm: [0, 1.5]\n", "phantom_ct.psf_sigma_inplane_mm: expected [low, high]"),
])
def test_bad_values_are_named(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_params(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_unknown_keys_and_sections(tmp_path):
    with pytest.raises(ConfigError, match=r"phantom_ct: unknown key\(s\) \['n_case'\]"):
        load_params(_write(tmp_path, "phantom_ct:\n  n_case: 3\n"))
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['phantoms'\]"):
        load_params(_write(tmp_path, "phantoms: {}\n"))


def test_intervals_may_be_negative(tmp_path):
    """A position interval in mm is not a length: ``slab_mm`` spans both sides of its centre."""
    params = load_params(_write(tmp_path, yaml.safe_dump({"phantom_mra": {"slab_mm": [-30.0, 30.0]}})))
    assert params.phantom_mra.phantom.slab_mm == (-30.0, 30.0)


def test_threads_are_one_setting(tmp_path):
    params = load_params(_write(tmp_path, "compute:\n  threads: 3\n"))
    assert params.pretrain.train.threads == params.cifar.cifar.threads == params.detect.detect.threads == 3
    with pytest.raises(ConfigError, match=r"pretrain.threads, transfer.threads: the CPU threads are one setting now, compute.threads"):
        load_params(_write(tmp_path, "pretrain:\n  threads: 2\ntransfer:\n  threads: 1\n"))


FOLDER = "data:\n  source: folder\n  render: []\n  folder: data/my_ct\n"


def test_a_folder_collection(tmp_path):
    assert load_params(_write(tmp_path, FOLDER + "  label_table: data/my_ct/labels.csv\n")).data.label_table == "data/my_ct/labels.csv"
    params = load_params(_write(tmp_path, FOLDER))
    assert params.data.images == Path("data/my_ct/images") and params.data.segmentations == Path("data/my_ct/segmentations")


@pytest.mark.parametrize("text, message", [
    # the DVC switch and the source disagree: dvc repro would render the phantom for a folder source, or not for the phantom
    (FOLDER.replace("render: []", "render: [torso]"), "data.render must be [] with data.source folder"),
    ("data:\n  render: []\n", "data.render must be ['torso'] with data.source phantom"),
    ("data:\n  render: [brain]\n", "data.render: unknown phantom(s) ['brain']"),
    ("phantom_ct:\n  out_dir: data/p\n", "phantom_ct.out_dir: the phantom renders into data.folder now"),
    (FOLDER + "  label_table: tables/v1.csv\n", "data.label_table tables/v1.csv: a table of your own (CSV id,name) goes in data.folder"),
    ("ingest:\n  images: my_ct/images\n", "ingest.images: what is read is the data section now"),
])
def test_a_collection_that_contradicts_itself_is_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(_write(tmp_path, text))


def test_commands_run_without_a_params_file(tmp_path, monkeypatch):
    """Outside a project the defaults apply; a parameter file named but absent is still an error."""
    from argparse import Namespace

    from lmtransfer.stages import stage_params

    monkeypatch.chdir(tmp_path)
    assert stage_params(Namespace(params=None)).ingest.out_dir == Path("data/manifest")
    assert stage_params(Namespace(params="params.yaml")).data.source == "phantom"
    with pytest.raises(ConfigError, match="elsewhere.yaml: parameter file not found"):
        stage_params(Namespace(params="elsewhere.yaml"))
