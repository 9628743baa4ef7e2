"""SSM, the semantic similarity matrix: soft image-text targets from structured findings.

For image ``i`` and text ``j`` of a batch the target says how well text ``j``, with only the
fields it kept (``bundle.knowledge.iki.FindingText``), describes image ``i``:

- a positive text (a present or hedged finding) scores its best agreement with any present or
  hedged finding of the image: the category must be the same when the text names it; a text
  that shows only attribute words scores the share of those words that the finding's category
  has (the knowledge base's attributes); a kept location and severity grade the score down
  when they disagree (``location_weight``, ``severity_weight``); a hedged finding on one side
  and a certain one on the other scale it by ``uncertain_weight``. A positive text never
  matches an image whose report denies its category.
- a negative text ("no X") scores 1 on images without X, 0 on images with X, and
  ``1 - uncertain_weight`` on images where X is hedged. Whether an image *without a word
  about X* lacks X depends on the data: ``unmentioned="absent"`` (complete ground truth, as
  SynthCXR's) says it does; ``unmentioned="unknown"`` (real reports, which mention what they
  see and deny only some of the rest) gives the pair weight 0, so it is left out of the loss.
- the no-finding text scores 1 on images without a present or hedged finding, else 0.

Duplicate findings across images are thereby positives, not the false negatives that a
one-to-one CLIP target makes of them. The computation is a few broadcasts over
``[B, findings, texts]`` tensors; the encodings are built per item by
``bundle.transforms.EncodeFindingsd`` / ``ComposeFindingTextsd``.

MedFILIP's released code compares MPNet embeddings of the triplet strings inside a category
(``train/train.py`` SSM); nothing in MONAI or open_clip computes targets from structured
findings, hence this module. The structured targets are the default; ``embedding_blend`` mixes
in such a sentence-embedding similarity for positive texts (``configs/sentence_ssm.json``).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch

from bundle.findings import Finding
from bundle.knowledge.base import KnowledgeBase
from bundle.knowledge.iki import FindingText, TextKind

FINDING_COLUMNS = ("category", "laterality", "region", "severity", "presence")
TEXT_COLUMNS = ("kind", "category", "name_kept", "laterality", "region", "severity")
UNMENTIONED_POLICIES = ("absent", "unknown")


class FindingsVocabulary:
    """Integer codes for categories, locations, severities and attribute terms of a knowledge base.

    Args:
        knowledge_base: the vocabulary source.
        extra_categories: category ids outside the knowledge base that data may use (they get
            codes but no attributes).
    """

    def __init__(self, knowledge_base: KnowledgeBase, extra_categories: Iterable[str] = ()) -> None:
        self.categories = list(knowledge_base.category_ids)
        self.categories += [c for c in dict.fromkeys(extra_categories) if c not in knowledge_base.categories]
        self.category_index = {c: i for i, c in enumerate(self.categories)}
        self.lateralities = list(knowledge_base.laterality)
        self.regions = list(knowledge_base.regions)
        self.severities = list(knowledge_base.severities)
        terms = {c: knowledge_base.attribute_terms(c) for c in knowledge_base.category_ids}
        self.attribute_terms = sorted({t for category_terms in terms.values() for t in category_terms})
        self.attribute_index = {t: i for i, t in enumerate(self.attribute_terms)}
        self.category_attributes = torch.zeros(len(self.categories), len(self.attribute_terms))
        for category, category_terms in terms.items():
            for term in category_terms:
                self.category_attributes[self.category_index[category], self.attribute_index[term]] = 1.0

    def category_code(self, category: str) -> int:
        try:
            return self.category_index[category]
        except KeyError:
            raise ValueError(
                f"category {category!r} is not in the knowledge base; add it to knowledge_base.yaml "
                "(with its attributes) or map it to a known category id"
            ) from None

    def location_codes(self, location: str | None) -> tuple[int, int]:
        """``(laterality, region)`` codes of a normalised location (-1 where a part is missing or unknown)."""
        if not location:
            return -1, -1
        side, _, rest = location.partition(" ")
        if side in self.lateralities:
            region = rest
        else:
            side, region = "", location
        laterality = self.lateralities.index(side) if side else -1
        return laterality, self.regions.index(region) if region in self.regions else -1

    def severity_code(self, severity: str | None) -> int:
        return self.severities.index(severity) if severity in self.severities else -1

    def encode_findings(self, findings: Sequence[Finding | Mapping], max_findings: int) -> torch.Tensor:
        """``[max_findings, 5]`` long codes (``FINDING_COLUMNS``); unused rows have presence 0.

        The first ``max_findings`` are kept: present and hedged findings come before denied ones.
        """
        records = [f if isinstance(f, Finding) else Finding.from_dict(f) for f in findings]
        records.sort(key=lambda f: f.presence.value == "absent")
        codes = torch.full((max_findings, len(FINDING_COLUMNS)), -1, dtype=torch.long)
        codes[:, 4] = TextKind.PADDING
        for row, finding in enumerate(records[:max_findings]):
            laterality, region = self.location_codes(finding.location)
            codes[row] = torch.tensor([
                self.category_code(finding.category), laterality, region, self.severity_code(finding.severity),
                TextKind[finding.presence.name],
            ])  # fmt: skip
        return codes

    def encode_texts(self, texts: Sequence[FindingText], max_texts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``([max_texts, 6] long codes (TEXT_COLUMNS), [max_texts, V] kept-attribute multi-hot)``."""
        if len(texts) > max_texts:
            raise ValueError(f"got {len(texts)} texts for {max_texts} slots")
        codes = torch.full((max_texts, len(TEXT_COLUMNS)), -1, dtype=torch.long)
        codes[:, 0] = TextKind.PADDING
        attributes = torch.zeros(max_texts, len(self.attribute_terms))
        for row, text in enumerate(texts):
            laterality, region = self.location_codes(text.location)
            category = -1 if text.category is None else self.category_code(text.category)
            codes[row] = torch.tensor(
                [int(text.kind), category, int(text.name_kept), laterality, region, self.severity_code(text.severity)]
            )
            for term in text.attribute_terms:
                attributes[row, self.attribute_index[term]] = 1.0
        return codes, attributes

    def encode_batch(
        self, images_findings: Sequence[Sequence[Finding | Mapping]], texts: Sequence[Sequence[FindingText]],
        max_texts: int, max_findings: int,
    ) -> dict[str, torch.Tensor]:
        """A batch's structured targets as ``PrepareFindingsBatch`` stacks them from the transforms' output.

        For code that builds a batch without the data pipeline (benchmarks, tests):
        ``{"findings_code": [B, max_findings, 5], "text_code": [B, max_texts, 6], "text_attributes": [B, max_texts, V]}``.
        """
        codes = [self.encode_texts(row, max_texts) for row in texts]
        return {
            "findings_code": torch.stack([self.encode_findings(f, max_findings) for f in images_findings]),
            "text_code": torch.stack([code for code, _ in codes]),
            "text_attributes": torch.stack([attributes for _, attributes in codes]),
        }


