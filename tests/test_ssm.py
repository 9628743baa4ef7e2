"""SSM targets, computed by hand for small batches: duplicates, negations, masked fields, grading."""

import pytest
import torch

from bundle.findings import Finding
from bundle.knowledge import default_knowledge_base
from bundle.knowledge.iki import FindingText, TextKind
from bundle.losses import FindingsVocabulary, OwnTextTargets, SemanticSimilarityMatrix

KB = default_knowledge_base()
VOCAB = FindingsVocabulary(KB)


def effusion(location=None, severity=None, presence="present"):
    return Finding("pleural_effusion", location, severity, presence)


def text(kind=TextKind.PRESENT, category="pleural_effusion", name=True, terms=(), location=None, severity=None):
    return FindingText("unused", kind, category, name, tuple(terms), location, severity)


def targets_for(images, texts, **options):
    """Targets ``[len(images), len(texts)]`` with every text in one slot row (T = len(texts))."""
    findings = torch.stack([VOCAB.encode_findings(f, 4) for f in images])
    codes, attributes = VOCAB.encode_texts(texts, len(texts))
    # put all texts in the first image's slots and empty slots for the others
    text_codes = torch.stack([codes] + [VOCAB.encode_texts([], len(texts))[0]] * (len(images) - 1))
    text_attributes = torch.stack([attributes] + [torch.zeros_like(attributes)] * (len(images) - 1))
    ssm = SemanticSimilarityMatrix(VOCAB, **options)
    targets, weights = ssm(findings, text_codes, text_attributes)
    return targets[:, : len(texts)], weights[:, : len(texts)]


def test_duplicate_findings_across_images_are_positives_not_false_negatives():
    images = [[effusion("right base", "moderate")], [effusion("right base", "moderate")], []]
    targets, weights = targets_for(images, [text(location="right base", severity="moderate")])
    assert targets[:, 0].tolist() == [1.0, 1.0, 0.0]
    assert weights[:, 0].tolist() == [1.0, 1.0, 1.0]


def test_polarity_positive_never_matches_a_denial_and_no_x_matches_images_without_x():
    images = [[effusion()], [effusion(presence="absent")], [Finding("cardiomegaly")]]
    positive, negative = text(), text(TextKind.ABSENT)
    targets, weights = targets_for(images, [positive, negative], unmentioned="absent")
    assert targets.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    assert weights.tolist() == [[1.0, 1.0]] * 3


def test_unmentioned_categories_are_unknown_for_negations_on_real_reports():
    images = [[effusion()], [effusion(presence="absent")], [Finding("cardiomegaly")]]
    targets, weights = targets_for(images, [text(), text(TextKind.ABSENT)], unmentioned="unknown")
    # image 2 never mentions effusion: "no pleural effusion" is left out of the loss for it,
    # while the positive text still counts as a non-match
    assert weights.tolist() == [[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]
    assert targets[:2].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_attribute_only_text_scores_the_share_of_its_words_the_finding_has():
    shown = ("opaque", "round")
    images = [[Finding("nodule")], [effusion()], [Finding("cavity")]]
    targets, _ = targets_for(images, [text(category="mass", name=False, terms=shown)])
    # nodule is opaque and round (2/2), effusion opaque only (1/2), cavity round only (1/2)
    assert targets[:, 0].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert set(shown) <= set(KB.attribute_terms("nodule"))


def test_a_kept_name_pins_the_category_whatever_the_attribute_overlap():
    images = [[Finding("nodule")], [Finding("mass")]]
    targets, _ = targets_for(images, [text(category="mass", name=True, terms=("opaque", "round"))])
    assert targets[:, 0].tolist() == [0.0, 1.0]


def test_location_and_severity_grade_the_target_down():
    images = [[effusion("left base", "mild")], [effusion("right base", "mild")], [effusion("bilateral base", "severe")],
              [effusion(None, None)]]  # fmt: skip
    targets, _ = targets_for(images, [text(location="left base", severity="mild")],
                             location_weight=0.3, severity_weight=0.2)  # fmt: skip
    expected = [
        1.0,
        1.0 - 0.3 * (1 - (0.0 + 1.0) / 2),  # wrong side, right region
        (1.0 - 0.3 * (1 - (0.5 + 1.0) / 2)) * (1.0 - 0.2 * 2 / 3),  # bilateral vs left; mild vs severe
        1.0,  # the image does not say where or how much: nothing disagrees
    ]
    assert targets[:, 0].tolist() == pytest.approx(expected)


def test_masked_location_and_severity_do_not_count():
    images = [[effusion("right apex", "severe")]]
    targets, _ = targets_for(images, [text(location=None, severity=None)])
    assert targets.item() == 1.0


def test_hedged_findings_are_half_matches_both_ways():
    images = [[effusion(presence="uncertain")]]
    targets, _ = targets_for(images, [text(), text(TextKind.UNCERTAIN), text(TextKind.ABSENT)], uncertain_weight=0.5)
    assert targets[0].tolist() == [0.5, 1.0, 0.5]


def test_no_finding_text_matches_images_without_present_or_hedged_findings():
    images = [[], [effusion(presence="absent")], [effusion()], [effusion(presence="uncertain")]]
    targets, _ = targets_for(images, [text(TextKind.NO_FINDING, category=None, name=False)])
    assert targets[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_padding_texts_have_weight_zero_and_batch_shapes():
    findings = torch.stack([VOCAB.encode_findings([effusion()], 4), VOCAB.encode_findings([], 4)])
    codes, attributes = VOCAB.encode_texts([text()], 3)
    text_codes, text_attributes = torch.stack([codes, codes]), torch.stack([attributes, attributes])
    targets, weights = SemanticSimilarityMatrix(VOCAB)(findings, text_codes, text_attributes)
    assert targets.shape == weights.shape == (2, 6)
    assert weights.tolist() == [[1, 0, 0, 1, 0, 0]] * 2


def test_unknown_category_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="not in the knowledge base.*knowledge_base.yaml"):
        VOCAB.encode_findings([Finding("dragon_sign")], 4)
    extended = FindingsVocabulary(KB, extra_categories=["dragon_sign"])
    assert extended.encode_findings([Finding("dragon_sign")], 1)[0, 0] == len(KB.category_ids)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unmentioned"):
        SemanticSimilarityMatrix(VOCAB, unmentioned="negative")
    with pytest.raises(ValueError, match="location_weight"):
        SemanticSimilarityMatrix(VOCAB, location_weight=2.0)


def test_own_text_targets_are_the_clip_ablation():
    codes = torch.stack([VOCAB.encode_texts([text(), text()], 2)[0], VOCAB.encode_texts([text()], 2)[0]])
    targets, weights = OwnTextTargets()(torch.zeros(2, 1, 5), codes, torch.zeros(2, 2, 1))
    assert targets.tolist() == [[1, 1, 0, 0], [0, 0, 1, 1]]
    assert weights.tolist() == [[1, 1, 1, 0]] * 2
