"""The audit page through the real CLI: generate SynthCXR, write the page for two configs, check what a clinician reads.

The content checks compare the page with what the run really uses (the composer's prompts, the
config's weights); the screenshot checks open each page in headless Chromium, as every HTML page
the project writes is checked (``scripts/setup_chromium.sh`` installs it).
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bundle.knowledge import default_knowledge_base
from bundle.knowledge.audit import HELD_OUT_BADGE, render_audit_page
from bundle.knowledge.iki import FindingTextComposer
from tests.bundle_cli import describe, make_synthcxr, run_script

REPO = Path(__file__).resolve().parents[1]
TRAIN = json.loads((REPO / "configs/train.json").read_text())
HELD_OUT = ("mass", "bulla")
# The layout of zero_shot_metrics.json (bundle.metrics.zero_shot_report); NaN as json.dump writes it.
METRICS = {
    "thresholds_from": "validation", "n_validation": 6, "n_test": 13,
    "seen": {"pleural_effusion": {"auc": 0.8125, "f1": 0.5, "accuracy": 0.7, "sensitivity": 0.75, "specificity": 0.8,
                                  "threshold": 0.4321, "positives": 3},
             "pneumothorax": {"auc": float("nan"), "f1": 0.0, "accuracy": 1.0, "sensitivity": 0.0, "specificity": 1.0,
                              "threshold": 0.5, "positives": 0},
             "macro": {"auc": 0.8125, "f1": 0.25, "accuracy": 0.85, "sensitivity": 0.375, "specificity": 0.9}},
    "unseen": {"mass": {"auc": 0.61, "f1": 0.3, "accuracy": 0.5, "sensitivity": 0.5, "specificity": 0.5,
                        "threshold": 0.5, "positives": 4},
               "macro": {"auc": 0.61, "f1": 0.3, "accuracy": 0.5, "sensitivity": 0.5, "specificity": 0.5}},
}  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run a repository script as a user would (offline, the repo importable), failing with its output."""
    result = run_script(*args)
    assert result.returncode == 0, describe(result)
    return result


