"""Phrase index: leftmost-longest matching of multi-word terms over a token list.

A report sentence is tokenised once (``tokenize``) and every lexicon (categories, locations,
severities, negation triggers) is matched against the same tokens by dictionary look-ups of
token n-grams. That is one pass per sentence with O(1) work per candidate, which is what keeps
the rules backend above thousands of reports per second; a regex alternation over hundreds of
synonyms backtracks at every character instead. No ecosystem library does n-gram lexicon
matching with gaps and clause stops (spaCy's PhraseMatcher would, but it is not a dependency).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Iterable, Sequence, TypeVar

V = TypeVar("V")

# Words, numbers and the punctuation that bounds clauses; hyphens and apostrophes split words
# so that "moderate-sized" == "moderate sized" and "can't" == "can t".
TOKEN_PATTERN = re.compile(r"[a-z0-9]+|[,;:()?/]")
GAP_MARKER = "..."
CLAUSE_PUNCTUATION = frozenset({",", ";", ":", "(", ")", "?", "/"})
# A gap ("heart ... enlarged") never crosses a coordination: "heart size normal and large hernia".
GAP_STOPS = CLAUSE_PUNCTUATION | {"and", "or", "but", "with", "without", "however", "which", "normal"}


def tokenize(text: str) -> list[str]:
    """Lower-case word and clause-punctuation tokens of ``text``."""
    return TOKEN_PATTERN.findall(text.lower())


def plural_forms(word: str) -> list[str]:
    """Regular English plurals of a lexicon word (s, es, y -> ies)."""
    forms = [word + "s", word + "es"]
    if word.endswith("y"):
        forms.append(word[:-1] + "ies")
    return forms


@dataclass(frozen=True)
class PhraseMatch(Generic[V]):
    """A matched term: tokens ``[start, end)`` of the searched list and the term's value."""

    start: int
    end: int
    value: V


class PhraseIndex(Generic[V]):
    """Maps multi-word terms to values and finds them, leftmost-longest, in token lists.

    Args:
        entries: ``(term, value)`` pairs. A term is free text, tokenised with ``tokenize``;
            ``"a ... b"`` matches ``a`` followed by ``b`` within ``max_gap`` tokens of one clause.
        add_plurals: also index the regular plurals of each term's last word (explicit terms win).
        max_gap: the most tokens a gap term may skip.

    Raises:
        ValueError: a term maps to two different values (the message names both).
    """

    def __init__(self, entries: Iterable[tuple[str, V]], add_plurals: bool = False, max_gap: int = 5) -> None:
        self.max_gap = max_gap
        self._exact: dict[tuple[str, ...], V] = {}
        self._gapped: dict[tuple[str, ...], list[tuple[tuple[str, ...], V]]] = {}
        generated: dict[tuple[str, ...], V] = {}
        for term, value in entries:
            if GAP_MARKER in term:
                head, tail = (tuple(tokenize(part)) for part in term.split(GAP_MARKER, 1))
                if not head or not tail:
                    raise ValueError(f"gap term {term!r} needs words on both sides of '...'")
                self._gapped.setdefault(head, []).append((tail, value))
                continue
            key = tuple(tokenize(term))
            if not key:
                raise ValueError(f"term {term!r} has no words")
            self._add(key, value, term)
            if add_plurals:
                for plural in plural_forms(key[-1]):
                    generated.setdefault(key[:-1] + (plural,), value)
        for key, value in generated.items():
            self._exact.setdefault(key, value)
        # Longest term per first word: most tokens start no term and cost one set look-up.
        self._max_len_by_first: dict[str, int] = {}
        for key in list(self._exact) + list(self._gapped):
            self._max_len_by_first[key[0]] = max(self._max_len_by_first.get(key[0], 0), len(key))

    def _add(self, key: tuple[str, ...], value: V, term: str) -> None:
        previous = self._exact.get(key)
        if previous is not None and previous != value:
            raise ValueError(f"term {term!r} is listed for both {previous!r} and {value!r}; keep it under one")
        self._exact[key] = value

    def __contains__(self, term: str) -> bool:
        return tuple(tokenize(term)) in self._exact

    def get(self, term: str) -> V | None:
        """The value of an exact whole term (no gaps), or None."""
        return self._exact.get(tuple(tokenize(term)))

    def match_at(self, tokens: Sequence[str], i: int) -> PhraseMatch[V] | None:
        """The longest term starting at token ``i``, gap terms first (they are the longer reading)."""
        longest = min(self._max_len_by_first.get(tokens[i], 0), len(tokens) - i)
        if self._gapped:
            for n in range(longest, 0, -1):
                for tail, value in self._gapped.get(tuple(tokens[i : i + n]), ()):
                    end = self._find_tail(tokens, i + n, tail)
                    if end is not None:
                        return PhraseMatch(i, end, value)
        for n in range(longest, 0, -1):
            value = self._exact.get(tuple(tokens[i : i + n]))
            if value is not None:
                return PhraseMatch(i, i + n, value)
        return None

    def _find_tail(self, tokens: Sequence[str], start: int, tail: tuple[str, ...]) -> int | None:
        width = len(tail)
        for j in range(start, min(start + self.max_gap + 1, len(tokens) - width + 1)):
            if tuple(tokens[j : j + width]) == tail:
                return j + width
            if tokens[j] in GAP_STOPS:
                return None
        return None

    def find_all(self, tokens: Sequence[str], start: int = 0, end: int | None = None) -> list[PhraseMatch[V]]:
        """Non-overlapping leftmost-longest matches in ``tokens[start:end]``."""
        stop = len(tokens) if end is None else end
        window = tokens[:stop]
        matches: list[PhraseMatch[V]] = []
        i = start
        while i < stop:
            match = self.match_at(window, i)
            if match is None:
                i += 1
            else:
                matches.append(match)
                i = match.end
        return matches
