"""The audit page: what a run tells its model about each finding category, as one HTML file a clinician can read.

For every category the page shows its name, synonyms, visual attributes and description from the
knowledge base, the zero-shot prompts and example training texts exactly as the run composes
them, and whether the category is held out of training; then it says in plain words what the run
does: the data, what counts as a positive, the losses with their weights, and the thresholds.

Everything here is a pure function of objects the caller resolved from the run's config (the
knowledge base, the composer, the zero-shot prompts, a ``RunSettings`` dict, the datalist and an
optional metrics dict), so the page shows what the run really used; ``scripts/audit_report.py``
resolves them with MONAI's ``ConfigParser`` and writes the file. The page is self-contained
(inline CSS, no scripts, no network assets).

Escaping convention: every value that comes from data, config or knowledge base goes through
``_e`` (or ``_mono``) where it enters markup; only the literal sentences of this module are
written as markup directly.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from typing import Any, Mapping, Sequence, TypedDict

import numpy as np

from bundle.findings import Finding, Presence
from bundle.knowledge.base import ATTRIBUTE_KEYS, Category, KnowledgeBase
from bundle.knowledge.iki import FindingTextComposer

SPLITS = ("training", "validation", "test")
HELD_OUT_BADGE = "held out (never in training)"
ATTRIBUTE_LABELS = {
    "density": "density", "shape": "shape", "size": "size",
    "zone": "usual zones", "laterality": "usual side", "signs": "signs",
}  # fmt: skip
# Examples per category: two certain findings and a hedged one show both positive templates.
EXAMPLE_PRESENCES = (Presence.PRESENT, Presence.PRESENT, Presence.UNCERTAIN)
# A category's status on the page -> (CSS class, badge text).
_BADGES = {
    "seen": ("seen", "seen in training"),
    "held_out": ("held", HELD_OUT_BADGE),
    "absent_from_data": ("other", "not in this data set"),
    "unknown": ("other", "seen or held out: unknown (no datalist)"),
}

Counts = dict[str, dict[str, Counter]]


class RunSettings(TypedDict, total=False):
    """The run's resolved settings the page explains (``None`` where the config could not say).

    Keys:
        config_files: the config files, in merge order.
        variant: the config's ``variant``.
        datalist_file: where the datalist was looked for.
        datalist_error: why the datalist could not be read (None when it was).
        seen_categories: the categories training may see (the config's ``seen_categories``).
        validation_categories: the categories scored on validation to keep the best checkpoint.
        training_texts: ``"composed"`` (finding texts from the knowledge base), ``"report_sections"``
            or ``"unknown"``.
        report_sections: the report sections trained on, for ``"report_sections"``.
        max_texts_per_image, sampled_negations: how many texts an image gets, and how many of them
            are sampled "no X" texts for categories its report does not mention.
        loss: the loss class (``MedFILIPLoss``, ``CLIPContrastiveLoss``...).
        targets: the soft-target class (``SemanticSimilarityMatrix``, ``OwnTextTargets``).
        contrastive_form, contrastive_weight, itm_weight, itm_negative_threshold, patch_weight,
        min_temperature, max_temperature: the loss arguments.
        ssm_location_weight, ssm_severity_weight, uncertain_weight, unmentioned_findings: the
            soft-target arguments.
        prompts_composed: whether zero-shot prompts come from the composer (else the plain names).
        zero_shot_scoring: ``"contrast"``, ``"positive"`` or ``"softmax"``.
        zero_shot_patches: whether zero-shot prompts are compared with image patches (else the pooled image).
        label_uncertain_value: the evaluation label of a hedged finding.
        max_epochs, batch_size, image_size, learning_rate: the schedule.
    """

    config_files: list[str]
    variant: str
    datalist_file: str | None
    datalist_error: str | None
    seen_categories: list[str]
    validation_categories: list[str]
    training_texts: str
    report_sections: list[str]
    max_texts_per_image: int | None
    sampled_negations: int | None
    loss: str
    targets: str | None
    contrastive_form: str | None
    contrastive_weight: float | None
    itm_weight: float | None
    itm_negative_threshold: float | None
    patch_weight: float | None
    min_temperature: float | None
    max_temperature: float | None
    ssm_location_weight: float | None
    ssm_severity_weight: float | None
    uncertain_weight: float | None
    unmentioned_findings: str | None
    prompts_composed: bool
    zero_shot_scoring: str
    zero_shot_patches: bool
    label_uncertain_value: float | None
    max_epochs: int | None
    batch_size: int | None
    image_size: int | None
    learning_rate: float | None


def category_order(knowledge_base: KnowledgeBase, datalist: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """``(data categories, other knowledge-base categories)`` in page order.

    The data's categories come first, those training may see before the held-out ones; without a
    datalist every knowledge-base category is "other".
    """
    listed = list(dict.fromkeys(datalist.get("categories", []))) if datalist else []
    held_out = set(datalist.get("unseen_categories", [])) if datalist else set()
    data = [c for c in listed if c not in held_out] + [c for c in listed if c in held_out]
    return data, [c for c in knowledge_base.category_ids if c not in listed]


def category_counts(datalist: Mapping[str, Any]) -> Counts:
    """``{split: {"present"|"uncertain"|"absent": Counter(category -> images)}}``.

    An image counts once per category and presence, however many findings of it its report has.
    """
    counts: Counts = {}
    for split in SPLITS:
        per_presence: dict[str, Counter] = {p.value: Counter() for p in Presence}
        for item in datalist.get(split, []):
            mentions = {(f["category"], f.get("presence", "present")) for f in item.get("findings", [])}
            for category, presence in mentions:
                per_presence[presence][category] += 1
        counts[split] = per_presence
    return counts


def example_findings(knowledge_base: KnowledgeBase, category_id: str, rng: np.random.Generator) -> list[Finding]:
    """Plausible findings of a category (locations from its usual sides and zones, any severity), then its negation."""
    category = knowledge_base.categories.get(category_id)
    sides = category.attributes["laterality"] if category else ()
    zones = category.attributes["zone"] if category else ()
    severities = list(knowledge_base.severities)
    findings = []
    for presence in EXAMPLE_PRESENCES:
        side = str(rng.choice(sides)) if sides else ""
        zone = str(rng.choice(zones)) if zones else ""
        location = " ".join(part for part in (side, zone) if part) or None
        findings.append(Finding(category_id, location, str(rng.choice(severities)), presence))
    findings.append(Finding(category_id, presence=Presence.ABSENT))
    return findings


def render_audit_page(
    knowledge_base: KnowledgeBase,
    prompts: Mapping[str, tuple[str, str]],
    run: RunSettings,
    composer: FindingTextComposer | None = None,
    datalist: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> str:
    """The audit page as one self-contained HTML string.

    Args:
        knowledge_base: the run's knowledge base.
        prompts: the zero-shot ``(positive, negative)`` prompts of every category shown, as the
            run's inferer builds them.
        run: the run's resolved settings (see ``RunSettings``).
        composer: the composer of the training texts; None when training reads report text.
        datalist: the run's datalist (held-out categories, split sizes, counts); None when missing.
        metrics: a ``zero_shot_metrics.json`` dict (thresholds, AUCs), or None.
        seed: seeds the example findings and the random word dropping of their texts.

    Raises:
        KeyError: a shown category has no prompts.
    """
    data_categories, other_categories = category_order(knowledge_base, datalist)
    missing = [c for c in data_categories + other_categories if c not in prompts]
    if missing:
        raise KeyError(f"no zero-shot prompts for {missing}; pass the inferer's prompts for every category shown")
    counts = category_counts(datalist) if datalist else None
    seen = set(run.get("seen_categories") or [])
    if datalist is None:
        status = {c: "unknown" for c in other_categories}
    else:
        status = {c: "seen" if c in seen else "held_out" for c in data_categories}
        status.update({c: "absent_from_data" for c in other_categories})
    results = _metrics_by_category(metrics)
    # One generator over the whole page, in page order: each category gets different draws.
    rng = np.random.default_rng(seed)

    def cards(categories: Sequence[str]) -> str:
        cells = (_category_card(knowledge_base, c, status[c], prompts[c], composer, counts, results.get(c), rng)
                 for c in categories)  # fmt: skip
        return f'<div class="grid">{"".join(cells)}</div>'

    parts = [_head(f"Audit of the {run.get('variant', '?')} run"),
             _header(knowledge_base, run, datalist, metrics, seed)]  # fmt: skip
    if datalist is None:
        parts.append('<section id="categories"><h2>Knowledge-base categories</h2><p class="lead">The datalist is '
                     "missing, so no category can be marked as seen or held out.</p>"
                     f"{cards(other_categories)}</section>")  # fmt: skip
    else:
        held_out = [c for c in data_categories if status[c] == "held_out"]
        parts.append(_glance(knowledge_base, data_categories, status, prompts, counts, results))
        parts.append(
            '<section id="categories"><h2>Finding categories in the data</h2>'
            f'<p class="lead">{len(data_categories) - len(held_out)} categories the model is trained on, then '
            f"{len(held_out)} held out of training and only tested. Texts in {_mono('this type')} are exactly what "
            "the model reads; “…” in a synonym stands for up to five words in between.</p>"
            f"{cards(data_categories)}</section>"
        )
        parts.append(
            f'<section id="other"><details><summary>Other knowledge-base categories ({len(other_categories)}), '
            f"not in this data set</summary>{cards(other_categories)}</details></section>"
        )
    parts.append(_run_section(run, datalist, counts, metrics, composer))
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _mono(text: Any) -> str:
    return f'<span class="mono">{_e(text)}</span>'


def _number(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _percent(probability: float) -> str:
    return f"{100 * probability:.0f}%"


def _list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _display_name(knowledge_base: KnowledgeBase, category_id: str) -> str:
    known = knowledge_base.categories.get(category_id)
    return known.name if known else category_id.replace("_", " ")


def _training_images(counts: Counts | None, category_id: str) -> int:
    """Training images that state or hedge the category."""
    if counts is None:
        return 0
    return sum(counts["training"][presence][category_id] for presence in ("present", "uncertain"))


def _metrics_by_category(metrics: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not metrics:
        return {}
    return {c: row for group in ("seen", "unseen") for c, row in metrics.get(group, {}).items() if c != "macro"}


def _head(title: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{_CSS}</style></head><body>")  # fmt: skip


def _header(
    knowledge_base: KnowledgeBase,
    run: RunSettings,
    datalist: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    seed: int,
) -> str:
    facts = [f"Configuration: {', '.join(_mono(f) for f in run.get('config_files', []))}"]
    if datalist is not None:
        sizes = ", ".join(f"{len(datalist.get(s, []))} {s}" for s in SPLITS)
        facts.append(f"Data: {_e(datalist.get('name', 'datalist'))} at {_mono(run.get('datalist_file'))} "
                     f"({_e(sizes)} images)")  # fmt: skip
    facts += [f"Knowledge base version {_e(knowledge_base.version)}", f"Example texts drawn with seed {_e(seed)}",
              "Test metrics: " + ("included" if metrics else f"not given (pass {_mono('--metrics')})")]  # fmt: skip
    warning = other = ""
    if datalist is None:
        warning = ('<p class="warning"><strong>The datalist could not be read:</strong> '
                   f"{_e(run.get('datalist_error'))} The categories below come from the knowledge base alone.</p>")  # fmt: skip
    else:
        other = '<a href="#other">Other knowledge-base categories</a>'
    return (
        '<header><p class="kicker">MedFILIP chest X-ray model · audit page</p>'
        f"<h1>What the <em>{_e(run.get('variant', '?'))}</em> run tells the model</h1>"
        f'<ul class="facts">{"".join(f"<li>{fact}</li>" for fact in facts)}</ul>{warning}'
        f'<nav><a href="#categories">Categories</a>{other}<a href="#run">How the run works</a></nav></header><main>'
    )


def _badge(status: str) -> str:
    css, text = _BADGES[status]
    return f'<span class="badge {css}">{_e(text)}</span>'


def _glance(
    knowledge_base: KnowledgeBase,
    categories: Sequence[str],
    status: Mapping[str, str],
    prompts: Mapping[str, tuple[str, str]],
    counts: Counts,
    results: Mapping[str, Mapping[str, Any]],
) -> str:
    """One row per data category: status, training images, the "present" prompt and, with metrics, the test result."""
    head = "<th>category</th><th>status</th><th>training images with it</th><th>“present” prompt</th>"
    if results:
        head += "<th>test AUC</th><th>threshold</th>"
    rows = []
    for c in categories:
        row = (f'<td><a href="#cat-{_e(c)}">{_e(_display_name(knowledge_base, c))}</a></td><td>{_badge(status[c])}'
               f"</td><td>{_training_images(counts, c)}</td><td>{_mono(prompts[c][0])}</td>")  # fmt: skip
        if results:
            result = results.get(c, {})
            row += f"<td>{_e(_number(result.get('auc')))}</td><td>{_e(_number(result.get('threshold')))}</td>"
        rows.append(f"<tr>{row}</tr>")
    return (f'<section id="glance"><h2>At a glance</h2><table class="glance"><tr>{head}</tr>{"".join(rows)}'
            "</table></section>")  # fmt: skip


def _category_card(
    knowledge_base: KnowledgeBase,
    category_id: str,
    status: str,
    prompt_pair: tuple[str, str],
    composer: FindingTextComposer | None,
    counts: Counts | None,
    result: Mapping[str, Any] | None,
    rng: np.random.Generator,
) -> str:
    category = knowledge_base.categories.get(category_id)
    badges = _badge(status)
    if status == "held_out" and _training_images(counts, category_id):
        badges += '<span class="badge alarm">but present in training images</span>'
    rows = _knowledge_rows(category, composer)
    rows.append(("Zero-shot prompts",
                 f'<div class="prompt"><span class="tag">present</span>{_mono(prompt_pair[0])}</div>'
                 f'<div class="prompt"><span class="tag">absent</span>{_mono(prompt_pair[1])}</div>'))  # fmt: skip
    examples_label = "Example texts (not used in training)" if status == "held_out" else "Example training texts"
    rows.append((examples_label, _examples(knowledge_base, category_id, status, composer, rng)))
    if counts is not None:
        rows.append(("Images in the data", _count_cell(category_id, counts)))
    if result is not None:
        rows.append(("Test result", _result_cell(result)))
    body = "".join(f"<dt>{_e(label)}</dt><dd>{cell}</dd>" for label, cell in rows)
    lists = ""
    if category and category.lists:
        lists = f'<p class="lists">Reference lists: {_e(", ".join(category.lists))}</p>'
    return (f'<article class="card {_BADGES[status][0]}" id="cat-{_e(category_id)}">'
            f'<h3>{_e(_display_name(knowledge_base, category_id))} <span class="id">{_e(category_id)}</span></h3>'
            f'<p class="badges">{badges}</p><dl>{body}</dl>{lists}</article>')  # fmt: skip


def _knowledge_rows(category: Category | None, composer: FindingTextComposer | None) -> list[tuple[str, str]]:
    if category is None:
        return [("Knowledge base", "Not in the knowledge base: no synonyms, attributes or description.")]
    attributes = "".join(
        f"<tr><th>{_e(ATTRIBUTE_LABELS[key])}</th><td>{_e(', '.join(category.attributes[key]) or '—')}</td></tr>"
        for key in ATTRIBUTE_KEYS
    )
    rows = [("Synonyms", _e(", ".join(s.replace(" ... ", " … ") for s in category.synonyms))),
            ("Description", _e(category.description)),
            ("Attributes", f'<table class="attributes">{attributes}</table>')]  # fmt: skip
    if composer is not None:
        terms = composer.attribute_terms(category.id)
        rows.append(("Words its texts add",
                     _mono(", ".join(terms)) if terms else "none: knowledge injection is off in this run"))  # fmt: skip
    return rows


def _examples(
    knowledge_base: KnowledgeBase,
    category_id: str,
    status: str,
    composer: FindingTextComposer | None,
    rng: np.random.Generator,
) -> str:
    if composer is None:
        return '<span class="muted">None composed: this run trains on report text as written (see below).</span>'
    rows = []
    for finding in example_findings(knowledge_base, category_id, rng):
        drawn = composer.compose(finding, rng).text
        complete = composer.compose(finding).text
        if finding.presence is Presence.ABSENT:
            what = "denied"
        else:
            hedge = "possible" if finding.presence is Presence.UNCERTAIN else ""
            what = " · ".join(part for part in (hedge, finding.severity, finding.location) if part)
        full = "" if drawn == complete else f'<div class="muted small">complete: {_e(complete)}</div>'
        rows.append(f'<div class="example"><div class="what">{_e(what)}</div>{_mono(drawn)}{full}</div>')
    if status == "held_out":
        note = "Never shown in training (held out): this is how its findings would be written."
    elif any(composer.drop_probabilities.values()) or composer.attribute_term_drop_probability:
        note = "One random draw each, with words left out as in training."
    else:
        note = "This run leaves no words out: every text is complete."
    return f'{"".join(rows)}<p class="muted small">{note}</p>'


def _count_cell(category_id: str, counts: Counts) -> str:
    cells = []
    for split in SPLITS:
        present, hedged, denied = (counts[split][p][category_id] for p in ("present", "uncertain", "absent"))
        possible = f" (+{hedged} possible)" if hedged else ""
        denials = f'<span class="muted small">{denied} deny it</span>'
        cells.append(f"<td><b>{present}</b> with it{possible}<br>{denials}</td>")
    head = "".join(f"<th>{split}</th>" for split in SPLITS)
    return f'<table class="counts"><tr>{head}</tr><tr>{"".join(cells)}</tr></table>'


def _result_cell(result: Mapping[str, Any]) -> str:
    items = [("AUC", "auc"), ("threshold", "threshold"), ("sensitivity", "sensitivity"),
             ("specificity", "specificity"), ("test positives", "positives")]  # fmt: skip
    return " · ".join(f"{label} <b>{_e(_number(result.get(key)))}</b>" for label, key in items)


def _run_section(
    run: RunSettings,
    datalist: Mapping[str, Any] | None,
    counts: Counts | None,
    metrics: Mapping[str, Any] | None,
    composer: FindingTextComposer | None,
) -> str:
    blocks = [
        ("The data", _data_block(run, datalist, counts)),
        ("What counts as a positive", _positive_block(run)),
        ("The texts the model learns from", _texts_block(run, composer)),
        ("Losses and their weights", _loss_block(run)),
        ("Zero-shot scoring and thresholds", _zero_shot_block(run, metrics)),
    ]
    body = "".join(f"<h3>{title}</h3>{content}" for title, content in blocks)
    return f'<section id="run" class="prose"><h2>How the run works, in plain words</h2>{body}</section>'


def _data_block(run: RunSettings, datalist: Mapping[str, Any] | None, counts: Counts | None) -> str:
    if datalist is None:
        return f'<p class="warning">Unknown: the datalist could not be read ({_e(run.get("datalist_error"))}).</p>'
    sizes = ", ".join(f"{len(datalist.get(s, []))} {s}" for s in SPLITS)
    items = [f"{_e(datalist.get('name', 'The data set'))}: {_e(sizes)} images, from {_mono(run.get('datalist_file'))}."]
    seen = set(run.get("seen_categories") or [])
    held_out = [c for c in datalist.get("categories", []) if c not in seen]
    if held_out:
        leaked = [c for c in held_out if _training_images(counts, c)]
        check = (f"<strong>but {_e(', '.join(leaked))} appear in training images</strong>" if leaked
                 else "checked: no training image has them")  # fmt: skip
        items.append(f"Held out of training: {_e(', '.join(held_out))}. They appear in the test images only ({check}).")
    unmentioned = run.get("unmentioned_findings")
    if unmentioned == "absent":
        items.append("Each image's findings list is complete: a category its report does not mention is taken as "
                     "absent.")  # fmt: skip
    elif unmentioned == "unknown":
        items.append("Reports mention what they see and deny only some of the rest: a category a report does not "
                     "mention is treated as unknown, not as absent.")  # fmt: skip
    schedule = [
        f"{run['max_epochs']} passes over the training images" if run.get("max_epochs") else "",
        f"{run['batch_size']} images per step" if run.get("batch_size") else "",
        f"images resized to {run['image_size']}×{run['image_size']} pixels" if run.get("image_size") else "",
        f"learning rate {_number(run['learning_rate'])}" if run.get("learning_rate") else "",
    ]
    items.append("Training: " + _e(", ".join(s for s in schedule if s)) + ".")
    validation = run.get("validation_categories")
    if validation:
        items.append(f"After each pass the model is scored on the validation images for {len(validation)} categories "
                     "(macro AUC), and the best-scoring model is kept.")  # fmt: skip
    return _list(items)


def _positive_block(run: RunSettings) -> str:
    hedged = run.get("label_uncertain_value")
    if hedged == 1.0:
        hedging = ", or hedges it (“possible …” counts as positive)"
    elif hedged is not None:
        hedging = f"; a hedged finding (“possible …”) gets the label {_e(_number(hedged))}"
    else:
        hedging = ""
    items = [f"<b>Evaluation:</b> an image is positive for a category when its report states the finding{hedging}. "
             "A denied or unmentioned finding is negative."]
    if run.get("training_texts") == "composed":
        items.append("<b>Training:</b> every stated or hedged finding of an image becomes a text describing it; the "
                     "soft targets below say how well each text fits each image.")  # fmt: skip
    else:
        items.append("<b>Training:</b> an image's own report text is its only match; findings are not used.")
    return _list(items)


def _texts_block(run: RunSettings, composer: FindingTextComposer | None) -> str:
    if composer is None:
        if run.get("training_texts") != "report_sections":
            return _list(["This page does not recognise how this run builds its training texts: see "
                          f"{_mono('train#text_transforms')} in the config."])  # fmt: skip
        sections = ", ".join(s.upper() for s in run.get("report_sections") or [])
        return _list([f"Each image is paired with its report's {_e(sections)} section, word for word. No finding "
                      "texts are composed and the knowledge base's attributes are not used in training."])  # fmt: skip
    negations = run.get("sampled_negations")
    if negations is None:
        sampled = ", perhaps more for categories it does not mention (how many depends on the data: unknown here)"
    elif negations:
        plural = "texts" if negations != 1 else "text"
        sampled = f", and {negations} more “no …” {plural} for categories it does not mention (trained-on ones only)"
    else:
        sampled = ""
    templates = "".join(f"<tr><th>{_e(kind.replace('_', ' '))}</th><td>{_mono(template)}</td></tr>"
                        for kind, template in composer.templates.items())  # fmt: skip
    if composer.iki:
        knowledge = ("Knowledge injection is <b>on</b>: the words in braces are filled from the finding and from the "
                     "knowledge base's attributes of its category, so a text also says what the finding looks "
                     "like.")  # fmt: skip
    else:
        knowledge = "Knowledge injection is <b>off</b>: texts name the finding but never describe how it looks."
    items = [
        f"Each training image gets up to {_e(_number(run.get('max_texts_per_image')))} texts: one per stated or "
        f"possible finding, “{_e(composer.templates['no_finding'])}” when it has none, one “no …” text per finding "
        f"its report denies{sampled}.",
        f'The texts follow these templates:<table class="templates">{templates}</table>',
        knowledge,
    ]
    drops = [f"the {field} from {_percent(p)}" for field, p in composer.drop_probabilities.items() if p > 0]
    term_drop = composer.attribute_term_drop_probability
    if drops or term_drop > 0:
        per_term = f"; each attribute word from {_percent(term_drop)}" if term_drop > 0 else ""
        items.append("Every time an image is used, words are left out at random so that each part has to carry "
                     f"meaning on its own: {_e(', '.join(drops))} of the texts{per_term}. The name and the attributes "
                     "are never both left out, and “no …” texts are never shortened.")  # fmt: skip
    else:
        items.append("No words are left out: every text is complete.")
    return _list(items)


def _loss_block(run: RunSettings) -> str:
    loss = run.get("loss")
    if loss == "CLIPContrastiveLoss":
        return _list(["Contrastive loss (CLIP's InfoNCE): each image is pulled towards its own report text and "
                      "pushed away from every other report in the batch, even one that describes the same "
                      "finding."])  # fmt: skip
    if loss != "MedFILIPLoss":
        return _list([f"Loss {_mono(loss or '?')}: not one this page knows how to explain; see the config."])
    itm_weight = run.get("itm_weight") or 0.0
    if itm_weight > 0:
        itm = ("a small head learns to answer “does this text fit this image?”, on each text with its own image and "
               "on hard negatives: pairs the model finds similar but whose soft target is below "
               f"{_e(_number(run.get('itm_negative_threshold')))}.")  # fmt: skip
    else:
        itm = "switched off in this run."
    items = [
        f"<b>Contrastive loss</b> ({_e(run.get('contrastive_form'))}), weight "
        f"<b>{_e(_number(run.get('contrastive_weight')))}</b>: each image is pulled towards the texts that fit it and "
        "away from those that do not, by how much each text fits (the soft targets below). The similarity sharpness "
        f"(temperature) is learnt between {_e(_number(run.get('min_temperature')))} and "
        f"{_e(_number(run.get('max_temperature')))}.",
        f"<b>Image–text matching (ITM)</b>, weight <b>{_e(_number(itm_weight))}</b>: {itm}",
    ]
    patch_weight = run.get("patch_weight") or 0.0
    if patch_weight > 0:
        items.append(f"<b>Patch–sentence matching</b>, weight <b>{_e(_number(patch_weight))}</b>: the same pulling and "
                     "pushing, with each text compared with the regions of the image it fits best instead of the "
                     "whole image, so that a finding is matched where it is drawn.")  # fmt: skip
    items.append(f"<b>Soft targets:</b> {_targets_text(run)}")
    return _list(items)


def _targets_text(run: RunSettings) -> str:
    """The SSM rules of ``bundle.losses.ssm`` in plain words, with the run's weights."""
    if run.get("targets") == "OwnTextTargets":
        return ("each text fits its own image only (plain CLIP pairing): a finding shared by two images in a batch "
                "counts as a mismatch for the other image.")  # fmt: skip
    if run.get("targets") != "SemanticSimilarityMatrix":
        return f"computed by {_mono(run.get('targets') or '?')}; see the config."
    location, severity = run.get("ssm_location_weight"), run.get("ssm_severity_weight")
    hedged = run.get("uncertain_weight")
    silence = {
        "absent": "counts as an image without X (the findings lists are complete)",
        "unknown": "is left out of the loss for that text (silence does not prove absence)",
    }.get(run.get("unmentioned_findings") or "", "is handled as the data's policy says, unknown here (no datalist)")
    rules = [
        "A text describing a finding scores 1 on an image with that finding, judged by its best match among the "
        "image's stated or possible findings. When the text names the category it must be the same category; a text "
        "that gives only attribute words scores the share of those words that the finding's category has in the "
        "knowledge base.",
        f"A location in the text that disagrees with the finding's lowers the score by up to {_number(location)} "
        "(a bilateral finding against a one-sided text counts as half a disagreement).",
        f"A severity that differs lowers it by up to {_number(severity)}, in proportion to how many steps apart the "
        "two are (minimal, mild, moderate, severe).",
        f"A hedged finding against a certain text, or the reverse, multiplies the score by {_number(hedged)}.",
        "A text never fits an image whose report denies its category.",
        f"A “no X” text scores 1 on an image without X, 0 on an image with X and "
        f"{_number(None if hedged is None else 1 - hedged)} where X is possible. An image whose report does not "
        f"mention X {silence}.",
        "The no-finding text scores 1 on images without any stated or possible finding, else 0.",
        "Two images with the same finding are thus both right for its text, not a false mismatch as in plain CLIP.",
    ]
    return "how well each text fits each image of the batch, from 0 to 1:" + _list([_e(rule) for rule in rules])


def _zero_shot_block(run: RunSettings, metrics: Mapping[str, Any] | None) -> str:
    if run.get("prompts_composed"):
        source = "composed like the training texts (with the attribute words), without location or severity"
    else:
        source = "the category's name and “no” + its name"
    if run.get("zero_shot_scoring") == "softmax":
        how = ("the image is compared with the “present” prompt of every scored category and with the no-finding "
               "text, and a category's score is its share of the image among them (0 to 1, all shares summing to "
               "1); the “absent” prompt is not used.")  # fmt: skip
    elif run.get("zero_shot_scoring") == "positive":
        how = ("the score is the similarity between the image and the “present” prompt alone (from -1 to 1); the "
               "“absent” prompt is not used.")  # fmt: skip
    else:
        how = ("the image is compared with the “present” and the “absent” prompt, and the score is the probability "
               "that the “present” one fits better (0 to 1; 0.5 means undecided).")  # fmt: skip
    if run.get("zero_shot_patches"):
        how += " The image is represented by its regions: each prompt is compared with the regions it fits best."
    items = [
        _e(f"Each category has two prompts, {source}; {how}"),
        _e("A category is called present when its score reaches the category's threshold. Thresholds are chosen on "
           "the validation images to give the best F1 and then applied unchanged to the test images; a category "
           "without a positive validation image (every held-out one) gets the mean of the other categories' "
           "thresholds: one model's scores share a scale, and the validation images allow no better guess."),
    ]  # fmt: skip
    if not metrics:
        items.append("No metrics file was given, so no thresholds or AUCs are shown.")
    for group, label in (("seen", "trained-on"), ("unseen", "held-out")):
        macro = (metrics or {}).get(group, {}).get("macro")
        if macro:
            items.append(f"Test macro AUC over the {label} categories: <b>{_e(_number(macro.get('auc')))}</b> "
                         f"({_e(metrics.get('n_test', '?'))} test images; thresholds from "
                         f"{_e(metrics.get('thresholds_from', '?'))}).")  # fmt: skip
    return _list(items)


_CSS = """
:root { --ink: #1d2733; --muted: #5b6877; --line: #d8dee6; --paper: #f6f7f9; --seen: #1f7a4d; --held: #a3460f; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--paper); color: var(--ink);
  font: 16px/1.5 "Segoe UI", "Helvetica Neue", Arial, "Liberation Sans", sans-serif; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 28px 40px 16px; }
main { padding: 8px 40px 48px; max-width: 1400px; }
h1 { font-size: 30px; line-height: 1.2; margin: 4px 0 12px; }
h2 { font-size: 23px; margin: 32px 0 6px; }
h3 { font-size: 19px; margin: 0; }
.kicker { margin: 0; color: var(--muted); text-transform: uppercase; letter-spacing: .06em; font-size: 13px; }
.facts { margin: 0 0 12px; padding-left: 20px; color: var(--muted); }
nav a { margin-right: 20px; color: #1a5fa8; }
.lead { color: var(--muted); margin: 0 0 16px; }
.mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 14px; background: #eef2f7;
  border-radius: 4px; padding: 1px 5px; }
.grid { display: grid; align-items: start; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr));
  gap: 18px; margin-top: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-top: 5px solid var(--line); border-radius: 8px;
  padding: 16px 20px; break-inside: avoid; }
.card.seen { border-top-color: var(--seen); }
.card.held { border-top-color: var(--held); background: #fffaf5; }
.id { color: var(--muted); font-weight: normal; font-size: 13px; margin-left: 6px; }
.badges { margin: 6px 0 10px; }
.badge { display: inline-block; white-space: nowrap; font-size: 13px; font-weight: 600; border-radius: 999px;
  padding: 2px 10px; margin-right: 6px; }
.badge.seen { background: #e3f4eb; color: var(--seen); }
.badge.held { background: #fde9dc; color: var(--held); border: 1px solid #f0b894; }
.badge.other { background: #eceff3; color: var(--muted); }
.badge.alarm { background: #b3261e; color: #fff; }
dl { display: grid; grid-template-columns: 150px 1fr; gap: 8px 14px; margin: 0; }
dt { color: var(--muted); font-size: 14px; padding-top: 2px; }
dd { margin: 0; }
table { border-collapse: collapse; }
.attributes th, .templates th { text-align: left; font-weight: normal; color: var(--muted); font-size: 14px;
  padding: 2px 12px 2px 0; vertical-align: top; white-space: nowrap; }
.attributes td, .templates td { padding: 2px 0; }
.example { margin-bottom: 8px; }
.what { color: var(--muted); font-size: 13px; }
.counts th { font-weight: normal; color: var(--muted); font-size: 13px; text-align: left; padding-right: 22px; }
.counts td { padding-right: 22px; vertical-align: top; }
.glance { background: #fff; border: 1px solid var(--line); border-radius: 8px; margin-top: 8px; }
.glance th { text-align: left; font-size: 13px; color: var(--muted); font-weight: 600; padding: 8px 14px;
  border-bottom: 1px solid var(--line); }
.glance td { padding: 5px 14px; border-bottom: 1px solid #eef1f4; vertical-align: top; }
.glance a { color: var(--ink); font-weight: 600; }
.prompt { margin-bottom: 4px; }
.tag { display: inline-block; width: 62px; color: var(--muted); font-size: 13px; }
.muted { color: var(--muted); }
.small { font-size: 13px; margin: 2px 0 0; }
.lists { color: var(--muted); font-size: 13px; margin: 10px 0 0; }
.warning { background: #fdecea; border-left: 4px solid #b3261e; padding: 10px 14px; }
details { margin-top: 28px; }
summary { cursor: pointer; font-size: 20px; font-weight: 600; }
.prose { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 4px 28px 20px;
  margin-top: 32px; max-width: 1100px; }
.prose h3 { margin-top: 18px; }
.prose li { margin-bottom: 6px; }
@media print { body { background: #fff; } .card { break-inside: avoid; } }
"""
