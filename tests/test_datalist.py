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
    item = {"image": "images/a.png", "report": "r", "findings": []}
    datalist = load_datalist(write(tmp_path, {"training": [item]}))
    assert datalist["training"][0]["image"] == str(tmp_path / "images/a.png")


def test_missing_files_are_listed_with_their_items(tmp_path):
    path = write(tmp_path, {"training": [{"image": "images/gone.png", "study_id": "p1_s1", "findings": []}]})
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


def test_bad_items_are_listed_with_the_value_and_the_allowed_values(tmp_path):
    """Before, these loaded: the unknown category became a 0 label, the bad presence a bare KeyError later."""
    def item(study_id, *findings, **fields):
        return {"study_id": study_id, "image": "a.png", "findings": list(findings), **fields}

    datalist = {
        "categories": ["pleural_effusion", "mass"],
        "training": [
            item("p1_s1", {"category": "pleural_efusion", "presence": "present"}),
            item("p2_s1", {"category": "mass", "presence": "present"}, {"category": "mass", "presence": "yes"}),
            item("p3_s1", {"category": "mass", "location": 5}, {"category": "mass", "colour": "white"}),
        ],
        "validation": [{"study_id": "p4_s1", "findings": []}, {"study_id": "p5_s1", "image": "a.png"}],
        "test": [item("p6_s1", {"presence": "present"}), "images/a.png"],
    }
    with pytest.raises(DatalistError) as info:
        load_datalist(write(tmp_path, datalist))
    lines = str(info.value).splitlines()
    assert lines[0] == f"datalist '{tmp_path / 'datalist.json'}' has 8 problem(s) in its items:"
    assert lines[1:-1] == [
        "  training[0] (p1_s1) findings[0]: category 'pleural_efusion' is not one of the categories "
        "pleural_effusion, mass",
        "  training[1] (p2_s1) findings[1]: presence 'yes' of finding 'mass' is not one of present, absent, uncertain",
        "  training[2] (p3_s1) findings[0]: location 5 of finding 'mass' is not a string or null",
        "  training[2] (p3_s1) findings[1]: unknown field(s) ['colour'] in {'category': 'mass', 'colour': 'white'}; "
        "a finding has the fields ['category', 'location', 'severity', 'presence', 'evidence']",
        "  validation[0] (p4_s1) no 'image'",
        "  validation[1] (p5_s1) no 'findings'",
        "  test[0] (p6_s1) findings[0]: {'presence': 'present'} has no category",
        "  test[1] (?) 'images/a.png' is not an item (an object with image, findings)",
    ]
    assert "Fix those items" in lines[-1]


def test_required_keys_and_categories_follow_the_datalist(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    report_only = {"training": [{"image": "a.png", "report": "r"}]}
    assert load_datalist(write(tmp_path, report_only), required_keys=("image",))["training"][0]["report"] == "r"
    # without a "categories" list, any category id is accepted
    free = {"training": [{"image": "a.png", "findings": [{"category": "anything", "presence": "absent"}]}]}
    assert load_datalist(write(tmp_path, free))["training"][0]["findings"][0]["category"] == "anything"
