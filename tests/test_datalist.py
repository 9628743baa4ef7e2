"""Datalists: paths resolved against the datalist's folder, and clear errors for what is wrong."""

import json

import pytest

from bundle.data.datalist import DatalistError, load_datalist, seen_categories, split_items


def write(tmp_path, datalist) -> str:
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(datalist))
    return str(path)


def test_paths_resolve_relative_to_the_datalist(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images/a.png").write_bytes(b"x")
    datalist = load_datalist(write(tmp_path, {"training": [{"image": "images/a.png", "report": "r"}]}))
    assert datalist["training"][0]["image"] == str(tmp_path / "images/a.png")


def test_missing_files_are_listed_with_their_items(tmp_path):
    path = write(tmp_path, {"training": [{"image": "images/gone.png", "study_id": "p1_s1"}]})
    with pytest.raises(DatalistError, match=r"1 file\(s\) that do not exist:\n  training\[0\] \(p1_s1\) image: .*gone.png"):
        load_datalist(path)


def test_missing_or_broken_datalists_say_what_to_do(tmp_path):
    with pytest.raises(DatalistError, match="make_demo_data.py"):
        load_datalist(tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatalistError, match="not valid JSON"):
        load_datalist(tmp_path / "bad.json")
    with pytest.raises(DatalistError, match="none of the splits"):
        load_datalist(write(tmp_path, {"items": []}))


def test_split_and_category_helpers(tmp_path):
    datalist = {"categories": ["a", "b", "c"], "unseen_categories": ["b"], "training": [{"report": "x"}] * 3}
    assert seen_categories(datalist) == ["a", "c"]
    assert len(split_items(datalist, "training", 2)) == 2
    with pytest.raises(DatalistError, match="no 'test' items"):
        split_items(datalist, "test")
