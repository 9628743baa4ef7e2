"""Backend ``rules``: offline, deterministic report -> findings extraction.

Pipeline per report: observation sections (``sections.observation_text``) -> sentences ->
tokens -> category mentions from the knowledge base (leftmost-longest synonyms, gaps, plurals)
-> presence from negation/uncertainty scopes (``scopes``) -> location and severity from the
words that modify each mention -> findings, de-duplicated per report. Statements of normality
("heart size is normal", "lungs are clear") name no category and so yield nothing; the
de-identification mask ``XXXX`` is an ordinary unknown word.
"""

from __future__ import annotations

from typing import Sequence

from bundle.extraction.backend import ExtractionResult
from bundle.extraction.scopes import assert_mentions
from bundle.extraction.sections import observation_text, split_sentences
from bundle.findings import Finding
from bundle.knowledge.base import KnowledgeBase
from bundle.knowledge.phrases import CLAUSE_PUNCTUATION, PhraseMatch, tokenize

RULES_VERSION = "rules-1"
MAX_PRE_MODIFIER = 6  # words before a mention that can modify it ("small left basilar ...")
MAX_POST_MODIFIER = 8  # words after it ("... in the right upper lobe")
# Modifiers after a mention belong to it only up to a coordination or a new clause.
POST_MODIFIER_STOPS = CLAUSE_PUNCTUATION | {"and", "or", "with", "but", "which", "likely", "possibly", "versus", "vs"}


class RulesExtractor:
    """Extract findings with the knowledge-base lexicons and NegEx-style scopes.

    Args:
        knowledge_base: the vocabulary; its version is part of ``model`` (and so of the cache key).
    """

    backend = "rules"
    prompt_version = RULES_VERSION

    def __init__(self, knowledge_base: KnowledgeBase) -> None:
        self.kb = knowledge_base
        self.model = f"kb-{knowledge_base.version}"

    def extract(self, text: str) -> ExtractionResult:
        """Findings of one report (any section layout)."""
        return ExtractionResult(findings=self.extract_findings(text))

    def extract_findings(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        seen: set[tuple] = set()
        for sentence in split_sentences(observation_text(text)):
            for finding in self.extract_sentence(sentence):
                key = (finding.category, finding.location, finding.severity, finding.presence)
                if key not in seen:
                    seen.add(key)
                    findings.append(finding)
        return findings

    def extract_sentence(self, sentence: str) -> list[Finding]:
        """Findings of one sentence, in reading order (duplicates kept)."""
        tokens = tokenize(sentence)
        mentions = self.kb.category_index.find_all(tokens)
        if not mentions:
            return []
        presences = assert_mentions(tokens, mentions)
        findings = []
        for k, (mention, presence) in enumerate(zip(mentions, presences)):
            pre_start, post_end = self._modifier_window(tokens, mentions, k)
            location = self.kb.location_from_tokens(tokens, pre_start, post_end)
            severity = self._severity(tokens, pre_start, mention, post_end)
            for category in mention.value:
                findings.append(Finding(category, location, severity, presence, sentence))
        return findings

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

    def _severity(self, tokens: Sequence[str], start: int, mention: PhraseMatch, end: int) -> str | None:
        """The closest severity before the mention, else inside its gap, else after it.

        The mention's last word is skipped: in "the heart is large", "large" names the finding.
        """
        before = self.kb.severity_index.find_all(tokens, start, mention.start)
        if before:
            return before[-1].value
        for lo, hi in ((mention.start, mention.end - 1), (mention.end, end)):
            found = self.kb.severity_index.find_all(tokens, lo, hi)
            if found:
                return found[0].value
        return None
