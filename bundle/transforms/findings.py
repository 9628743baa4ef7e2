"""Findings-side transforms: structured findings to label tensors, SSM codes and IKI training texts."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from ..data.datalist import check_item_keys, describe_item, item_findings
from ..findings import Finding, Presence
from ..knowledge.iki import FindingTextComposer
from ..losses.ssm import FindingsVocabulary


class FindingsToLabelsd(MapTransform):
    """Turn a list of findings into a multi-hot label vector over fixed categories.

    Args:
        keys: key holding the findings (``Finding.to_dict()`` records).
        categories: category ids, one output channel each, in order.
        output_key: where to write the float ``[C]`` label vector.
        uncertain_value: label given to ``uncertain`` findings (1.0 counts a hedged finding as
            positive, the "U-ones" policy; 0.0 counts it as negative).
        ignored_categories: categories that items may mention but that get no channel (e.g. the
            held-out categories when labelling over the seen ones).

    A category that is absent or never mentioned gets 0. A finding whose category is neither in
    ``categories`` nor in ``ignored_categories``, or whose presence is not present / absent /
    uncertain, is an error naming the item and the value (it would otherwise count as a 0).
    """

    fix = (
        "Fix the item's findings in the datalist; a category that is right but has no label channel goes in "
        "FindingsToLabelsd's ignored_categories (e.g. the held-out categories)."
    )

    def __init__(
        self,
        keys: KeysCollection,
        categories: Sequence[str],
        output_key: str = "label",
        uncertain_value: float = 1.0,
        ignored_categories: Sequence[str] = (),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not categories:
            raise ValueError("FindingsToLabelsd needs at least one category")
        self.index = {category: i for i, category in enumerate(categories)}
        self.known_categories = list(self.index) + [c for c in ignored_categories if c not in self.index]
        self.output_key = output_key
        self.value_of = {Presence.PRESENT: 1.0, Presence.UNCERTAIN: float(uncertain_value), Presence.ABSENT: 0.0}

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        check_item_keys(self, d)
        for key in self.key_iterator(d):
            label = torch.zeros(len(self.index), dtype=torch.float32)
            for finding in item_findings(d, key, self.known_categories, fix=self.fix):
                channel = self.index.get(finding.category)
                if channel is not None:  # None: an ignored category
                    label[channel] = max(label[channel].item(), self.value_of[finding.presence])
            d[self.output_key] = label
        return d


class EncodeFindingsd(MapTransform):
    """Encode an item's findings as a ``[max_findings, 5]`` code tensor for the SSM targets.

    Args:
        keys: key holding the findings (``Finding.to_dict()`` records).
        vocabulary: a ``bundle.losses.ssm.FindingsVocabulary``.
        max_findings: rows of the output (present and hedged findings first; the rest are cut).
        output_key: where to write the codes.
    """

    def __init__(
        self,
        keys: KeysCollection,
        vocabulary: FindingsVocabulary,
        max_findings: int = 16,
        output_key: str = "findings_code",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.vocabulary = vocabulary
        self.max_findings = int(max_findings)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        check_item_keys(self, d)
        for key in self.key_iterator(d):
            findings = item_findings(d, key)
            try:
                d[self.output_key] = self.vocabulary.encode_findings(findings, self.max_findings)
            except ValueError as error:
                raise ValueError(f"findings of {describe_item(d)}: {error}") from None
        return d


class ComposeFindingTextsd(Randomizable, MapTransform):
    """Pick an item's training texts and compose them with IKI (new field drops every call).

    The texts of one image, at most ``max_texts``: its present and hedged findings (shuffled),
    the no-finding text when it has none, the negations its report states, then up to
    ``sampled_negations`` "no X" texts for categories of ``negatable_categories`` the item does
    not mention (only meaningful where silence means absence, e.g. SynthCXR ground truth).

    Args:
        keys: key holding the findings.
        composer: a ``bundle.knowledge.iki.FindingTextComposer``.
        vocabulary: a ``bundle.losses.ssm.FindingsVocabulary``.
        max_texts: slots per image (padding has text code 0).
        negatable_categories: categories that sampled negations may name; never put held-out
            categories here, or training texts would name them.
        sampled_negations: how many unmentioned categories to deny per image.
        drop_fields: let the composer drop fields at random (training); False composes every
            text in full, so evaluation (e.g. retrieval) reads the same texts on every call.
        text_key, code_key, attributes_key: outputs: the list of strings, ``[max_texts, 6]``
            codes and ``[max_texts, V]`` kept-attribute multi-hot.
    """

    def __init__(
        self,
        keys: KeysCollection,
        composer: FindingTextComposer,
        vocabulary: FindingsVocabulary,
        max_texts: int = 8,
        negatable_categories: Sequence[str] = (),
        sampled_negations: int = 0,
        drop_fields: bool = True,
        text_key: str = "text",
        code_key: str = "text_code",
        attributes_key: str = "text_attributes",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if max_texts < 1:
            raise ValueError(f"max_texts must be at least 1, got {max_texts}")
        self.composer = composer
        self.vocabulary = vocabulary
        self.max_texts = int(max_texts)
        self.negatable_categories = list(negatable_categories)
        self.sampled_negations = int(sampled_negations)
        self.drop_fields = bool(drop_fields)
        self.text_key, self.code_key, self.attributes_key = text_key, code_key, attributes_key

    def select(self, findings: Sequence[Finding]) -> list[Finding | None]:
        """The findings to write texts for (None stands for the no-finding text), before the cap."""
        seen = [f for f in findings if f.presence is not Presence.ABSENT]
        denied = [f for f in findings if f.presence is Presence.ABSENT]
        mentioned = {f.category for f in findings}
        silent = [c for c in self.negatable_categories if c not in mentioned]
        chosen: list[Finding | None] = [seen[i] for i in self.R.permutation(len(seen))]
        if not seen:
            chosen.append(None)
        chosen += [denied[i] for i in self.R.permutation(len(denied))]
        if silent and self.sampled_negations:
            picks = self.R.choice(len(silent), size=min(self.sampled_negations, len(silent)), replace=False)
            chosen += [Finding(silent[i], presence=Presence.ABSENT) for i in picks]
        return chosen[: self.max_texts]

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        check_item_keys(self, d)
        for key in self.key_iterator(d):
            findings = item_findings(d, key)
            rng = self.R if self.drop_fields else None  # the composer drops fields only when given an rng
            texts = [self.composer.compose(finding, rng) for finding in self.select(findings)]
            d[self.text_key] = [t.text for t in texts]
            try:
                d[self.code_key], d[self.attributes_key] = self.vocabulary.encode_texts(texts, self.max_texts)
            except ValueError as error:
                raise ValueError(f"findings of {describe_item(d)}: {error}") from None
        return d
