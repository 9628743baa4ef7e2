"""The knowledge base: schema validation, coverage of the required lists, and lookups."""

import copy

import pytest
import yaml

from bundle.knowledge.base import CHEXPERT_LABELS, DEFAULT_KNOWLEDGE_BASE_PATH, KnowledgeBase, KnowledgeBaseError, default_knowledge_base

IU16 = {
    "cardiomegaly", "pleural_effusion", "atelectasis", "opacity", "granuloma", "nodule", "emphysema", "pulmonary_edema",
    "pulmonary_congestion", "pneumonia", "consolidation", "fracture", "scoliosis", "hiatal_hernia", "pneumothorax",
    "airspace_disease",
}  # fmt: skip


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(DEFAULT_KNOWLEDGE_BASE_PATH.read_text())


def test_shipped_base_is_valid_and_covers_required_lists():
    kb = default_knowledge_base()
    assert set(kb.ids_in_list("iu16")) == IU16
    rolled_up = {c.chexpert for c in kb.categories.values()} - {None}
    assert rolled_up == set(CHEXPERT_LABELS) - {"No Finding"}
    assert len(kb.ids_in_list("medklip")) >= 30


def test_synthcxr_categories_are_in_the_base():
    recipes = pytest.importorskip("bundle.data.synthcxr.recipes")
    assert set(recipes.CATEGORY_RECIPES) <= set(default_knowledge_base().categories)


@pytest.mark.parametrize(
    "text, category",
    [("Pleural effusions", "pleural_effusion"), ("pnuemothorax", "pneumothorax"), ("CHF", "heart_failure"),
     ("calcified granulomas", "granuloma"), ("Granulomatous disease", "granuloma"), ("hiatus hernia", "hiatal_hernia"),
     ("air space disease", "airspace_disease"), ("Fx", "fracture"), ("subcutaneous emphysema", "subcutaneous_emphysema"),
     ("pulmonary_edema", "pulmonary_edema"), ("heart", None)],
)  # fmt: skip
def test_category_lookup(text, category):
    assert default_knowledge_base().category_for(text) == category


@pytest.mark.parametrize(
    "text, location",
    [("LT lower lobe", "left lower lobe"), ("bibasilar", "bilateral base"), ("RUL", "right upper lobe"),
     ("left and right bases", "bilateral base"), ("retrocardiac", "retrocardiac"), ("right", "right"),
     ("costophrenic angles", "costophrenic angle"), ("nowhere", None), (None, None)],
)  # fmt: skip
def test_location_normalisation(text, location):
    assert default_knowledge_base().normalise_location(text) == location


def test_severity_normalisation_and_order():
    kb = default_knowledge_base()
    assert [kb.normalise_severity(t) for t in ("trace", "small", "moderate-sized", "large", "increased")] == [
        "minimal", "mild", "moderate", "severe", None
    ]  # fmt: skip
    assert [kb.severity_rank(s) for s in ("minimal", "mild", "moderate", "severe")] == [0, 1, 2, 3]
    assert not set(kb.severities_terms()) & set(kb.change_words)


def test_schema_errors_name_the_entry(raw):
    broken = copy.deepcopy(raw)
    del broken["categories"][2]["synonyms"]
    with pytest.raises(KnowledgeBaseError, match=r"categories/2.*synonyms"):
        KnowledgeBase.from_dict(broken, "kb.yaml")
    bad_term = copy.deepcopy(raw)
    bad_term["severities"]["mild"].append("Mild!")
    with pytest.raises(KnowledgeBaseError, match=r"severities/mild"):
        KnowledgeBase.from_dict(bad_term, "kb.yaml")


def test_duplicate_ids_and_ambiguous_synonyms_are_rejected(raw):
    duplicate = copy.deepcopy(raw)
    duplicate["categories"].append(copy.deepcopy(duplicate["categories"][0]))
    with pytest.raises(KnowledgeBaseError, match="appear more than once"):
        KnowledgeBase.from_dict(duplicate)
    ambiguous = copy.deepcopy(raw)
    ambiguous["categories"][0]["synonyms"].append("pleural effusion")
    with pytest.raises(KnowledgeBaseError, match="'pleural effusion' is listed for both"):
        KnowledgeBase.from_dict(ambiguous)


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        KnowledgeBase.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed")
    with pytest.raises(KnowledgeBaseError, match="not valid UTF-8 YAML"):
        KnowledgeBase.from_yaml(bad)
