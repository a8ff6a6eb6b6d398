"""Label tables: TotalSegmentator v2 built in, any other table from a CSV id,name."""

from pathlib import Path

import pytest

from lmtransfer.anatomy.labels import TOTALSEGMENTATOR_V2, LabelTable, LabelTableError

V1_TABLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real_abdomen_ct" / "labels_totalsegmentator_v1.csv"


def test_the_built_in_v2_table_has_its_117_classes_at_their_ids():
    table = LabelTable.resolve("totalsegmentator_v2")
    assert len(TOTALSEGMENTATOR_V2) == 117 and len(set(TOTALSEGMENTATOR_V2)) == 117
    expected = {"spleen": 1, "trachea": 16, "sacrum": 25, "vertebrae_S1": 26, "vertebrae_L1": 31, "vertebrae_C7": 44,
                "aorta": 52, "inferior_vena_cava": 63, "femur_left": 75, "hip_right": 78, "rib_left_1": 92,
                "rib_right_12": 115, "sternum": 116, "costal_cartilages": 117}
    assert {name: table.id_of(name) for name in expected} == expected


def test_the_v1_table_reads_from_its_csv():
    table = LabelTable.resolve(V1_TABLE)
    assert len(table.names) == 104
    assert (table.id_of("aorta"), table.id_of("vertebrae_L5"), table.id_of("femur_right")) == (7, 18, 89)


@pytest.mark.parametrize("text, problem", [
    ("number,label\n1,spleen\n", "id,name"),
    ("id,name\none,spleen\n", "line 2: id 'one'"),
    ("id,name\n1,spleen\n1,liver\n", "line 3"),
    ("id,name\n1,spleen\n2,spleen\n", "line 3"),
    ("id,name\n0,background\n", "line 2"),
])
def test_a_bad_table_is_refused_naming_file_and_line(tmp_path, text, problem):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelTableError, match=problem) as error:
        LabelTable.resolve(path)
    assert str(path) in str(error.value)


def test_an_unknown_table_name_says_what_is_built_in():
    with pytest.raises(LabelTableError, match="totalsegmentator_v2"):
        LabelTable.resolve("totalsegmentator_v3")
