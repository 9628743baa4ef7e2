"""The rules backend on real IU / Open-i reports, scored against their MeSH major terms.

The 1,000 development reports are split in two by ``split_half``: the rules are tuned looking at
the "tune" half only; the "holdout" half measures how they do on reports they were not fitted to.
"""

import csv

import pytest

from bundle.extraction.evaluation import (
    SPLIT_HALVES,
    keyword_categories,
    mesh_categories,
    positive_categories,
    score_labels,
    split_half,
)
from bundle.extraction.readers import compose_text
from bundle.extraction.rules import RulesExtractor
from bundle.knowledge.base import default_knowledge_base

# Macro-F1 measured on each half with rules-3 / knowledge base 0.5.0 (0.923 and 0.930, docs/extraction.md),
# rounded down; the goal is 0.90 on both.
MEASURED_MACRO_F1 = {"tune": 0.922, "holdout": 0.929}


@pytest.fixture(scope="module")
def iu_rows(realdata):
    with (realdata / "iu-xray-openi" / "iu_reports_dev.csv").open(newline="") as handle:
        return [r for r in csv.DictReader(handle) if (r["findings"] + r["impression"]).strip()]


@pytest.fixture(scope="module")
def iu_predictions(iu_rows):
    """Per report: half, reference categories, rules' present categories, keyword categories."""
    kb = default_knowledge_base()
    rules = RulesExtractor(kb)
    rows = []
    for r in iu_rows:
        text = compose_text(r, ["findings", "impression"])
        rows.append((split_half(r["uId"]), mesh_categories(r["mesh_major"]),
                     positive_categories(rules.extract_findings(text), False), keyword_categories(kb, text)))  # fmt: skip
    return rows


@pytest.mark.parametrize("half", SPLIT_HALVES)
def test_rules_beat_keywords_on_each_half_of_the_iu_reports(iu_predictions, half):
    categories = default_knowledge_base().ids_in_list("iu16")
    part = [row for row in iu_predictions if row[0] == half]
    reference = [r for _, r, _, _ in part]
    _, rules_macro = score_labels([p for _, _, p, _ in part], reference, categories)
    _, keyword_macro = score_labels([k for _, _, _, k in part], reference, categories)
    assert rules_macro >= MEASURED_MACRO_F1[half], f"{half} half: macro-F1 {rules_macro:.3f}"
    assert rules_macro > keyword_macro + 0.25


def test_every_category_scores_on_all_reports(iu_predictions):
    categories = default_knowledge_base().ids_in_list("iu16")
    scores, _ = score_labels([p for _, _, p, _ in iu_predictions], [r for _, r, _, _ in iu_predictions], categories)
    assert min(s.f1 for s in scores) >= 0.75, [(s.category, round(s.f1, 3)) for s in scores]


def test_split_is_fixed_and_balanced(iu_rows):
    # fixed across processes and machines (a salted hash() would move reports between halves)
    assert [split_half(uid) for uid in ("CXR1", "CXR2", "CXR3", "CXR4")] == ["tune", "tune", "holdout", "holdout"]
    tune = sum(split_half(r["uId"]) == "tune" for r in iu_rows)
    assert 0.45 <= tune / len(iu_rows) <= 0.55


def test_mesh_mapping():
    assert mesh_categories("Cardiomegaly/borderline;Pulmonary Artery/enlarged") == {"cardiomegaly"}
    assert mesh_categories("Calcified Granuloma/lung;Granulomatous Disease;Lung/hypoinflation") == {"granuloma"}
    assert mesh_categories("Fractures, Bone/ribs;Hernia, Hiatal;Subcutaneous Emphysema") == {"fracture", "hiatal_hernia"}
    assert mesh_categories("normal") == set() and mesh_categories("") == set()
