"""The rules backend recovers SynthCXR's ground truth from its generated reports."""

import re

from bundle.data.synthcxr import CATEGORY_RECIPES, generate_study
from bundle.extraction.rules import RulesExtractor
from bundle.knowledge.base import default_knowledge_base

# SynthCXR records "The cardiac silhouette is normal in size" as an *absent* cardiomegaly;
# the extraction spec ignores statements of normality, so such ground truth is not scored.
NORMALITY = re.compile(r"\b(normal|within normal limits|unremarkable|clear)\b", re.I)
NEGATION = re.compile(r"\b(no|not|without|negative|free of)\b", re.I)


def is_normality_statement(finding) -> bool:
    return finding.presence.value == "absent" and NORMALITY.search(finding.evidence) and not NEGATION.search(finding.evidence)


def test_rules_recover_synthcxr_findings():
    rules = RulesExtractor(default_knowledge_base())
    studies = [generate_study(seed=s, size=32) for s in range(200)]
    scored = set(CATEGORY_RECIPES) | {f.category for st in studies for f in st.findings}
    tp = fp = fn = matched = location_ok = severity_ok = 0
    for study in studies:
        truth = {(f.category, f.presence.value): f for f in study.findings if not is_normality_statement(f)}
        found = {(f.category, f.presence.value): f for f in rules.extract_findings(study.report) if f.category in scored}
        tp += len(truth.keys() & found.keys())
        fp += len(found.keys() - truth.keys())
        fn += len(truth.keys() - found.keys())
        for key in truth.keys() & found.keys():
            if key[1] != "absent":
                matched += 1
                location_ok += truth[key].location == found[key].location
                severity_ok += truth[key].severity == found[key].severity
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert f1 >= 0.97, f"category+presence F1 {f1:.3f} (tp {tp}, fp {fp}, fn {fn})"
    assert matched >= 150
    assert location_ok / matched >= 0.95 and severity_ok / matched >= 0.95
