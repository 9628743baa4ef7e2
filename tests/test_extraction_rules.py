"""The rules backend: sections, sentences, mentions, negation/uncertainty scopes, modifiers."""

import pytest

from bundle.extraction.rules import RulesExtractor
from bundle.extraction.sections import observation_text, split_sections, split_sentences
from bundle.knowledge.base import default_knowledge_base


@pytest.fixture(scope="module")
def rules():
    return RulesExtractor(default_knowledge_base())


def triplets(rules, text):
    return [(f.category, f.presence.value, f.location, f.severity) for f in rules.extract_findings(text)]


def test_sections_and_sentences():
    report = "FINAL REPORT\nINDICATION: eval for pneumonia.\nFINDINGS: No effusion.Small left apical pneumothorax.\nIMPRESSION: 1. Pneumothorax. 2. Stable 2.5 cm nodule."
    sections = split_sections(report)
    assert sections["indication"] == "eval for pneumonia."
    assert "pneumonia" not in observation_text(report)
    assert split_sentences(observation_text(report)) == [
        "No effusion.", "Small left apical pneumothorax.", "Pneumothorax.", "Stable 2.5 cm nodule."
    ]  # fmt: skip
    assert observation_text("No pneumothorax.") == "No pneumothorax."


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("Small left pleural effusion.", [("pleural_effusion", "present", "left", "mild")]),
        ("No pneumothorax, pleural effusion, or focal airspace consolidation.",
         [("pneumothorax", "absent", None, None), ("pleural_effusion", "absent", None, None), ("consolidation", "absent", None, None)]),
        ("There are no XXXX of a pleural effusion.", [("pleural_effusion", "absent", None, None)]),
        ("The lungs are clear without evidence of focal infiltrate.", [("infiltrate", "absent", None, None)]),
        ("Lungs are free of focal airspace disease.", [("airspace_disease", "absent", None, None)]),
        ("Previously seen left effusion has resolved.", [("pleural_effusion", "absent", "left", None)]),
        ("Pneumonia cannot be excluded.", [("pneumonia", "uncertain", None, None)]),
        ("Possible right lower lobe pneumonia.", [("pneumonia", "uncertain", "right lower lobe", None)]),
        ("Opacity in the left lung base, likely atelectasis.",
         [("opacity", "present", "left base", None), ("atelectasis", "uncertain", None, None)]),
        ("Streaky opacity may represent atelectasis.", [("opacity", "present", None, None), ("atelectasis", "uncertain", None, None)]),
        ("Atelectasis versus pneumonia.", [("atelectasis", "uncertain", None, None), ("pneumonia", "uncertain", None, None)]),
        ("No change in moderate right pleural effusion.", [("pleural_effusion", "present", "right", "moderate")]),
        ("No increase in the small left effusion.", [("pleural_effusion", "present", "left", "mild")]),
        ("The heart is mildly enlarged.", [("cardiomegaly", "present", None, "mild")]),
        ("The heart is not enlarged.", [("cardiomegaly", "absent", None, None)]),
        ("No focal consolidation, however there is mild bibasilar atelectasis.",
         [("consolidation", "absent", None, None), ("atelectasis", "present", "bilateral base", "mild")]),
        ("No visualized pneumothorax or large pleural effusion.",
         [("pneumothorax", "absent", None, None), ("pleural_effusion", "absent", None, "severe")]),
        ("No effusion is seen, but there is a small right pneumothorax.",
         [("pleural_effusion", "absent", None, None), ("pneumothorax", "present", "right", "mild")]),
        ("Calcified granuloma in the RUL.", [("granuloma", "present", "right upper lobe", None)]),
        ("Subcutaneous emphysema in the left chest wall.", [("subcutaneous_emphysema", "present", "left", None)]),
        ("Considerations include pericardial effusion.", [("pericardial_effusion", "present", None, None)]),
        ("Nodular opacity in the left upper lobe.",
         [("nodule", "present", "left upper lobe", None), ("opacity", "present", "left upper lobe", None)]),
        ("Moderate thoracolumbar levoscoliosis.", [("scoliosis", "present", None, "moderate")]),
        ("Stable small hiatal hernia.", [("hiatal_hernia", "present", None, "mild")]),
        ("Old healed right rib fractures.", [("fracture", "present", "right ribs", None)]),
        ("Question small right pleural effusion.", [("pleural_effusion", "uncertain", "right", "mild")]),
    ],
)  # fmt: skip
def test_sentence_level_assertions(rules, sentence, expected):
    assert [(f.category, f.presence.value, f.location, f.severity) for f in rules.extract_sentence(sentence)] == expected


