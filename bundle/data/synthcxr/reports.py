"""Radiology-style reports written from a study's findings, and the ground truth read off them.

A report has an optional INDICATION and COMPARISON line (de-identified with ``XXXX`` the way
public report collections are), then FINDINGS and IMPRESSION. Each drawn finding gets one
FINDINGS sentence from several templates (its evidence), with a severity word from the
knowledge base's lexicon and a location phrase built from its normalised location; uncertain
findings are hedged ("possible", "cannot exclude"). Some categories that are not drawn are
negated ("No pleural effusion or pneumothorax."), and those negations are the ``absent``
findings of the ground truth. Normal statements fill in the rest.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...findings import Finding, Presence
from .recipes import FindingSpec

# Words that name each category; every evidence sentence contains one of them.
CATEGORY_TERMS: dict[str, tuple[str, ...]] = {
    "pleural_effusion": ("pleural effusion",),
    "pneumothorax": ("pneumothorax",),
    "cardiomegaly": ("cardiomegaly", "cardiac silhouette", "cardiomediastinal silhouette", "heart"),
    "consolidation": ("consolidation",),
    "atelectasis": ("atelectasis",),
    "nodule": ("nodule", "nodular"),
    "mass": ("mass",),
    "pulmonary_edema": ("pulmonary edema",),
    "emphysema": ("emphysema", "emphysematous"),
    "cavity": ("cavity", "cavitary"),
    "bulla": ("bulla", "bullous"),
    "pleural_thickening": ("pleural thickening", "thickening of the pleura"),
    "fibrosis": ("fibrosis", "fibrotic"),
    "granuloma": ("granuloma",),
}
CATEGORY_NAMES = {
    "pleural_effusion": "pleural effusion",
    "pulmonary_edema": "pulmonary edema",
    "pleural_thickening": "pleural thickening",
}

# Severity words per category, each from the knowledge base's lexicon for that severity.
DEFAULT_SEVERITY_WORDS = {
    "minimal": ("minimal", "subtle"),
    "mild": ("mild",),
    "moderate": ("moderate",),
    "severe": ("severe", "extensive", "marked"),
}
SEVERITY_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "pleural_effusion": {"minimal": ("trace", "tiny"), "mild": ("small",), "moderate": ("moderate", "moderate-sized"),
                         "severe": ("large",)},
    "pneumothorax": {"minimal": ("tiny", "trace"), "mild": ("small",), "moderate": ("moderate", "moderate-sized"),
                     "severe": ("large",)},
    "cardiomegaly": {"mild": ("mild",), "moderate": ("moderate",), "severe": ("marked", "severe")},
    "consolidation": {"minimal": ("subtle", "minimal"), "mild": ("mild", "small"), "moderate": ("moderate",),
                      "severe": ("extensive", "large")},
    "nodule": {"minimal": ("tiny",), "mild": ("small",), "moderate": ("moderate-sized",)},
    "mass": {"mild": ("small",), "moderate": ("moderate-sized",), "severe": ("large",)},
    "cavity": {"mild": ("small",), "moderate": ("moderate-sized",), "severe": ("large",)},
    "bulla": {"mild": ("small",), "moderate": ("moderate-sized",), "severe": ("large",)},
}
SEVERITY_ADVERBS = {"minimal": "minimally", "mild": "mildly", "moderate": "moderately", "severe": "markedly"}

# FINDINGS sentences. Fields: {sev} severity word, {a_sev} with its article (plural: none),
# {adv} severity adverb, {side} laterality, {adj} location adjective ("left basilar"),
# {loc} location phrase ("at the left base"), {cpa} the costophrenic angle(s), {s}/{be} plural.
PRESENT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "pleural_effusion": (
        "{Sev} {side} pleural effusion{s}.",
        "There {be} {a_sev} {side} pleural effusion{s} with blunting of {cpa}.",
        "Blunting of {cpa} compatible with {a_sev} pleural effusion{s}.",
        "{Sev} pleural effusion{s} {loc}.",
    ),
    "pneumothorax": (
        "{Sev} {side} pneumothorax {loc}.",
        "There is {a_sev} {adj} pneumothorax.",
        "{A_sev} {side} pneumothorax is seen {loc}, with a visible pleural line and no lung markings beyond it.",
    ),
    "cardiomegaly": (
        "{Sev} cardiomegaly.",
        "The cardiac silhouette is {adv} enlarged.",
        "The heart is {adv} enlarged.",
        "{Sev} enlargement of the cardiac silhouette.",
    ),
    "consolidation": (
        "{Sev} consolidation {loc}.",
        "There is {sev} patchy airspace consolidation {loc}.",
        "{Sev} {adj} consolidation with air bronchograms.",
        "{A_sev} area of consolidation {loc}.",
    ),
    "atelectasis": (
        "{Sev} {adj} atelectasis.",
        "Linear opacity {loc} consistent with {sev} atelectasis.",
        "{Sev} plate-like atelectasis {loc}.",
        "There is {sev} atelectasis {loc} with volume loss.",
    ),
    "nodule": (
        "{A_sev} nodule {loc}.",
        "There is {a_sev} {adj} pulmonary nodule.",
        "{Sev} rounded nodular opacity {loc}.",
        "{A_sev} well-circumscribed nodule is noted {loc}.",
    ),
    "mass": (
        "{A_sev} mass {loc}.",
        "There is {a_sev} lobulated {adj} mass.",
        "{Sev} {adj} mass lesion.",
        "{A_sev} rounded mass is seen {loc}, concerning for malignancy.",
    ),
    "pulmonary_edema": (
        "{Sev} pulmonary edema.",
        "{Sev} interstitial pulmonary edema with septal lines.",
        "{Sev} {adj} opacities consistent with pulmonary edema.",
        "Findings of {sev} pulmonary edema with perihilar haziness and Kerley B lines.",
    ),
    "emphysema": (
        "{Sev} emphysema with hyperinflated lungs and flattened hemidiaphragms.",
        "The lungs are hyperinflated, consistent with {sev} emphysema.",
        "{Sev} emphysematous changes, {adj} predominant.",
        "Hyperlucent, hyperexpanded lungs in keeping with {sev} emphysema.",
    ),
    "cavity": (
        "{A_sev} thick-walled cavity {loc}.",
        "There is {a_sev} cavitary lesion {loc}.",
        "{A_sev} {adj} cavity with an opaque rim.",
    ),
    "bulla": (
        "{A_sev} {adj} bulla.",
        "{A_sev} thin-walled bulla {loc}.",
        "There is {a_sev} bullous lucency {loc} without lung markings.",
    ),
    "pleural_thickening": (
        "{Sev} {adj} pleural thickening.",
        "{Sev} pleural thickening {loc}.",
        "There is {sev} thickening of the pleura {loc}.",
    ),
    "fibrosis": (
        "{Sev} {adj} fibrosis.",
        "Reticular opacities {loc} consistent with {sev} pulmonary fibrosis.",
        "{Sev} fibrotic changes {loc} with volume loss.",
        "Coarse reticular and linear opacities {loc}, compatible with {sev} interstitial fibrosis.",
    ),
    "granuloma": (
        "Calcified granuloma {loc}.",
        "A calcified granuloma is noted {loc}.",
        "{Adj} calcified granuloma.",
    ),
}
UNCERTAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "pleural_effusion": (
        "Possible {sev} {side} pleural effusion{s}.",
        "Blunting of {cpa}; cannot exclude {a_sev} pleural effusion{s}.",
    ),
    "pneumothorax": (
        "Possible {sev} {adj} pneumothorax.",
        "A faint line {loc} may represent {a_sev} pneumothorax.",
    ),
    "cardiomegaly": (
        "The heart size is at the upper limit of normal; cannot exclude {sev} cardiomegaly.",
        "Possible {sev} cardiomegaly.",
    ),
    "consolidation": (
        "{Sev} opacity {loc}, cannot exclude early consolidation.",
        "Possible {sev} consolidation {loc}.",
    ),
    "atelectasis": (
        "Possible {sev} {adj} atelectasis.",
        "Streaky opacity {loc} may reflect {sev} atelectasis.",
    ),
    "nodule": (
        "Possible {sev} nodule {loc}.",
        "Questionable {sev} nodular density {loc}.",
    ),
    "pulmonary_edema": (
        "Possible {sev} pulmonary edema.",
        "Perihilar haziness may represent {sev} pulmonary edema.",
    ),
}
# Negations: (sentence, the categories it denies).
NEGATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("No pleural effusion.", ("pleural_effusion",)),
    ("There is no pleural effusion.", ("pleural_effusion",)),
    ("No pneumothorax.", ("pneumothorax",)),
    ("There is no evidence of pneumothorax.", ("pneumothorax",)),
    ("No pleural effusion or pneumothorax.", ("pleural_effusion", "pneumothorax")),
    ("There is no pneumothorax or pleural effusion.", ("pneumothorax", "pleural_effusion")),
    ("No focal consolidation.", ("consolidation",)),
    ("There is no focal airspace consolidation.", ("consolidation",)),
    (
        "No focal consolidation, pleural effusion, or pneumothorax.",
        ("consolidation", "pleural_effusion", "pneumothorax"),
    ),
    ("No pulmonary edema.", ("pulmonary_edema",)),
    ("There is no pulmonary edema.", ("pulmonary_edema",)),
    ("No suspicious pulmonary nodules or masses.", ("nodule", "mass")),
    ("No pulmonary nodule or mass is identified.", ("nodule", "mass")),
    ("No atelectasis.", ("atelectasis",)),
)
HEART_NEGATIONS = (
    "The heart size is normal.",
    "Heart size is within normal limits.",
    "The cardiac silhouette is normal in size.",
    "The cardiomediastinal silhouette is within normal limits.",
)
CLEAR_LUNGS_NEGATIONS = ("The lungs are clear without focal consolidation.",)
CLEAR_LUNGS = ("Lungs are clear.", "The lungs are clear bilaterally.", "The lungs are well expanded and clear.")
OTHER_NORMALS = (
    "The mediastinal contours are normal.",
    "No acute osseous abnormality.",
    "Visualized osseous structures are unremarkable.",
    "Pulmonary vasculature is normal.",
)
NO_ACUTE_IMPRESSIONS = ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.")
# "Normal chest radiograph" only closes a report without findings; chronic findings get "no acute".
NORMAL_IMPRESSIONS = NO_ACUTE_IMPRESSIONS + ("Normal chest radiograph.",)
INDICATIONS = ("Cough.", "Shortness of breath.", "Chest pain.", "XXXX-year-old with fever.", "Preoperative evaluation.")
COMPARISONS = ("None.", "XXXX.", "Chest radiograph XXXX.", "None available.")
FOLLOW_UP_COMPARISONS = ("Prior radiograph dated XXXX.", "Chest radiograph XXXX.", "XXXX, XXXX.")
CHRONIC = ("granuloma", "pleural_thickening", "emphysema", "bulla", "fibrosis")


def location_phrases(laterality: str | None, zone: str | None, rng: np.random.Generator) -> tuple[str, str]:
    """``(adjective, phrase)`` for a normalised location, e.g. ``("left basilar", "at the left base")``."""
    both = laterality == "bilateral"
    side = laterality or ""
    choice = {
        "apex": (
            ["bilateral apical"] if both else [f"{side} apical"],
            ["at both apices"] if both else [f"at the {side} apex", f"at the {side} lung apex"],
        ),
        "upper zone": (
            ["bilateral upper lung zone"] if both else [f"{side} upper lung zone"],
            ["in both upper lung zones"] if both else [f"in the {side} upper lung zone", f"in the {side} upper lung"],
        ),
        "mid zone": (
            ["bilateral mid lung"] if both else [f"{side} mid lung"],
            ["in both mid lung zones"] if both else [f"in the {side} mid lung zone", f"in the {side} midlung"],
        ),
        "lower zone": (
            ["bilateral lower lung zone"] if both else [f"{side} lower lung zone"],
            ["in both lower lung zones"] if both else [f"in the {side} lower lung zone", f"in the {side} lower lung"],
        ),
        "base": (
            ["bibasilar", "bilateral basilar"] if both else [f"{side} basilar"],
            ["at both lung bases", "at the bilateral bases"] if both
            else [f"at the {side} base", f"at the {side} lung base"],
        ),
        "perihilar": (
            ["bilateral perihilar"] if both else [f"{side} perihilar"],
            ["in both perihilar regions"] if both else [f"in the {side} perihilar region"],
        ),
        "periphery": (
            ["bilateral peripheral", "bilateral subpleural"] if both else [f"peripheral {side}", f"{side} subpleural"],
            ["in the periphery of both lungs"] if both else [f"in the periphery of the {side} lung"],
        ),
    }
    if zone is None:
        return side, (f"in the {side} lung" if side else "")
    adjectives, phrases = choice[zone]
    return str(rng.choice(adjectives)), str(rng.choice(phrases))


def finding_sentence(spec: FindingSpec, rng: np.random.Generator) -> str:
    """The FINDINGS sentence for one drawn finding (hedged when uncertain)."""
    templates = UNCERTAIN_TEMPLATES if spec.presence is Presence.UNCERTAIN else PRESENT_TEMPLATES
    template = str(rng.choice(templates[spec.category]))
    return _fill(template, spec, rng)


def impression_sentence(spec: FindingSpec, rng: np.random.Generator) -> str:
    """A short IMPRESSION line: ``[Possible] <severity> <location> <name>``."""
    name = CATEGORY_NAMES.get(spec.category, spec.category)
    if spec.category == "granuloma":
        name = "calcified granuloma"
    words = ["{sev}" if spec.severity else "", "{adj}" if spec.location else "", name]
    template = " ".join(word for word in words if word)
    if spec.category == "pleural_effusion" and spec.laterality == "bilateral":
        template += "s"
    if spec.presence is Presence.UNCERTAIN:
        template = "possible " + template
    sentence = _fill(template, spec, rng)
    return sentence[0].upper() + sentence[1:] + "."


def _fill(template: str, spec: FindingSpec, rng: np.random.Generator) -> str:
    severity_word = ""
    if spec.severity:
        words = SEVERITY_WORDS.get(spec.category, DEFAULT_SEVERITY_WORDS)[spec.severity]
        severity_word = str(rng.choice(words))
    plural = spec.category == "pleural_effusion" and spec.laterality == "bilateral"
    article = "an" if severity_word[:1] in "aeiou" else "a"
    a_sev = severity_word if plural else f"{article} {severity_word}"
    adjective, phrase = location_phrases(spec.laterality, spec.zone, rng)
    fields = {
        "sev": severity_word,
        "a_sev": a_sev,
        "adv": SEVERITY_ADVERBS.get(spec.severity or "", ""),
        "side": spec.laterality or "",
        "adj": adjective,
        "loc": phrase,
        "cpa": "both costophrenic angles" if plural else f"the {spec.laterality} costophrenic angle",
        "s": "s" if plural else "",
        "be": "are" if plural else "is",
    }
    fields.update({key[0].upper() + key[1:]: _capitalise(value) for key, value in list(fields.items())})
    return " ".join(template.format(**fields).split())


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def write_report(
    specs: Sequence[FindingSpec],
    rng: np.random.Generator,
    negatable: Sequence[str],
    follow_up: bool = False,
) -> tuple[str, list[Finding]]:
    """Write the report of a study and its ground-truth findings.

    Args:
        specs: the drawn findings (present or uncertain), in lesion-mask order.
        rng: the report's random generator (template and phrase choices).
        negatable: categories the report may deny (never a drawn one; held-out categories are
            left out by the caller so that training reports never name them).
        follow_up: the patient has an earlier study (changes the comparison line).

    Returns:
        ``(report text, findings)``: the drawn findings first (evidence = their FINDINGS
        sentence), then one ``absent`` finding per negated category.
    """
    drawn = {spec.category for spec in specs}
    deniable = set(negatable) - drawn
    findings = []
    sentences = []
    for spec in specs:
        sentence = finding_sentence(spec, rng)
        sentences.append(sentence)
        findings.append(Finding(spec.category, spec.location, spec.severity, spec.presence, sentence))

    negations: list[tuple[str, tuple[str, ...]]] = []
    if "cardiomegaly" in deniable and rng.random() < 0.75:
        negations.append((str(rng.choice(HEART_NEGATIONS)), ("cardiomegaly",)))
    only_heart = drawn <= {"cardiomegaly"}
    if only_heart and "consolidation" in deniable and rng.random() < 0.3:
        negations.append((CLEAR_LUNGS_NEGATIONS[0], ("consolidation",)))
    candidates = [(text, cats) for text, cats in NEGATIONS if set(cats) <= deniable]
    for index in rng.permutation(len(candidates))[: int(rng.integers(1, 4))]:
        text, categories = candidates[index]
        if not any(set(categories) & set(taken) for _, taken in negations):
            negations.append((text, categories))
    for text, categories in negations:
        for category in categories:
            findings.append(Finding(category, None, None, Presence.ABSENT, text))

    normals = [str(rng.choice(OTHER_NORMALS))] if rng.random() < 0.5 else []
    if only_heart and not any("lungs are clear" in text for text, _ in negations):
        normals.insert(0, str(rng.choice(CLEAR_LUNGS)))
    heart_first = [text for text, cats in negations if cats == ("cardiomegaly",)]
    body = heart_first + sentences + [text for text, cats in negations if cats != ("cardiomegaly",)] + normals

    impression = [impression_sentence(spec, rng) for spec in specs]
    if not specs:
        impression.append(str(rng.choice(NORMAL_IMPRESSIONS)))
    elif drawn <= set(CHRONIC):
        impression.append(str(rng.choice(NO_ACUTE_IMPRESSIONS)))
    if len(impression) > 1 and rng.random() < 0.4:
        impression = [f"{number}. {line}" for number, line in enumerate(impression, start=1)]

    lines = []
    if rng.random() < 0.4:
        lines.append("INDICATION: " + str(rng.choice(INDICATIONS)))
    if rng.random() < 0.6:
        lines.append("COMPARISON: " + str(rng.choice(FOLLOW_UP_COMPARISONS if follow_up else COMPARISONS)))
    lines.append("FINDINGS: " + " ".join(body))
    lines.append("IMPRESSION: " + " ".join(impression))
    return "\n".join(lines), findings