@pytest.fixture(scope="module")
def synthcxr(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthcxr")
    return make_synthcxr(out, 60, "--unseen", ",".join(HELD_OUT), "--workers", "1")


@pytest.fixture(scope="module")
def pages(synthcxr, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("audit")
    metrics = out / "zero_shot_metrics.json"
    metrics.write_text(json.dumps(METRICS))
    configs = {"medfilip": "configs/train.json", "clip_baseline": "['configs/train.json','configs/clip_baseline.json']",
               "no_patch_matching": "['configs/train.json','configs/no_patch_matching.json']"}
    for variant, config in configs.items():
        run_cli("scripts/audit_report.py", "--config_file", config, "--dataset_dir", str(synthcxr),
                "--metrics", str(metrics), "--output", str(out / f"{variant}/report.html"))  # fmt: skip
    return {variant: out / f"{variant}/report.html" for variant in configs}


def card(page: str, category: str) -> str:
    found = re.search(rf'<article class="card[^"]*" id="cat-{category}">.*?</article>', page, re.DOTALL)
    assert found, f"no card for {category}"
    return found.group(0)


def text_of(page: str) -> str:
    """What a reader sees: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def datalist_categories(synthcxr: Path) -> list[str]:
    return json.loads((synthcxr / "datalist.json").read_text())["categories"]


def test_every_category_is_shown_with_its_knowledge(pages, synthcxr):
    page = pages["medfilip"].read_text()
    kb = default_knowledge_base()
    for category_id, category in kb.categories.items():
        shown = card(page, category_id)
        assert html.escape(category.name) in shown and html.escape(category.description) in shown
        assert html.escape(category.synonyms[-1].replace(" ... ", " … ")) in shown
    data_cards = page[: page.index('<section id="other">')]
    for category_id in datalist_categories(synthcxr):
        assert f'id="cat-{category_id}"' in data_cards, f"{category_id} is not among the data's categories"
    assert "<details>" in page[page.index('<section id="other">'):], "the other categories are not collapsed"


def test_held_out_categories_are_badged_and_absent_from_training(pages, synthcxr):
    page = pages["medfilip"].read_text()
    for category_id in datalist_categories(synthcxr):
        assert (HELD_OUT_BADGE in card(page, category_id)) == (category_id in HELD_OUT), category_id
    assert "checked: no training image has them" in page


def test_prompts_and_examples_are_what_the_composer_writes(pages, synthcxr):
    page = pages["medfilip"].read_text()
    kb = default_knowledge_base()
    composer = FindingTextComposer(kb, templates=TRAIN["finding_templates"], iki=TRAIN["iki"])
    for category_id in kb.category_ids:
        positive, negative = composer.prompts(category_id)
        shown = card(page, category_id)
        assert f'present</span><span class="mono">{html.escape(positive)}</span>' in shown
        assert f'absent</span><span class="mono">{html.escape(negative)}</span>' in shown
        negated = html.escape(f"no {kb.categories[category_id].name}")
        assert f'<div class="what">denied</div><span class="mono">{negated}</span>' in shown
    assert "One random draw each, with words left out as in training." in card(page, "pleural_effusion")


def test_run_settings_come_from_the_config(pages):
    text = text_of(pages["medfilip"].read_text())
    assert f"Contrastive loss ({TRAIN['contrastive_form']}), weight {TRAIN['contrastive_weight']:g}:" in text
    assert f"Image–text matching (ITM), weight {TRAIN['itm_weight']:g}:" in text
    assert f"lowers the score by up to {TRAIN['ssm_location_weight']:g}" in text
    assert f"lowers it by up to {TRAIN['ssm_severity_weight']:g}" in text
    assert f"multiplies the score by {TRAIN['uncertain_weight']:g}" in text
    assert f"soft target is below {TRAIN['itm_negative_threshold']:g}" in text
    assert f"the severity from {TRAIN['field_drop_probabilities']['severity']:.0%}" in text
    assert "taken as absent" in text and "1 more “no …” text for" in text, "SynthCXR's complete findings lists"
    assert "AUC 0.812" in text and "threshold 0.432" in text and "AUC n/a" in text, "the metrics file"


def test_patch_matching_is_said_only_where_the_run_has_it(pages):
    text = text_of(pages["medfilip"].read_text())
    assert f"Patch–sentence matching, weight {TRAIN['patch_weight']:g}:" in text
    assert "each prompt is compared with the regions it fits best" in text
    ablation = text_of(pages["no_patch_matching"].read_text())
    assert "Patch–sentence matching" not in ablation and "regions it fits best" not in ablation


def test_clip_baseline_page_shows_plain_prompts_and_report_texts(pages, synthcxr):
    page = pages["clip_baseline"].read_text()
    kb = default_knowledge_base()
    for category_id in datalist_categories(synthcxr):
        name = html.escape(kb.categories[category_id].name)
        shown = card(page, category_id)
        assert f'present</span><span class="mono">{name}</span>' in shown
        assert f'absent</span><span class="mono">no {name}</span>' in shown
        assert "None composed" in shown and "Words its texts add" not in shown
    text = text_of(page)
    assert "report's IMPRESSION section" in text and "CLIP's InfoNCE" in text
    assert "What the clip_baseline run tells the model" in text


def test_missing_datalist_is_said_and_categories_still_shown(tmp_path):
    output = tmp_path / "report.html"
    result = run_cli("scripts/audit_report.py", "--config_file", "configs/train.json",
                     "--dataset_dir", str(tmp_path / "nowhere"), "--output", str(output))  # fmt: skip
    assert "does not exist" in result.stderr
    page = output.read_text()
    assert "The datalist could not be read" in page
    for category_id in default_knowledge_base().category_ids:
        card(page, category_id)


def test_page_text_is_escaped():
    kb = default_knowledge_base()
    composer = FindingTextComposer(kb)
    prompts = {c: composer.prompts(c) for c in kb.category_ids}
    run = {"variant": "<b>v</b>", "datalist_error": "<script>alert(1)</script>", "loss": "MedFILIPLoss",
           "targets": "OwnTextTargets", "training_texts": "composed", "config_files": ["a&b.json"]}  # fmt: skip
    page = render_audit_page(kb, prompts, run, composer)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>v</b>" not in page and "a&amp;b.json" in page
    assert "each text fits its own image only" in page


@pytest.mark.parametrize("variant", ["medfilip", "clip_baseline"])
def test_chromium_renders_the_page(pages, variant, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run `bash scripts/setup_chromium.sh` (scripts/test.sh does)")
    screenshot = pages[variant].with_suffix(".png")
    command = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
               f"--screenshot={screenshot}", "--window-size=1280,2000", pages[variant].as_uri()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and screenshot.is_file(), result.stderr[-2000:]
    assert screenshot.stat().st_size > 20_000
    with Image.open(screenshot) as image:
        assert image.size == (1280, 2000)
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1, "the screenshot is blank"
