"""IKI: finding texts and zero-shot prompts composed from the knowledge base, field dropping, training-text selection."""

import numpy as np
import pytest
import torch

from bundle.findings import Finding
from bundle.knowledge import default_knowledge_base
from bundle.knowledge.iki import FindingTextComposer, TextKind, tidy
from bundle.losses import FindingsVocabulary
from bundle.transforms import ComposeFindingTextsd, TokenizeTextd

KB = default_knowledge_base()


def test_template_composition_is_exact():
    composer = FindingTextComposer(KB)
    text = composer.compose(Finding("pleural_effusion", "left base", "moderate"))
    terms = ", ".join(KB.attribute_terms("pleural_effusion"))
    assert text.text == f"moderate left base pleural effusion: {terms}"
    assert text.kind is TextKind.PRESENT and text.name_kept and text.attribute_terms == tuple(KB.attribute_terms("pleural_effusion"))
    assert composer.compose(Finding("pneumothorax", presence="absent")).text == "no pneumothorax"
    assert composer.compose(Finding("nodule", presence="uncertain")).text.startswith("possible nodule: opaque")
    assert composer.compose(None).text == "no acute cardiopulmonary finding"


def test_templates_and_description_come_from_the_config():
    composer = FindingTextComposer(KB, templates={"present": "{name}. {description}"})
    text = composer.compose(Finding("cardiomegaly"))
    assert text.text == f"{KB.categories['cardiomegaly'].name}. {KB.categories['cardiomegaly'].description}"


def test_iki_off_names_but_never_describes():
    composer = FindingTextComposer(KB, iki=False)
    text = composer.compose(Finding("bulla", "left apex", "mild"))
    assert text.text == "mild left apex bulla" and text.attribute_terms == ()
    assert composer.prompts("bulla") == ("bulla", "no bulla")


def test_zero_shot_prompts_of_an_unseen_category_describe_it_from_the_knowledge_base():
    positive, negative = FindingTextComposer(KB).prompts("mass")
    assert positive == "mass: " + ", ".join(KB.attribute_terms("mass")) and negative == "no mass"


def test_softmax_zero_shot_competes_with_the_no_finding_text_of_the_same_composer():
    from bundle.engines import ZeroShotInferer

    def tokenizer(texts):
        return torch.zeros(len(texts), 4, dtype=torch.long)

    composer = FindingTextComposer(KB, templates={"no_finding": "nothing acute"})
    softmax = ZeroShotInferer.from_composer(["mass", "bulla"], composer, tokenizer, "softmax")
    assert softmax.background == "nothing acute" and len(softmax.tokens) == 5
    assert softmax.prompts == [composer.prompts("mass"), composer.prompts("bulla")]
    assert ZeroShotInferer.from_composer(["mass"], composer, tokenizer, "positive").background is None


def test_field_dropping_never_leaves_a_text_without_name_and_attributes():
    composer = FindingTextComposer(KB, drop_probabilities={f: 1.0 for f in ("severity", "location", "name", "attributes")},
                                   attribute_term_drop_probability=1.0)  # fmt: skip
    rng = np.random.default_rng(0)
    seen_name = seen_attributes = 0
    for _ in range(300):
        text = composer.compose(Finding("pleural_effusion", "right base", "mild"), rng)
        assert text.text and (text.name_kept or text.attribute_terms)
        assert text.location is None and text.severity is None
        assert "right" not in text.text and "mild" not in text.text
        assert len(text.attribute_terms) <= 1
        seen_name += text.name_kept
        seen_attributes += bool(text.attribute_terms)
    assert seen_name > 100 and seen_attributes > 100  # either may be the survivor


def test_dropping_follows_its_probabilities_and_kept_fields_are_recorded():
    composer = FindingTextComposer(KB, drop_probabilities={"location": 0.5})
    rng = np.random.RandomState(1)  # MONAI's Randomizable hands a RandomState
    texts = [composer.compose(Finding("atelectasis", "left lower zone", "mild"), rng) for _ in range(400)]
    kept = sum(t.location is not None for t in texts)
    assert 150 < kept < 250
    assert all(("left lower zone" in t.text) == (t.location is not None) for t in texts)
    assert all(t.severity == "mild" and t.name_kept for t in texts)


def test_bad_templates_and_probabilities_are_refused():
    with pytest.raises(ValueError, match="unknown field"):
        FindingTextComposer(KB, templates={"present": "{name} {colour}"})
    with pytest.raises(ValueError, match="must contain"):
        FindingTextComposer(KB, templates={"absent": "nothing here"})
    with pytest.raises(ValueError, match="probability"):
        FindingTextComposer(KB, drop_probabilities={"name": 1.5})
    with pytest.raises(ValueError, match="unknown field"):
        FindingTextComposer(KB, drop_probabilities={"colour": 0.5})


def test_tidy_removes_what_empty_fields_leave():
    assert tidy("  left  : opaque, ") == "left: opaque"
    assert tidy(" : opaque") == "opaque"


def test_training_texts_of_an_item_positives_first_negations_then_sampled_capped_and_padded():
    vocabulary = FindingsVocabulary(KB)
    transform = ComposeFindingTextsd("findings", FindingTextComposer(KB), vocabulary, max_texts=4,
                                     negatable_categories=["cardiomegaly", "pneumothorax", "mass"], sampled_negations=2)  # fmt: skip
    transform.set_random_state(0)
    findings = [Finding("nodule", "left upper zone").to_dict(), Finding("cardiomegaly", presence="absent").to_dict()]
    out = transform({"findings": findings})
    kinds = out["text_code"][:, 0].tolist()
    assert out["text"][0].startswith("left upper zone nodule") and out["text"][1] == "no cardiomegaly"
    assert kinds == [TextKind.PRESENT, TextKind.ABSENT, TextKind.ABSENT, TextKind.ABSENT]
    assert set(out["text"][2:]) == {"no pneumothorax", "no mass"}
    normal = transform({"findings": []})
    assert normal["text"][0] == "no acute cardiopulmonary finding" and len(normal["text"]) == 3
    assert normal["text_code"][3, 0] == TextKind.PADDING
    tokens = TokenizeTextd("text", lambda texts: torch.ones(len(texts), 5, dtype=torch.long), pad_to=4)(normal)["text"]
    assert tokens.shape == (4, 5) and tokens[3].sum() == 0


def test_held_out_categories_are_never_named_in_training_texts():
    transform = ComposeFindingTextsd("findings", FindingTextComposer(KB), FindingsVocabulary(KB), max_texts=8,
                                     negatable_categories=["cardiomegaly", "nodule"], sampled_negations=8)  # fmt: skip
    transform.set_random_state(3)
    for _ in range(50):
        texts = transform({"findings": [Finding("pneumothorax").to_dict()]})["text"]
        assert not any("mass" in t or "bulla" in t for t in texts)
