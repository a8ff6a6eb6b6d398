import pytest
import yaml

from lmtransfer.tuning.apply import apply_best, set_values

PARAMS = """\
patches:
  fov_mm: 48.0                # mm (searched)
  pixels: 32
pretrain:
  depth: 3                    # blocks
  lr: 0.001
  weight_decay: 0.0001
tune:
  depth_choices: [2, 3]
"""


def test_best_setting_is_written_in_place_keeping_comments(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    changes = apply_best(path, {"fov_mm": 64.0, "depth": 4, "lr": 0.000412345678, "weight_decay": 2.5e-5, "unknown": 1})
    assert changes == {"patches.fov_mm": (48.0, 64.0), "pretrain.depth": (3, 4), "pretrain.lr": (0.001, 0.000412346),
                       "pretrain.weight_decay": (0.0001, 2.5e-5)}
    text = path.read_text()
    assert "fov_mm: 64.0                # mm (searched)" in text and "depth: 4                    # blocks" in text
    loaded = yaml.safe_load(text)
    assert loaded["pretrain"]["weight_decay"] == pytest.approx(2.5e-5) and isinstance(loaded["pretrain"]["weight_decay"], float)
    assert loaded["tune"]["depth_choices"] == [2, 3]  # other sections untouched


def test_missing_keys_are_reported_and_nothing_is_written(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    with pytest.raises(KeyError, match="no key 'width' in section 'pretrain'"):
        set_values(path, {"pretrain.depth": 5, "pretrain.width": 8})
    with pytest.raises(KeyError, match="no section 'model'"):
        set_values(path, {"model.depth": 5})
    assert path.read_text() == PARAMS


def test_a_new_field_of_view_moves_the_native_lesion_patches_with_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS + "lesion:\n  fov_mm: 24.0\n  native_fov_mm: 48.0   # the CNN's own\n")
    changes = apply_best(path, {"fov_mm": 32.0})
    assert changes == {"patches.fov_mm": (48.0, 32.0), "lesion.native_fov_mm": (48.0, 32.0)}
    assert yaml.safe_load(path.read_text())["lesion"]["fov_mm"] == 24.0       # the lesion default stays
    path.write_text(PARAMS + "lesion:\n  native_fov_mm: 0.0\n")                # no native patches: left alone
    assert apply_best(path, {"fov_mm": 32.0}) == {"patches.fov_mm": (48.0, 32.0)}
