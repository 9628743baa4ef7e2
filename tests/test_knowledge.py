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


def test_collection_labels_name_categories_and_are_validated(raw):
    """``collection_labels``: a collection's labels that are no synonym of their category (organisms naming
    pneumonia in covid-chestxray); read by bundle/data/collections, checked by the schema."""
    kb = default_knowledge_base()
    assert "Streptococcus" in kb.categories["pneumonia"].extra["collection_labels"]["covid-chestxray"]
    assert kb.categories["airspace_disease"].extra["collection_labels"] == {"covid-chestxray": ["ARDS"]}
    assert kb.category_for("COVID-19") == kb.category_for("covid-19 pneumonia") == "covid19"
    assert kb.category_for("Streptococcus") is None  # not a synonym: reports are read without it
    bad_name = copy.deepcopy(raw)
    bad_name["categories"][0]["collection_labels"] = {"ChestX-ray14": ["Cardiomegaly"]}
    with pytest.raises(KnowledgeBaseError, match=r"categories/0/collection_labels.*'ChestX-ray14' does not match"):
        KnowledgeBase.from_dict(bad_name, "kb.yaml")
    not_a_list = copy.deepcopy(raw)
    not_a_list["categories"][0]["collection_labels"] = {"chestx-ray14": "Cardiomegaly"}
    with pytest.raises(KnowledgeBaseError, match=r"categories/0/collection_labels/chestx-ray14.*not of type 'array'"):
        KnowledgeBase.from_dict(not_a_list, "kb.yaml")


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        KnowledgeBase.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed")
    with pytest.raises(KnowledgeBaseError, match="not valid UTF-8 YAML"):
        KnowledgeBase.from_yaml(bad)


# -- visual attributes and descriptions (IKI) --------------------------------------------------

ATTRIBUTE_KEYS = ("density", "shape", "size", "zone", "laterality", "signs")


def test_every_category_has_a_description_and_attributes_from_the_vocabulary():
    kb = default_knowledge_base()
    assert tuple(kb.attribute_vocabulary) == ATTRIBUTE_KEYS
    assert set(kb.attribute_vocabulary["zone"]) <= set(kb.regions)
    assert set(kb.attribute_vocabulary["laterality"]) <= set(kb.laterality)
    assert len(kb.categories) == 52  # 0.7.0 adds tuberculosis
    for category in kb.categories.values():
        assert category.description.strip() and len(category.description.split()) <= 30, category.id
        assert "\n" not in category.description and not {"ct", "ultrasound", "mri"} & set(category.description.lower().split())
        assert tuple(category.attributes) == ATTRIBUTE_KEYS, category.id
        assert any(category.attributes.values()), f"{category.id} has no attribute at all"
        for key, terms in category.attributes.items():
            assert isinstance(terms, tuple) and set(terms) <= set(kb.attribute_vocabulary[key]), (category.id, key)
        assert "attributes" not in category.extra and "description" not in category.extra


def test_synthcxr_attributes_equal_the_generator_recipes():
    recipes = pytest.importorskip("bundle.data.synthcxr.recipes")
    kb = default_knowledge_base()
    assert set(kb.ids_in_list("synthcxr")) == set(recipes.CATEGORY_RECIPES)
    for key, values in (("density", recipes.DENSITIES), ("shape", recipes.SHAPES), ("size", recipes.SIZES),
                        ("zone", recipes.ZONES), ("laterality", recipes.LATERALITIES), ("signs", recipes.SIGNS)):  # fmt: skip
        assert set(values) <= set(kb.attribute_vocabulary[key]), key
    for category_id, recipe in recipes.CATEGORY_RECIPES.items():
        attributes = kb.categories[category_id].attributes
        expected = {"density": {recipe.density}, "shape": set(recipe.shapes), "size": {recipe.size},
                    "zone": set(recipe.zones), "laterality": set(recipe.lateralities), "signs": set(recipe.signs)}  # fmt: skip
        assert {key: set(terms) for key, terms in attributes.items()} == expected, category_id


