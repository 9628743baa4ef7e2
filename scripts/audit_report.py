"""Write a run's audit page: what the model is told about every finding category, and the run in plain words.

    python scripts/audit_report.py --config_file configs/train.json --dataset_dir data/synthcxr \
        [--metrics eval/zero_shot_metrics.json] [--seed 0] --output report.html

``--config_file`` takes one path or a list as ``monai.bundle run`` does
(``"['configs/train.json','configs/no_iki.json']"``). The config is resolved with MONAI's own
``ConfigParser`` exactly as ``monai.bundle run`` resolves it, so the page shows the knowledge base,
composer, prompts and settings the run used (see ``bundle/knowledge/audit.py`` and docs/audit.md).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import pydoc
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monai.bundle import ConfigParser  # noqa: E402

from bundle.data.datalist import DatalistError  # noqa: E402
from bundle.engines.errors import error_chain  # noqa: E402
from bundle.io import atomic_open  # noqa: E402
from bundle.knowledge.audit import RunSettings, category_order, render_audit_page  # noqa: E402
from bundle.knowledge.base import KnowledgeBase  # noqa: E402
from bundle.knowledge.iki import FindingTextComposer  # noqa: E402

_REFERENCE = re.compile(r"@[\w#]+")


def parse_config_files(value: str) -> list[str]:
    """One config path, or a Python-literal list of paths as ``monai.bundle run --config_file`` takes it."""
    text = value.strip()
    if not text.startswith("["):
        return [text]
    try:
        files = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"--config_file {value!r} is not a list of paths; write \"['a.json','b.json']\"") from None
    if not files or not all(isinstance(f, str) for f in files):
        raise ValueError(f"--config_file {value!r} must list at least one path")
    return files


def load_parser(config_files: list[str], overrides: dict[str, Any]) -> ConfigParser:
    """Read and merge the configs, then apply the command-line overrides, as ``monai.bundle run`` does."""
    parser = ConfigParser()
    parser.read_config(config_files)
    parser.update(overrides)
    return parser


def _datalist_problem(error: BaseException) -> DatalistError | None:
    """The ``DatalistError`` behind a MONAI evaluation error (MONAI wraps it in a RuntimeError)."""
    return next((cause for cause in error_chain(error) if isinstance(cause, DatalistError)), None)


def _component(parser: ConfigParser, config_id: str) -> str:
    """The id of the config item that ``config_id`` stands for, following plain ``"@id"`` references."""
    raw = parser.get(config_id)
    while isinstance(raw, str) and _REFERENCE.fullmatch(raw):
        config_id = raw[1:]
        raw = parser.get(config_id)
    return config_id


def _target(parser: ConfigParser, config_id: str) -> str:
    raw = parser.get(config_id)
    return raw.get("_target_", "") if isinstance(raw, dict) else ""


def _class_name(parser: ConfigParser, config_id: str) -> str:
    return _target(parser, config_id).rsplit(".", 1)[-1]


def _find(parser: ConfigParser, list_id: str, class_name: str) -> str | None:
    """The id of the first component of the config list ``list_id`` built from ``class_name``, or None."""
    for index in range(len(parser.get(list_id, None) or [])):
        component = _component(parser, f"{list_id}#{index}")
        if _class_name(parser, component) == class_name:
            return component
    return None


def resolve_run(
    config_files: list[str], overrides: dict[str, Any]
) -> tuple[KnowledgeBase, FindingTextComposer | None, dict[str, tuple[str, str]], RunSettings, dict[str, Any] | None]:
    """Resolve what the page shows: ``(knowledge base, composer, prompts, run settings, datalist)``.

    The composer is the one the training transform uses (None when training reads report text);
    the prompts are the run's ``validate#inferer`` prompts, for every category the page shows.
    A missing datalist is no error: the settings that depend on it become None.
    """
    parser = load_parser(config_files, overrides)
    knowledge_base = parser.get_parsed_content("knowledge_base")
    try:
        datalist, datalist_error = parser.get_parsed_content("datalist"), None
    except RuntimeError as error:
        problem = _datalist_problem(error)
        if problem is None:
            raise
        datalist, datalist_error = None, str(problem)

    def value(config_id: str) -> Any:
        try:
            return parser.get_parsed_content(config_id)
        except RuntimeError as error:
            if datalist is None and _datalist_problem(error) is not None:
                return None
            raise

    def plain(key: str) -> Any:
        return value(key) if key in parser else None

    def argument(component_id: str, name: str) -> Any:
        """A component's argument as the config resolves it, or its class's default when the config leaves it out."""
        if name in parser.get(component_id):
            return value(f"{component_id}#{name}")
        target = pydoc.locate(_target(parser, component_id))
        if target is None:
            raise ValueError(f"cannot import {_target(parser, component_id)!r} (config item {component_id!r})")
        return inspect.signature(target).parameters[name].default

    run: RunSettings = {
        "config_files": list(config_files),
        "variant": plain("variant"),
        "datalist_file": plain("datalist_file"),
        "datalist_error": datalist_error,
        "seen_categories": plain("seen_categories") or [],
        "validation_categories": plain("label_categories") or [],
        **{key: plain(key) for key in ("max_epochs", "batch_size", "image_size", "learning_rate")},
    }
    composer = None
    compose_id = _find(parser, "train#text_transforms", "ComposeFindingTextsd")
    sections_id = _find(parser, "train#text_transforms", "ReportSectionsd")
    if compose_id:
        composer = value(f"{compose_id}#composer")
        run.update(training_texts="composed", max_texts_per_image=argument(compose_id, "max_texts"),
                   sampled_negations=argument(compose_id, "sampled_negations"))  # fmt: skip
    elif sections_id:
        run.update(training_texts="report_sections", report_sections=list(argument(sections_id, "sections")))
    else:
        run["training_texts"] = "unknown"

    loss_id = _component(parser, "loss")
    run["loss"] = _class_name(parser, loss_id)
    if run["loss"] == "MedFILIPLoss":
        contrastive_id = _component(parser, f"{loss_id}#contrastive")
        targets_id = _component(parser, f"{loss_id}#ssm")
        # MedFILIPLoss drops the ITM term when the network has no ITM head (no_itm.json nulls it)
        has_itm_head = parser.get("network_def#itm_head", None) is not None
        run.update(
            contrastive_weight=argument(loss_id, "contrastive_weight"),
            itm_weight=argument(loss_id, "itm_weight") if has_itm_head else 0.0,
            itm_negative_threshold=argument(loss_id, "itm_negative_threshold"),
            # like ITM, the patch term needs its head in the network (no_patch_matching.json nulls it)
            patch_weight=argument(loss_id, "patch_weight") if parser.get("network_def#patch_head", None) else 0.0,
            contrastive_form=argument(contrastive_id, "form"),
            min_temperature=argument(contrastive_id, "min_temperature"),
            max_temperature=argument(contrastive_id, "max_temperature"),
            targets=_class_name(parser, targets_id),
        )
        if run["targets"] == "SemanticSimilarityMatrix":
            run.update(ssm_location_weight=argument(targets_id, "location_weight"),
                       ssm_severity_weight=argument(targets_id, "severity_weight"),
                       uncertain_weight=argument(targets_id, "uncertain_weight"),
                       unmentioned_findings=argument(targets_id, "unmentioned"))  # fmt: skip
    labels_id = _find(parser, "validate#label_transforms", "FindingsToLabelsd")
    run["label_uncertain_value"] = argument(labels_id, "uncertain_value") if labels_id else None

    # The run's inferer covers its label_categories only; the same inferer config, resolved over
    # every category the page shows, gives each one its prompts exactly as evaluation builds them.
    shown = [c for group in category_order(knowledge_base, datalist) for c in group]
    inferer = load_parser(config_files, {**overrides, "label_categories": shown}).get_parsed_content("validate#inferer")
    if len(inferer.prompts) != len(shown):
        raise ValueError(
            f"validate#inferer built {len(inferer.prompts)} prompt pairs for {len(shown)} categories; "
            "its categories must be @label_categories for the audit to show every category's prompts"
        )
    run["zero_shot_scoring"] = inferer.scoring
    run["zero_shot_patches"] = inferer.patch_temperature is not None
    run["prompts_composed"] = _target(parser, _component(parser, "validate#inferer")).endswith(".from_composer")
    return knowledge_base, composer, dict(zip(shown, inferer.prompts)), run, datalist


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config_file", required=True,
                        help="config path, or a list of them as monai.bundle run takes it: \"['a.json','b.json']\"")
    parser.add_argument("--dataset_dir", help="the data set folder (overrides the config's dataset_dir)")
    parser.add_argument("--metrics", type=Path, help="the evaluation's zero_shot_metrics.json (thresholds, AUCs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the example findings and their word dropping")
    parser.add_argument("--output", type=Path, required=True, help="the HTML file to write")
    args = parser.parse_args(argv)
    try:
        args.config_file = parse_config_files(args.config_file)
    except ValueError as error:
        parser.error(str(error))
    missing = [f for f in args.config_file if not Path(f).is_file()]
    if missing:
        parser.error(f"config file(s) {missing} do not exist")
    if args.metrics is not None and not args.metrics.is_file():
        parser.error(f"--metrics {args.metrics} does not exist: run the evaluation (configs/evaluate.json) first")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    metrics = json.loads(args.metrics.read_text(encoding="utf-8")) if args.metrics else None
    overrides = {"dataset_dir": args.dataset_dir} if args.dataset_dir else {}
    knowledge_base, composer, prompts, run, datalist = resolve_run(args.config_file, overrides)
    page = render_audit_page(knowledge_base, prompts, run, composer, datalist, metrics, args.seed)
    with atomic_open(args.output) as handle:
        handle.write(page)
    if run["datalist_error"]:
        print(f"audit_report.py: warning: {run['datalist_error']}", file=sys.stderr)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
