"""Lesion sources are a registry: each reads its own ``lesion.<name>`` settings, the phantom's folders
come from the stages that write them, and a new source needs no change to the CLI or the config."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmtransfer.cli import main
from lmtransfer.config import ConfigError, load_params
from lmtransfer.transfer import lesion_sources
from lmtransfer.transfer.lesion_sources import LESION_SOURCES, Luna16Lesions, MedMNISTLesions, PhantomLesions
from lmtransfer.transfer.lesions import INDEX_COLUMNS, LesionSet, load_lesion_set


def _params(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_each_source_reads_its_nested_settings(tmp_path):
    params = load_params(_params(tmp_path, "phantom_mra:\n  out_dir: elsewhere/mra\nvessels:\n  out_dir: elsewhere/vessels\n"
                                 "lesion:\n  source: luna16\n  medmnist:\n    npz: a.npz\n    positive_labels: [1, 2]\n"
                                 "  luna16:\n    dir: scans\n    candidates: c.csv\n    hu_window: [-900, 300]\n"))
    assert params.lesion.settings() == Luna16Lesions(dir="scans", candidates="c.csv", hu_window=(-900.0, 300.0))
    assert params.lesion.settings("medmnist") == MedMNISTLesions(npz="a.npz", positive_labels=(1, 2))
    # the phantom source reads where the MRA phantom and the vessel masks were written: named once, there
    assert params.lesion.settings("phantom") == PhantomLesions(Path("elsewhere/mra"), Path("elsewhere/vessels"))
    assert params.lesion.settings("luna16").inputs() == (Path("scans"), Path("c.csv"))


@pytest.mark.parametrize("text, message", [
    ("lesion:\n  medmnist_npz: a.npz\n", r"\['medmnist_npz'\]: each lesion source has its own settings now: lesion.medmnist.npz"),
    ("lesion:\n  source: dicomweb\n", r"lesion.source must be one of \['luna16', 'lung_nodules', 'medmnist', 'phantom'\], got 'dicomweb'"),
    ("lesion:\n  luna16:\n    hu_window: [0]\n", r"lesion.luna16.hu_window: expected 2 values"),
    ("lesion:\n  phantom:\n    phantom_dir: x\n", r"lesion.phantom: the phantom source has no settings of its own"),
])
def test_bad_lesion_settings_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_params(_params(tmp_path, text))


def test_medmnist_through_the_stage(tmp_path, shared_data, capsys):
    params = _params(tmp_path, f"lesion:\n  source: medmnist\n  medmnist:\n    npz: {shared_data / 'adrenalmnist3d.npz'}\n")
    assert main(["lesion-patches", "--params", str(params), "--out", str(tmp_path / "set"), "--quiet"]) == 0
    lesions = load_lesion_set(tmp_path / "set")
    assert set(np.unique(lesions.index["label"])) == {0, 1} and lesions.x.shape[1:] == (3, 32, 32)
    assert "lesion patches (medmnist)" in capsys.readouterr().out


@dataclass(frozen=True)
class _Stripes:
    """Stripes: a made-up fourth source (lesion: vertical stripes)."""

    cases: int = 4

    def inputs(self) -> tuple[Path, ...]:
        return ()

    def build(self, patch, workers: int = 1, progress: bool = False) -> LesionSet:
        x = np.zeros((2 * self.cases, 3, patch.pixels, patch.pixels), np.float32)
        x[::2, :, :, ::4] = 1.0
        index = pd.DataFrame({"case": [f"s{i // 2}" for i in range(2 * self.cases)], "label": [1, 0] * self.cases, "variant": 0,
                              "kind": ["stripes", "flat"] * self.cases, "x_lps_mm": 0.0, "y_lps_mm": 0.0, "z_lps_mm": 0.0,
                              "fixed_split": ""})
        return LesionSet(x, index[INDEX_COLUMNS], {"source": "stripes"})


def test_a_fourth_source_needs_only_its_registration(tmp_path, monkeypatch):
    monkeypatch.setitem(LESION_SOURCES, "stripes", _Stripes)
    assert lesion_sources.LESION_SOURCES["stripes"] is _Stripes
    params = _params(tmp_path, "lesion:\n  source: stripes\n  stripes:\n    cases: 3\n")
    assert load_params(params).lesion.settings() == _Stripes(cases=3)
    assert main(["lesion-patches", "--params", str(params), "--out", str(tmp_path / "set"), "--quiet"]) == 0
    assert len(load_lesion_set(tmp_path / "set").x) == 6