@pytest.mark.parametrize(
    "normal, categories",
    [("Heart size is normal.", ["cardiomegaly"]),
     ("Heart size is within normal limits.", ["cardiomegaly"]),
     ("The cardiac silhouette is normal in size.", ["cardiomegaly"]),
     ("The heart is normal in size and contour.", ["cardiomegaly"]),
     ("Normal heart size.", ["cardiomegaly"]),
     ("The cardiomediastinal silhouette is within normal limits.", ["cardiomegaly", "enlarged_cardiomediastinum"]),
     ("Heart and mediastinum normal.", ["cardiomegaly", "enlarged_cardiomediastinum"]),
     ("The heart size and pulmonary vascularity appear within normal limits.", ["cardiomegaly", "pulmonary_congestion"]),
     ("The mediastinal contours are normal.", ["enlarged_cardiomediastinum"]),
     ("Pulmonary vascularity is normal.", ["pulmonary_congestion"]),
     ("The cardiac silhouette, upper mediastinum and pulmonary vasculature are within normal limits.", ["pulmonary_congestion"])],
)  # fmt: skip
def test_normal_statements_are_absent_findings(rules, normal, categories):
    findings = rules.extract_findings(f"FINDINGS: {normal} No pneumothorax.")
    assert [(f.category, f.presence.value, f.location, f.severity) for f in findings] == [
        *((c, "absent", None, None) for c in categories), ("pneumothorax", "absent", None, None)
    ]  # fmt: skip
    assert all(f.evidence == normal for f in findings[:-1])


@pytest.mark.parametrize(
    "text", ["The lungs are clear.", "No acute cardiopulmonary abnormality.", "Normal chest x-XXXX.", "Heart size upper limits of normal.",
             "Heart size is at the upper limit of normal.", "The heart is upper limits of normal in size.", "Borderline normal heart size.",
             "Heart size is normal to mildly enlarged.", "Heart size is probably normal.", "Upper normal heart size.",
             "Likely normal heart size.", "Heart size is normal versus mildly enlarged."],
)  # fmt: skip
def test_undeclared_or_qualified_normal_statements_yield_nothing(rules, text):
    assert rules.extract_findings(text) == []


def test_borderline_heart_size_is_not_absent(rules):
    assert triplets(rules, "Borderline heart size.") == [("cardiomegaly", "present", None, "minimal")]


@pytest.mark.parametrize(
    "report",
    ["FINDINGS: Heart size is normal. No effusion. IMPRESSION: Mild cardiomegaly.",
     "FINDINGS: Mild cardiomegaly. IMPRESSION: Heart size within normal limits.",
     "Heart size is normal. Possible cardiomegaly."],
)  # fmt: skip
def test_a_normal_statement_never_overrides_a_mention(rules, report):
    findings = [(f.category, f.presence.value) for f in rules.extract_findings(report)]
    assert ("cardiomegaly", "absent") not in findings
    assert ("cardiomegaly", "present") in findings or ("cardiomegaly", "uncertain") in findings


def test_negations_still_read_normal_statements_as_absent(rules):
    # a negated mention and a normal statement agree: one absent finding, the first evidence kept
    findings = rules.extract_findings("Heart size is normal. No cardiomegaly.")
    assert [(f.category, f.presence.value, f.evidence) for f in findings] == [("cardiomegaly", "absent", "Heart size is normal.")]


def test_normality_predicate_stays_in_its_clause(rules):
    assert triplets(rules, "Heart size is mildly enlarged, pulmonary vascularity within normal limits.") == [
        ("cardiomegaly", "present", None, "mild"), ("pulmonary_congestion", "absent", None, None)
    ]  # fmt: skip


def test_report_level_dedup_and_evidence(rules):
    report = "FINDINGS: Small left effusion. IMPRESSION: Small left effusion. No pneumothorax."
    findings = rules.extract_findings(report)
    assert [(f.category, f.presence.value) for f in findings] == [("pleural_effusion", "present"), ("pneumothorax", "absent")]
    assert findings[0].evidence == "Small left effusion."


def test_findings_in_the_indication_are_ignored(rules):
    assert triplets(rules, "INDICATION: Pneumonia?\nFINDINGS: Lungs are clear.") == []


def test_result_carries_no_tokens(rules):
    result = rules.extract("Large right pneumothorax.")
    assert (result.tokens_in, result.tokens_out) == (0, 0)
    assert result.findings[0].to_dict()["severity"] == "severe"
