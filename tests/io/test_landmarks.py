import json

import numpy as np
import pytest

from conftest import DIRECTIONS, make_image
from lmtransfer.io.coords import Geometry
from lmtransfer.io.landmarks import (
    LandmarkFileError,
    landmarks_to_lps,
    read_landmarks,
    write_slicer_json,
)

POINT_LPS = np.array([12.5, -40.25, -98.0])


def test_csv_lps_ras_and_voxel_rows(tmp_path):
    geometry = Geometry.from_sitk(make_image(direction=DIRECTIONS["oblique"]))
    ijk = geometry.lps_to_index(POINT_LPS)
    path = tmp_path / "points.csv"
    path.write_text(
        "case,landmark,x,y,z,space\n"
        f"c1,a,{POINT_LPS[0]},{POINT_LPS[1]},{POINT_LPS[2]},LPS\n"
        f"c1,b,{-POINT_LPS[0]},{-POINT_LPS[1]},{POINT_LPS[2]},RAS\n"
        f"c1,c,{ijk[0]},{ijk[1]},{ijk[2]},voxel\n"
    )
    frame = read_landmarks(path)
    assert frame["case"].tolist() == ["c1"] * 3
    np.testing.assert_allclose(landmarks_to_lps(frame, geometry), np.tile(POINT_LPS, (3, 1)), atol=1e-9)


def test_csv_without_case_column_defaults_to_lps(tmp_path):
    path = tmp_path / "case_9.csv"
    path.write_text("landmark,x,y,z\ncarina,1,2,3\n")
    frame = read_landmarks(path)
    assert frame["case"].isna().all() and frame["space"].tolist() == ["LPS"]


def test_csv_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name,x,y\nfoo,1,2\n")
    with pytest.raises(LandmarkFileError, match="bad.csv: missing column"):
        read_landmarks(path)
    path.write_text("landmark,x,y,z,space\nfoo,1,2,3,MNI152\n")
    with pytest.raises(LandmarkFileError, match=r"bad.csv: line 2: unknown coordinate system 'MNI152'"):
        read_landmarks(path)


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_slicer_json_round_trip_and_ras(tmp_path, system):
    path = tmp_path / "c.mrk.json"
    write_slicer_json(path, ["carina"], POINT_LPS[None])
    if system == "RAS":
        document = json.loads(path.read_text())
        document["markups"][0]["coordinateSystem"] = "RAS"
        document["markups"][0]["controlPoints"][0]["position"] = [-POINT_LPS[0], -POINT_LPS[1], POINT_LPS[2]]
        path.write_text(json.dumps(document))
    frame = read_landmarks(path)
    assert frame["landmark"].tolist() == ["carina"] and frame["space"].tolist() == [system]
    np.testing.assert_allclose(landmarks_to_lps(frame, Geometry.from_sitk(make_image()))[0], POINT_LPS)


def test_slicer_json_unknown_system(tmp_path):
    path = tmp_path / "c.mrk.json"
    path.write_text(json.dumps({"markups": [{"coordinateSystem": "XYZ", "controlPoints": []}]}))
    with pytest.raises(LandmarkFileError, match="unknown coordinate system 'XYZ'"):
        read_landmarks(path)


@pytest.mark.parametrize("header,flip", [("# CoordinateSystem = RAS", True), ("# CoordinateSystem = LPS", False),
                                         ("# CoordinateSystem = 0", True), ("# CoordinateSystem = 1", False), ("", True)])
def test_fcsv_coordinate_system_header(tmp_path, header, flip):
    x, y, z = (-POINT_LPS[0], -POINT_LPS[1], POINT_LPS[2]) if flip else POINT_LPS
    path = tmp_path / "c.fcsv"
    path.write_text(
        "# Markups fiducial file version = 4.11\n" + (header + "\n" if header else "")
        + "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        + f"vtkMRMLMarkupsFiducialNode_0,{x},{y},{z},0,0,0,1,1,1,0,T7_body_centre,,\n"
    )
    frame = read_landmarks(path)
    assert frame["landmark"].tolist() == ["T7_body_centre"]
    np.testing.assert_allclose(landmarks_to_lps(frame, Geometry.from_sitk(make_image()))[0], POINT_LPS, atol=1e-9)


@pytest.mark.parametrize("direction", ["identity", "ras_like", "permuted"])
def test_verse_centroids_map_to_the_right_voxel(tmp_path, direction):
    """Write a centroid in the VerSe P-I-R voxel frame by hand and read it back in LPS mm."""
    image = make_image(size=(12, 10, 8), direction=DIRECTIONS[direction])
    geometry = Geometry.from_sitk(image)
    ijk = np.array([3.0, 7.0, 2.0])
    # the image axis pointing along each RAS axis, and whether it runs that way
    ras_dirs = geometry.direction * np.array([[-1.0], [-1.0], [1.0]])
    verse = []
    for code in "PIR":
        ras_axis, positive = {"P": (1, False), "I": (2, False), "R": (0, True)}[code]
        image_axis = int(np.argmax(np.abs(ras_dirs[ras_axis])))
        same = (ras_dirs[ras_axis, image_axis] > 0) == positive
        value = ijk[image_axis] if same else geometry.size_ijk[image_axis] - ijk[image_axis]
        verse.append(value)
    path = tmp_path / "sub-01_seg-subreg_ctd.json"
    path.write_text(json.dumps([{"direction": ["P", "I", "R"]}, {"label": 20, "X": verse[0], "Y": verse[1], "Z": verse[2]}]))
    frame = read_landmarks(path)
    assert frame["landmark"].tolist() == ["L1_body_centre"]   # VerSe's vertebrae as our kinds
    np.testing.assert_allclose(landmarks_to_lps(frame, geometry)[0], geometry.index_to_lps(ijk), atol=1e-9)


def test_verse_bad_direction(tmp_path):
    path = tmp_path / "x_ctd.json"
    path.write_text(json.dumps([{"direction": ["P", "Q", "R"]}]))
    with pytest.raises(LandmarkFileError, match="unknown coordinate system direction"):
        read_landmarks(path)


def test_unknown_file_type(tmp_path):
    path = tmp_path / "points.txt"
    path.write_text("1 2 3")
    with pytest.raises(LandmarkFileError, match="points.txt: unknown landmark file type"):
        read_landmarks(path)
