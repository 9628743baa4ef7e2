"""Backend ``rules``: offline, deterministic report -> findings extraction.

Pipeline per report: observation sections (``sections.observation_text``) -> sentences ->
tokens -> category mentions from the knowledge base (leftmost-longest synonyms, gaps, plurals)
-> presence from negation/uncertainty scopes (``scopes``) -> location and severity from the
words that modify each mention -> findings, de-duplicated per report. Statements of normality
declared in the knowledge base (``normal_statements``: "heart size is normal", "the
cardiomediastinal silhouette is within normal limits") yield *absent* findings of the categories
they rule out, with their sentence as evidence, unless a qualifier makes them equivocal ("heart
size upper limits of normal") or the report asserts the category elsewhere (the positive wins).
Undeclared ones ("lungs are clear") yield nothing. A mention that is not an observation of this
radiograph (historical, seen on another exam: ``scopes``) or that its modifiers place at a site the
category excludes (the knowledge base's ``excluded_sites``: "soft tissue edema" is not pulmonary
edema, "Bochdalek hernia" not a hiatal hernia) yields nothing. The de-identification mask ``XXXX``
is an ordinary unknown word. Every step is linear in the length of a sentence.
"""

from __future__ import annotations

import bisect
from typing import Sequence

from bundle.extraction.backend import ExtractionResult
from bundle.extraction.scopes import assert_mentions
from bundle.extraction.sections import observation_text, split_sentences
from bundle.findings import Finding, Presence
from bundle.knowledge.base import KnowledgeBase, KnowledgeBaseError
from bundle.knowledge.phrases import CLAUSE_PUNCTUATION, PhraseIndex, PhraseMatch, tokenize

RULES_VERSION = "rules-3"
MAX_PRE_MODIFIER = 6  # words before a mention that can modify it ("small left basilar ...")
MAX_POST_MODIFIER = 8  # words after it ("... in the right upper lobe")
# Modifiers after a mention belong to it only up to a coordination or a new clause.
POST_MODIFIER_STOPS = CLAUSE_PUNCTUATION | {"and", "or", "with", "but", "which", "likely", "possibly", "versus", "vs"}
# Words that make a statement of normality equivocal when they occur in it, in the three words
# before it (back to a coordination) or in the rest of its clause: "heart size upper limits of
# normal", "borderline normal heart size", "heart size is normal to mildly enlarged", "heart size
# is probably normal".
NORMAL_QUALIFIERS = frozenset(
    {"upper", "top", "high", "borderline", "limit", "near", "nearly", "mild", "mildly", "slight", "slightly",
     "enlarged", "enlargement", "large", "prominent", "increased", "not", "possibly", "probably", "likely",
     "may", "might", "questionable", "versus", "vs", "difficult", "cannot", "although", "except"}
)  # fmt: skip
MAX_NORMAL_PRE_QUALIFIER = 3  # words before a normal statement that can qualify it


