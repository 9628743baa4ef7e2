"""The rules backend recovers SynthCXR's ground truth from its generated reports."""

from bundle.data.synthcxr import CATEGORY_RECIPES, generate_study
from bundle.data.synthcxr.reports import HEART_NEGATIONS
from bundle.extraction.rules import RulesExtractor
from bundle.knowledge.base import default_knowledge_base


def test_rules_recover_synthcxr_findings():
    """Every ground-truth finding is scored, the absent cardiomegaly of "The heart size is normal." included."""
    rules = RulesExtractor(default_knowledge_base())
    studies = [generate_study(seed=s, size=32) for s in range(200)]
    scored = set(CATEGORY_RECIPES) | {f.category for st in studies for f in st.findings}
    tp = fp = fn = matched = location_ok = severity_ok = normals = normals_found = 0
    for study in studies:
        truth = {(f.category, f.presence.value): f for f in study.findings}
        found = {(f.category, f.presence.value): f for f in rules.extract_findings(study.report) if f.category in scored}
        if any(f.evidence in HEART_NEGATIONS for f in study.findings):
            normals += 1
            normals_found += found.get(("cardiomegaly", "absent")) is not None
        tp += len(truth.keys() & found.keys())
        fp += len(found.keys() - truth.keys())
        fn += len(truth.keys() - found.keys())
        for key in truth.keys() & found.keys():
            if key[1] != "absent":
                matched += 1
                location_ok += truth[key].location == found[key].location
                severity_ok += truth[key].severity == found[key].severity
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert f1 >= 0.99, f"category+presence F1 {f1:.3f} (tp {tp}, fp {fp}, fn {fn})"
    assert normals >= 50 and normals_found == normals, f"{normals_found} of {normals} heart-size statements read as absent"
    assert matched >= 150
    assert location_ok / matched >= 0.95 and severity_ok / matched >= 0.95