def test_recipe_attribute_values_occur_in_several_categories():
    """Compositional transfer: each density, shape, size and sign a recipe draws is shared by >= 2 categories."""
    recipes = pytest.importorskip("bundle.data.synthcxr.recipes")
    kb = default_knowledge_base()
    used = {"density": {r.density for r in recipes.CATEGORY_RECIPES.values()},
            "shape": {s for r in recipes.CATEGORY_RECIPES.values() for s in r.shapes},
            "size": {r.size for r in recipes.CATEGORY_RECIPES.values()},
            "signs": {s for r in recipes.CATEGORY_RECIPES.values() for s in r.signs}}  # fmt: skip
    for key, values in used.items():
        for value in values:
            holders = [c.id for c in kb.categories.values() if value in c.attributes[key]]
            assert len(holders) >= 2, f"{key} {value!r} occurs only in {holders}"


def test_attribute_terms_are_density_size_shape_signs():
    kb = default_knowledge_base()
    assert kb.attribute_terms("pleural_effusion") == ["opaque", "large", "meniscus", "blunted costophrenic angle"]
    assert kb.attribute_terms("bulla") == ["lucent", "large", "round", "thin wall", "absent lung markings"]
    assert kb.attribute_terms("cardiomegaly") == ["opaque", "large", "enlarged silhouette"]
    with pytest.raises(KeyError, match="unknown category id 'nope'"):
        kb.attribute_terms("nope")


def test_unknown_attribute_term_is_rejected(raw):
    broken = copy.deepcopy(raw)
    broken["categories"][0]["attributes"]["shape"].append("star shaped")
    with pytest.raises(KnowledgeBaseError, match=r"category 'cardiomegaly' attribute 'shape' uses 'star shaped'.*attribute_vocabulary\.shape"):
        KnowledgeBase.from_dict(broken, "kb.yaml")
    stray_zone = copy.deepcopy(raw)
    stray_zone["attribute_vocabulary"]["zone"].append("left field")
    with pytest.raises(KnowledgeBaseError, match=r"attribute_vocabulary\.zone terms \['left field'\] are not locations\.regions keys"):
        KnowledgeBase.from_dict(stray_zone, "kb.yaml")


def test_missing_description_or_extra_attribute_key_is_rejected(raw):
    no_description = copy.deepcopy(raw)
    del no_description["categories"][3]["description"]
    with pytest.raises(KnowledgeBaseError, match=r"entry 'categories/3': 'description' is a required property"):
        KnowledgeBase.from_dict(no_description, "kb.yaml")
    extra_key = copy.deepcopy(raw)
    extra_key["categories"][1]["attributes"]["colour"] = ["white"]
    with pytest.raises(KnowledgeBaseError, match=r"categories/1/attributes.*'colour' was unexpected"):
        KnowledgeBase.from_dict(extra_key, "kb.yaml")
    missing_key = copy.deepcopy(raw)
    del missing_key["categories"][1]["attributes"]["signs"]
    with pytest.raises(KnowledgeBaseError, match=r"categories/1/attributes.*'signs' is a required property"):
        KnowledgeBase.from_dict(missing_key, "kb.yaml")
    no_vocabulary = copy.deepcopy(raw)
    del no_vocabulary["attribute_vocabulary"]["signs"]
    with pytest.raises(KnowledgeBaseError, match=r"attribute_vocabulary.*'signs' is a required property"):
        KnowledgeBase.from_dict(no_vocabulary, "kb.yaml")


# -- statements of normality ---------------------------------------------------------------------


def test_normal_statements_name_known_categories(raw):
    kb = default_knowledge_base()
    assert kb.normal_index.get("normal heart size") == ("cardiomegaly",)
    unknown = copy.deepcopy(raw)
    unknown["normal_statements"].append({"term": "heart ... fine", "categories": ["heart"]})
    with pytest.raises(KnowledgeBaseError, match=r"normal statement 'heart \.\.\. fine' names unknown categories \['heart'\]"):
        KnowledgeBase.from_dict(unknown)
    clash = copy.deepcopy(raw)
    clash["normal_statements"].append({"term": "enlarged heart", "categories": ["cardiomegaly"]})
    with pytest.raises(KnowledgeBaseError, match="'enlarged heart' is also a category synonym"):
        KnowledgeBase.from_dict(clash)