class SemanticSimilarityMatrix:
    """Soft targets ``[B, N]`` and pair weights ``[B, N]`` for B images and the N texts of a batch.

    Args:
        vocabulary: the codes' vocabulary (its category-attribute table grades attribute-only texts).
        location_weight: how much a disagreeing location lowers a target (0: locations ignored).
        severity_weight: how much the largest severity gap lowers a target (graded by rank distance).
        uncertain_weight: the target of a certain text against a hedged finding (and vice versa).
        unmentioned: ``"absent"`` or ``"unknown"``: what an image's silence about a category means
            for negative texts (see the module docstring).
        embedding_blend: share of the sentence-embedding similarity in the targets of positive
            texts (0, the default: structured targets only). For a positive text ``j`` the target
            becomes ``(1 - blend) * structured + blend * semantic`` with ``semantic[i, j]`` the
            largest ``max(cos(E_k, E_j), 0)`` over the positive texts ``k`` of image ``i`` (the
            released code's max-pooled MPNet cosine, without its same-category gate, so related
            findings such as a nodule and a mass share some credit). It stays 0 where image ``i``
            denies text ``j``'s category; negative and no-finding texts keep their structured
            targets, since polarity is structural and embeddings of "X" and "no X" are close.

    ``__call__(findings, texts, text_attributes, text_embeddings=None)`` takes ``findings``
    ``[B, F, 5]``, ``texts`` ``[B, T, 6]`` (or ``[N, 6]``) and ``text_attributes`` ``[B, T, V]`` (or
    ``[N, V]``) as encoded by :class:`FindingsVocabulary`, and with a blend the texts' normalised
    embeddings ``[B, T, E]`` (``bundle.transforms.EmbedTextsd``; zero rows for padding). It returns
    ``(targets, weights)``, both ``[B, N]`` with ``N = B*T``; padding texts get weight 0.
    """

    def __init__(
        self,
        vocabulary: FindingsVocabulary,
        location_weight: float = 0.3,
        severity_weight: float = 0.2,
        uncertain_weight: float = 0.5,
        unmentioned: str = "unknown",
        embedding_blend: float = 0.0,
    ) -> None:
        for name, value in (("location_weight", location_weight), ("severity_weight", severity_weight),
                            ("uncertain_weight", uncertain_weight), ("embedding_blend", embedding_blend)):  # fmt: skip
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if unmentioned not in UNMENTIONED_POLICIES:
            raise ValueError(f"unmentioned must be one of {UNMENTIONED_POLICIES}, got {unmentioned!r}")
        self.vocabulary = vocabulary
        self.location_weight = float(location_weight)
        self.severity_weight = float(severity_weight)
        self.uncertain_weight = float(uncertain_weight)
        self.unmentioned = unmentioned
        self.embedding_blend = float(embedding_blend)
        self.max_severity_gap = max(len(vocabulary.severities) - 1, 1)

    def __call__(
        self,
        findings: torch.Tensor,
        texts: torch.Tensor,
        text_attributes: torch.Tensor,
        text_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        texts = texts.reshape(-1, texts.shape[-1])
        text_attributes = text_attributes.reshape(-1, text_attributes.shape[-1]).float()
        if findings.ndim != 3 or findings.shape[-1] != len(FINDING_COLUMNS):
            raise ValueError(f"findings must be [B, F, {len(FINDING_COLUMNS)}] codes, got {tuple(findings.shape)}")
        if texts.shape[-1] != len(TEXT_COLUMNS) or text_attributes.shape[0] != texts.shape[0]:
            raise ValueError(f"texts must be [N, {len(TEXT_COLUMNS)}] codes with one attribute row each")
        f_cat, f_presence = findings[..., 0, None], findings[..., 4, None]  # [B, F, 1]
        t_kind, t_cat = texts[:, 0], texts[:, 1]  # [N]

        seen = (f_presence == TextKind.PRESENT) | (f_presence == TextKind.UNCERTAIN)  # [B, F, 1]
        same_category = f_cat == t_cat  # [B, F, N]
        positive = self._positive_targets(findings, texts, text_attributes, seen, same_category)
        denies = ((f_presence == TextKind.ABSENT) & same_category).any(dim=1)  # [B, N]
        positive = positive.masked_fill(denies, 0.0)

        has_present = (same_category & (f_presence == TextKind.PRESENT)).any(dim=1)
        has_hedged = (same_category & (f_presence == TextKind.UNCERTAIN)).any(dim=1)
        negative = torch.where(has_present, 0.0, torch.where(has_hedged, 1.0 - self.uncertain_weight, 1.0))
        mentioned = has_present | has_hedged | denies
        no_finding = (~seen.any(dim=1)).float().expand_as(positive)  # [B, N]

        kind = t_kind.unsqueeze(0).expand_as(positive)
        is_positive = (kind == TextKind.PRESENT) | (kind == TextKind.UNCERTAIN)
        if self.embedding_blend > 0:
            semantic = self._semantic_targets(text_embeddings, t_kind, findings.shape[0]).masked_fill(denies, 0.0)
            positive = (1.0 - self.embedding_blend) * positive + self.embedding_blend * semantic
        targets = torch.where(is_positive, positive, torch.zeros_like(positive))
        targets = torch.where(kind == TextKind.ABSENT, negative, targets)
        targets = torch.where(kind == TextKind.NO_FINDING, no_finding, targets)
        weights = (kind != TextKind.PADDING).float()
        if self.unmentioned == "unknown":
            weights = weights.masked_fill((kind == TextKind.ABSENT) & ~mentioned, 0.0)
        return targets, weights

    def _semantic_targets(
        self, text_embeddings: torch.Tensor | None, t_kind: torch.Tensor, num_images: int
    ) -> torch.Tensor:
        """``[B, N]``: the largest ``max(cos(E_k, E_j), 0)`` over the positive texts ``k`` of image ``i``."""
        if text_embeddings is None:
            raise ValueError(
                "embedding_blend > 0 needs the batch's 'text_embeddings': add EmbedTextsd to the training "
                "transforms and the key to the batch and loss targets, see configs/sentence_ssm.json"
            )
        embeddings = text_embeddings.reshape(-1, text_embeddings.shape[-1]).float()  # [N, E]
        if embeddings.shape[0] != t_kind.shape[0]:
            raise ValueError(f"got {embeddings.shape[0]} text embeddings for {t_kind.shape[0]} texts")
        cosine = (embeddings @ embeddings.t()).clamp(min=0.0)  # [N, N]; padding rows are zero
        # image i's texts are its T slots, so group the rows per image and keep its positive ones
        is_positive = ((t_kind == TextKind.PRESENT) | (t_kind == TextKind.UNCERTAIN)).float()
        per_image = cosine.reshape(num_images, -1, cosine.shape[1]) * is_positive.reshape(num_images, -1, 1)
        return per_image.amax(dim=1)  # [B, T, N] -> [B, N]

    def _positive_targets(
        self,
        findings: torch.Tensor,
        texts: torch.Tensor,
        text_attributes: torch.Tensor,
        seen: torch.Tensor,
        same_category: torch.Tensor,
    ) -> torch.Tensor:
        f_cat, f_lat, f_reg, f_sev, f_presence = (findings[..., k, None] for k in range(5))  # [B, F, 1]
        t_kind, _, t_name, t_lat, t_reg, t_sev = (texts[:, k] for k in range(6))  # [N]
        # what the text is about: its category when named, else the share of its attribute words the finding has
        table = self.vocabulary.category_attributes.to(text_attributes.device)
        finding_attributes = table[f_cat.squeeze(-1).clamp(min=0)]  # [B, F, V]
        shown = text_attributes.sum(dim=-1).clamp(min=1.0)  # [N]
        attribute_share = torch.einsum("bfv,nv->bfn", finding_attributes, text_attributes) / shown
        content = torch.where(t_name.bool(), same_category.float(), attribute_share)

        lat_sim = torch.where(f_lat == t_lat, 1.0, 0.0)
        bilateral = self.vocabulary.lateralities.index("bilateral") if "bilateral" in self.vocabulary.lateralities else -2
        lat_sim = torch.where((f_lat != t_lat) & ((f_lat == bilateral) | (t_lat == bilateral)), 0.5, lat_sim)
        lat_known = (f_lat >= 0) & (t_lat >= 0)
        reg_known = (f_reg >= 0) & (t_reg >= 0)
        reg_sim = (f_reg == t_reg).float()
        known = lat_known.float() + reg_known.float()
        location_agreement = (lat_sim * lat_known + reg_sim * reg_known) / known.clamp(min=1.0)
        location = torch.where(known > 0, 1.0 - self.location_weight * (1.0 - location_agreement), 1.0)

        sev_known = (f_sev >= 0) & (t_sev >= 0)
        gap = (f_sev - t_sev).abs().float() / self.max_severity_gap
        severity = torch.where(sev_known, 1.0 - self.severity_weight * gap, 1.0)

        t_hedged = t_kind == TextKind.UNCERTAIN
        f_hedged = f_presence == TextKind.UNCERTAIN
        certainty = torch.where(f_hedged == t_hedged, 1.0, self.uncertain_weight)
        score = content * location * severity * certainty * seen
        return score.amax(dim=1)  # [B, N]


class OwnTextTargets:
    """The no-SSM ablation: text ``j`` matches its own image only (CLIP's one-to-one targets).

    Same call as :class:`SemanticSimilarityMatrix` (text embeddings, when given, are not used);
    padding texts get weight 0. A finding shared by two images of the batch is then a false
    negative for the other image.
    """

    def __call__(
        self,
        findings: torch.Tensor,
        texts: torch.Tensor,
        text_attributes: torch.Tensor,
        text_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num_images, texts_per_image = texts.shape[0], texts.shape[1]
        owners = torch.arange(num_images * texts_per_image, device=texts.device) // texts_per_image
        targets = (owners.unsqueeze(0) == torch.arange(num_images, device=texts.device).unsqueeze(1)).float()
        filled = (texts[..., 0] != TextKind.PADDING).reshape(1, -1).float()
        return targets, filled.expand_as(targets).clone()