class RulesExtractor:
    """Extract findings with the knowledge-base lexicons and NegEx-style scopes.

    Args:
        knowledge_base: the vocabulary; its version is part of ``model`` (and so of the cache key).
    """

    backend = "rules"
    prompt_version = RULES_VERSION
    decoding = "deterministic"

    def __init__(self, knowledge_base: KnowledgeBase) -> None:
        self.kb = knowledge_base
        self.model = f"kb-{knowledge_base.version}"
        self._excluded_sites, self._site_index = _excluded_sites(knowledge_base)

    def close(self) -> None:
        """Nothing to release (the backend protocol's ``close``)."""

    def extract(self, text: str) -> ExtractionResult:
        """Findings of one report (any section layout)."""
        return ExtractionResult(findings=self.extract_findings(text))

    def extract_findings(self, text: str) -> list[Finding]:
        tagged = [item for sentence in split_sentences(observation_text(text)) for item in self._sentence_findings(sentence)]
        findings: list[Finding] = []
        seen: set[tuple] = set()
        for finding in _drop_contradicted_normals(tagged):
            key = (finding.category, finding.location, finding.severity, finding.presence)
            if key not in seen:
                seen.add(key)
                findings.append(finding)
        return findings

    def extract_sentence(self, sentence: str) -> list[Finding]:
        """Findings of one sentence, in reading order (duplicates kept)."""
        return _drop_contradicted_normals(self._sentence_findings(sentence))

    def _sentence_findings(self, sentence: str) -> list[tuple[Finding, bool]]:
        """``(finding, from a normal statement)`` pairs of one sentence, in reading order."""
        tokens = tokenize(sentence)
        mentions = self.kb.category_index.find_all(tokens)
        found: list[tuple[int, Finding, bool]] = []
        if mentions:
            presences = assert_mentions(tokens, mentions)
            for k, (mention, presence) in enumerate(zip(mentions, presences)):
                if presence is None:
                    continue  # historical, or seen on another exam
                pre_start, post_end = self._modifier_window(tokens, mentions, k)
                # Slices, not bounds: a lexicon search over a bounded slice costs its length, not the sentence's.
                before, after = tokens[pre_start : mention.start], tokens[mention.end : post_end]
                location = self.kb.location_from_tokens(tokens[pre_start:post_end])
                severity = self._severity(before, tokens[mention.start : mention.end], after)
                sites = self._sites(before, after) if any(c in self._excluded_sites for c in mention.value) else set()
                for category in mention.value:
                    if sites.isdisjoint(self._excluded_sites.get(category, ())):
                        found.append((mention.start, Finding(category, location, severity, presence, sentence), False))
        for statement in self._normal_statements(tokens, mentions):
            for category in statement.value:
                found.append((statement.start, Finding(category, None, None, Presence.ABSENT, sentence), True))
        found.sort(key=lambda item: item[0])  # stable: mentions keep their order
        return [(finding, normal) for _, finding, normal in found]

    def _normal_statements(self, tokens: Sequence[str], mentions: Sequence[PhraseMatch]) -> list[PhraseMatch]:
        """The knowledge base's statements of normality in ``tokens`` that stand as written.

        A statement is dropped when it overlaps a category mention ("heart size is enlarged,
        normal ..." names a finding) or when a qualifier (``NORMAL_QUALIFIERS``) occurs inside it,
        in the few words before it or in the rest of its clause.
        """
        if self.kb.normal_statement_words.isdisjoint(tokens):
            return []  # the common case, skipped in one set operation
        mention_starts = [m.start for m in mentions]
        qualifiers = [i for i, token in enumerate(tokens) if token in NORMAL_QUALIFIERS]
        kept = []
        clause_end = 0  # statements come in order, so the clause ends are found in one forward pass
        for statement in self.kb.normal_index.find_all(tokens):
            k = bisect.bisect_left(mention_starts, statement.end) - 1  # the last mention starting inside or before it
            if k >= 0 and mentions[k].end > statement.start:
                continue
            # Window: back over at most MAX_NORMAL_PRE_QUALIFIER words, forward to the end of the
            # clause; a stop word that ends either side is inside ("likely normal", "normal versus").
            start = statement.start
            while start > max(statement.start - MAX_NORMAL_PRE_QUALIFIER, 0):
                start -= 1
                if tokens[start] in POST_MODIFIER_STOPS:
                    break
            clause_end = max(clause_end, statement.end)
            while clause_end < len(tokens) and tokens[clause_end] not in POST_MODIFIER_STOPS:
                clause_end += 1
            q = bisect.bisect_left(qualifiers, start)
            if q == len(qualifiers) or qualifiers[q] > clause_end:
                kept.append(statement)
        return kept

    def _modifier_window(self, tokens: Sequence[str], mentions: Sequence[PhraseMatch], k: int) -> tuple[int, int]:
        """Token bounds ``[start, end)`` of the words that can modify mention ``k``."""
        mention = mentions[k]
        start = max(mention.start - MAX_PRE_MODIFIER, mentions[k - 1].end if k else 0)
        for i in range(mention.start - 1, start - 1, -1):
            if tokens[i] in CLAUSE_PUNCTUATION:
                start = i + 1
                break
        end = min(mention.end + MAX_POST_MODIFIER, mentions[k + 1].start if k + 1 < len(mentions) else len(tokens))
        for i in range(mention.end, end):
            if tokens[i] in POST_MODIFIER_STOPS:
                end = i
                break
        return start, end

    def _severity(self, before: Sequence[str], mention: Sequence[str], after: Sequence[str]) -> str | None:
        """The closest severity before the mention, else inside its gap, else after it.

        The mention's last word is skipped: in "the heart is large", "large" names the finding.
        """
        found = self.kb.severity_index.find_all(before)
        if found:
            return found[-1].value
        for words in (mention[:-1], after):
            found = self.kb.severity_index.find_all(words)
            if found:
                return found[0].value
        return None

    def _sites(self, before: Sequence[str], after: Sequence[str]) -> set[str]:
        """Excluded-site terms among a mention's modifiers: after it, and before it back to a coordination
        ("soft tissue and pulmonary edema" keeps the pulmonary edema)."""
        start = len(before)
        while start > 0 and before[start - 1] not in POST_MODIFIER_STOPS:
            start -= 1
        return {m.value for words in (before[start:], after) for m in self._site_index.find_all(words)}


def _excluded_sites(kb: KnowledgeBase) -> tuple[dict[str, frozenset[str]], PhraseIndex[str]]:
    """Each category's ``excluded_sites`` (knowledge-base extra field) and an index of all of them.

    Raises:
        KnowledgeBaseError: a category's ``excluded_sites`` is not a list of terms.
    """
    excluded: dict[str, frozenset[str]] = {}
    for category in kb.categories.values():
        sites = category.extra.get("excluded_sites", [])
        if not isinstance(sites, list) or not all(isinstance(s, str) and tokenize(s) for s in sites):
            raise KnowledgeBaseError(
                f"{kb.source}: category '{category.id}' excluded_sites must be a list of words naming body sites, "
                f"got {sites!r}"
            )
        if sites:
            excluded[category.id] = frozenset(" ".join(tokenize(s)) for s in sites)
    terms = {site for sites in excluded.values() for site in sites}
    return excluded, PhraseIndex(((t, t) for t in terms), add_plurals=True)


def _drop_contradicted_normals(tagged: Sequence[tuple[Finding, bool]]) -> list[Finding]:
    """The findings, less those read from a normal statement whose category is asserted (present
    or uncertain) elsewhere in the same text: "heart size normal ... cardiomegaly" keeps the
    cardiomegaly."""
    asserted = {finding.category for finding, _ in tagged if finding.presence is not Presence.ABSENT}
    return [finding for finding, normal in tagged if not (normal and finding.category in asserted)]
