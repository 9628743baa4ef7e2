"""Findings transforms and the image loader name the item, the bad value and the allowed values."""

from __future__ import annotations

import pytest
import torch

from bundle.data.datalist import DatalistError
from bundle.knowledge import default_knowledge_base
from bundle.knowledge.iki import FindingTextComposer
from bundle.losses import FindingsVocabulary
from bundle.transforms import ComposeFindingTextsd, EncodeFindingsd, FindingsToLabelsd, LoadChestXRayd

CATEGORIES = ["pleural_effusion", "mass"]


def item(*findings: dict) -> dict:
    return {"study_id": "p7_s1", "image": "images/p7_s1.png", "findings": list(findings)}


@pytest.fixture(scope="module")
def vocabulary() -> FindingsVocabulary:
    return FindingsVocabulary(default_knowledge_base())


def test_labels_refuse_an_unknown_category_instead_of_a_silent_zero():
    labels = FindingsToLabelsd("findings", CATEGORIES)
    with pytest.raises(DatalistError, match=r"item study_id='p7_s1', key 'findings': findings\[0\]: category "
                                            r"'pleural_efusion' is not one of the categories pleural_effusion, mass\. "
                                            r".*ignored_categories"):
        labels(item({"category": "pleural_efusion", "presence": "present"}))
    # a category known to have no channel (e.g. held out) is named in ignored_categories and skipped
    held_out = FindingsToLabelsd("findings", CATEGORIES, ignored_categories=["bulla"])
    out = held_out(item({"category": "bulla", "presence": "present"}, {"category": "mass", "presence": "uncertain"}))
    assert torch.equal(out["label"], torch.tensor([0.0, 1.0]))


def test_labels_refuse_a_bad_presence_with_the_allowed_values():
    with pytest.raises(DatalistError, match=r"study_id='p7_s1'.*presence 'yes' of finding 'mass' is not one of "
                                            r"present, absent, uncertain"):
        FindingsToLabelsd("findings", CATEGORIES)(item({"category": "mass", "presence": "yes"}))


def test_missing_findings_or_image_names_the_item(tmp_path):
    with pytest.raises(DatalistError, match=r"item study_id='p7_s1' has no 'findings', which FindingsToLabelsd needs"):
        FindingsToLabelsd("findings", CATEGORIES)({"study_id": "p7_s1"})
    with pytest.raises(DatalistError, match=r"item study_id='p7_s1' has no 'image', which LoadChestXRayd needs.*"
                                            r"allow_missing_keys"):
        LoadChestXRayd("image")({"study_id": "p7_s1", "findings": []})
    assert "lung_mask" not in LoadChestXRayd("lung_mask", allow_missing_keys=True)({"study_id": "p7_s1"})


def test_encoding_names_the_item_for_a_record_without_category_or_a_bad_presence(vocabulary):
    encode = EncodeFindingsd("findings", vocabulary)
    with pytest.raises(DatalistError, match=r"study_id='p7_s1'.*\{'presence': 'present'\} has no category"):
        encode(item({"presence": "present"}))  # was a bare KeyError: 'category'
    with pytest.raises(DatalistError, match=r"presence 'yes' of finding 'mass' is not one of present, absent"):
        encode(item({"category": "mass", "presence": "yes"}))
    with pytest.raises(DatalistError, match=r"item image='x.png' has no 'findings', which EncodeFindingsd needs"):
        encode({"image": "x.png"})
    assert encode(item({"category": "mass", "presence": "present"}))["findings_code"].shape == (16, 5)


def test_text_composition_names_the_item(vocabulary):
    compose = ComposeFindingTextsd("findings", FindingTextComposer(default_knowledge_base()), vocabulary)
    with pytest.raises(DatalistError, match=r"study_id='p7_s1'.*presence 'maybe' of finding 'mass'"):
        compose(item({"category": "mass", "presence": "maybe"}))
    assert compose(item({"category": "mass", "presence": "present"}))["text"]
