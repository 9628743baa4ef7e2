"""Evidence grounding: is a finding's evidence really a quote of the report it was read from?

An LLM can return findings whose evidence is nowhere in the report: a sentence copied from the
prompt's examples, a paraphrase, HTML debris. Such a finding is a silent label error, so every
evidence is looked up in its report first.

Tolerance, stated: both texts are compared as sequences of words (``\\w+``, Unicode NFKC,
case-folded), so case, whitespace and punctuation never matter. Beyond that, one word in
``WORDS_PER_EDIT`` (10) may differ (a word inserted, missing or replaced): none for evidence of
fewer than ten words, one for 10-19 words, and so on. The match is a word-level edit distance
between the evidence and its best-matching stretch of the report (Sellers' algorithm), which costs
(evidence words x report words), a few thousand steps for a sentence in a report.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

WORDS_PER_EDIT = 10
_WORD = re.compile(r"\w+")
_SENTENCE_END = ".!?"


def _words(text: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(text))


def _normal(word: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", word.group()).casefold()


def quoted_span(evidence: str, report: str, words_per_edit: int = WORDS_PER_EDIT) -> str | None:
    """The stretch of ``report`` that ``evidence`` quotes (within the tolerance), or None.

    The span is the report's own text, from the first to the last matched word, with a sentence
    end (``.``, ``!``, ``?``) right after it, so a kept finding's evidence is always verbatim.
    Evidence with no word at all is never found.
    """
    quoted = [_normal(w) for w in _words(evidence)]
    words = _words(report)
    if not quoted or not words:
        return None
    allowed = len(quoted) // words_per_edit
    text = [_normal(w) for w in words]
    if sum((Counter(quoted) & Counter(text)).values()) < len(quoted) - allowed:
        return None  # too few of its words occur in the report at all: the common case, decided at once
    # cost[j] / start[j]: the fewest edits that turn the first i quoted words into report words
    # start[j]..j-1 (a match may start at any report word, hence a zero first row).
    cost, start = [0] * (len(text) + 1), list(range(len(text) + 1))
    for i, word in enumerate(quoted, start=1):
        new_cost, new_start = [i] + [0] * len(text), [0] * (len(text) + 1)
        for j, other in enumerate(text, start=1):
            new_cost[j], new_start[j] = min(
                (cost[j - 1] + (word != other), start[j - 1]),  # match or replace
                (cost[j] + 1, start[j]),  # an evidence word the report lacks
                (new_cost[j - 1] + 1, new_start[j - 1]),  # a report word the evidence lacks
            )
        cost, start = new_cost, new_start
    end = min(range(1, len(text) + 1), key=lambda j: (cost[j], j))
    if cost[end] > allowed or start[end] >= end:
        return None
    first, last = words[start[end]].start(), words[end - 1].end()
    if last < len(report) and report[last] in _SENTENCE_END:
        last += 1
    return report[first:last]
