"""Negation and uncertainty scopes (NegEx / NegBio-style assertion of each mention).

Trigger lists follow NegEx (Chapman et al. 2001, pre/post negation, pseudo-negation and
termination terms) and NegBio's uncertainty patterns (Peng et al. 2018), written for chest
radiograph language. Matching uses the same token n-gram index as the categories, so a longer
phrase always wins over the words inside it ("cannot be excluded" is uncertainty, not the
negation "not"; "no change in" is a pseudo-negation, not "no"). Hand-written because negspaCy /
NegBio need spaCy or a dependency parser, which are not dependencies of this bundle.

Scopes:
- a *pre* trigger covers the mentions after it in the same clause, stopping at a termination
  term, a clause-closing verb ("... is seen"), ``;``/``:``/parentheses, the next trigger, or a gap
  of more than ``MAX_LIST_GAP`` tokens between consecutive mentions (so "no pneumothorax,
  effusion, or focal airspace consolidation" negates all three);
- a *post* trigger covers the mentions ending at most ``MAX_POST_GAP`` tokens before it with no
  termination in between ("effusion has resolved", "pneumonia cannot be excluded"); a normality
  predicate ("is normal", "within normal limits") only within its clause, so "heart size is mildly
  enlarged, pulmonary vascularity within normal limits" keeps the enlarged heart;
- *both* triggers ("versus") make the mentions on either side uncertain;
- a trigger inside a gapped mention ("heart is not enlarged") applies to that mention.
Uncertainty wins over negation, negation over presence.
"""

from __future__ import annotations

import enum
from typing import Sequence

from bundle.findings import Presence
from bundle.knowledge.phrases import CLAUSE_PUNCTUATION, PhraseIndex, PhraseMatch


class Trigger(enum.Enum):
    NEGATION_PRE = "negation_pre"
    NEGATION_POST = "negation_post"
    NORMAL_POST = "normal_post"
    UNCERTAIN_PRE = "uncertain_pre"
    UNCERTAIN_POST = "uncertain_post"
    UNCERTAIN_BOTH = "uncertain_both"
    PSEUDO = "pseudo"
    TERMINATION = "termination"


NEGATION_PRE = (
    "no", "not", "without", "free of", "clear of", "negative for", "no evidence of", "no evidence for",
    "no evidence to suggest", "no radiographic evidence of", "no sign of", "no signs of", "no findings of",
    "no findings to suggest", "absence of", "absent", "never", "neither", "nor", "resolution of",
    "interval resolution of", "resolved", "no definite", "no definitive", "no convincing", "no suspicious",
    "no other", "no new", "no acute", "no focal", "no visible", "no significant", "no obvious", "no large",
    "no residual", "removal of", "rather than", "unlikely to represent", "unlikely to be", "ruled out for",
    "no longer", "no appreciable", "no overt", "no frank", "no gross", "negative",
)  # fmt: skip
NEGATION_POST = (
    "resolved", "has resolved", "have resolved", "is absent", "are absent", "not seen", "not identified",
    "not present", "not visualized", "not appreciated", "not demonstrated", "not evident", "not detected",
    "not noted", "no longer seen", "no longer present", "no longer visualized", "no longer evident",
    "has been removed", "have been removed", "removed", "ruled out", "is unlikely", "are unlikely", "unlikely",
    "is not seen", "are not seen", "is not identified", "are not identified",
)  # fmt: skip
# Normality predicates: post negations that stay inside their clause (no comma crossing).
NORMAL_POST = (
    "within normal limits", "within limits of normal", "within the normal limits", "within normal range",
    "is normal", "are normal", "appear normal", "appears normal",
)  # fmt: skip
UNCERTAIN_PRE = (
    "possible", "possibly", "probable", "probably", "likely", "most likely", "more likely", "less likely",
    "may", "may be", "may represent", "might", "might represent", "could", "could be", "could represent",
    "can represent", "suspicious for", "suspicious", "suspect", "suspected", "suggestive of", "suggesting",
    "suggests", "suggest", "concerning for", "concern for", "worrisome for", "questionable", "question of",
    "cannot exclude", "can not exclude", "cannot rule out", "can not rule out", "can t exclude", "can t rule out",
    "cannot be excluded", "differential", "differential diagnosis", "differential includes", "consider",
    "considered", "equivocal", "uncertain", "indeterminate", "presumed", "presumably", "rule out", "to rule out",
    "r o", "evaluate for", "either", "?", "not exclude", "difficult to exclude", "vs", "versus", "or possibly",
    "possibly due to", "likely due to", "probably due to", "may be due to", "could be due to", "possibly related to",
    "likely related to", "possibly representing", "likely representing", "probably representing",
    "early", "developing", "cannot entirely exclude", "atypical", "questionably", "question", "questioned",
)  # fmt: skip
UNCERTAIN_POST = (
    "cannot be excluded", "can not be excluded", "not excluded", "is not excluded", "are not excluded",
    "not entirely excluded", "cannot be ruled out", "can not be ruled out", "not ruled out", "could not be excluded",
    "is possible", "are possible", "is likely", "are likely", "is suspected", "are suspected", "is questioned",
    "not entirely excluded", "is not entirely excluded", "is difficult to exclude", "difficult to exclude",
    "can t be excluded", "is suspicious", "is a consideration", "considered", "may not be", "may be",
)  # fmt: skip
UNCERTAIN_BOTH = ("versus", "vs", "or possibly", "and or")
PSEUDO = (
    "no increase", "no change", "no significant change", "no interval change", "no significant interval change",
    "not only", "no further", "without change", "without interval change", "not changed", "no decrease",
    "no worsening", "no definite change", "not significantly changed", "gram negative", "not necessarily",
    "no evidence of change", "no substantial change", "no appreciable change", "not significantly changed",
    "without significant change", "no interval", "not appreciably changed", "no overall change",
    "no substantial interval change",
)  # fmt: skip
TERMINATION = (
    "but", "however", "although", "though", "except", "aside from", "apart from", "other than", "which",
    "whereas", "yet", "nevertheless", "otherwise", "still", "secondary to", "due to", "cause of", "source of",
    "etiology of", "reason for", "and the", "and there", "and a", "and an", "there is", "there are", "there has",
    "there have", "with", "and is", "and are", "and has", "which is", "that", ";", ":", "(", ")",
)  # fmt: skip
# "no large pleural effusion is seen": the clause ends with its verb, so later mentions are outside.
CLAUSE_CLOSERS = frozenset(
    {"seen", "identified", "noted", "present", "demonstrated", "visualized", "appreciated", "evident", "detected",
     "observed", "shown", "visible", "suspected", "excluded", "enlarged", "clear", "normal", "unremarkable"}
)  # fmt: skip
AUXILIARIES = frozenset({"is", "are", "was", "were", "be", "been", "being", "appear", "appears", "seen", "now", "remain", "remains"})
MAX_LIST_GAP = 6  # tokens between two mentions still read as one list under the same trigger
MAX_PRE_GAP = 8  # tokens from a pre trigger to the first mention it covers
MAX_POST_GAP = 6  # tokens from a mention to a post trigger that covers it


def _build_index() -> PhraseIndex[Trigger]:
    entries: dict[str, Trigger] = {}
    for terms, kind in (
        (NEGATION_PRE, Trigger.NEGATION_PRE),
        (UNCERTAIN_PRE, Trigger.UNCERTAIN_PRE),
        (NEGATION_POST, Trigger.NEGATION_POST),
        (NORMAL_POST, Trigger.NORMAL_POST),
        (UNCERTAIN_POST, Trigger.UNCERTAIN_POST),
        (UNCERTAIN_BOTH, Trigger.UNCERTAIN_BOTH),
        (PSEUDO, Trigger.PSEUDO),
        (TERMINATION, Trigger.TERMINATION),
    ):
        for term in terms:
            entries[term] = kind  # a later list wins: "resolved" is post, "versus" is both
    return PhraseIndex(entries.items())


TRIGGER_INDEX: PhraseIndex[Trigger] = _build_index()
_NEGATIONS = {Trigger.NEGATION_PRE, Trigger.NEGATION_POST, Trigger.NORMAL_POST}
_UNCERTAIN = {Trigger.UNCERTAIN_PRE, Trigger.UNCERTAIN_POST, Trigger.UNCERTAIN_BOTH}


def find_triggers(tokens: Sequence[str], mentions: Sequence[PhraseMatch]) -> list[PhraseMatch[Trigger]]:
    """Triggers in ``tokens`` that do not overlap a mention's own words.

    A trigger strictly inside a gapped mention (between its first and last token) is kept: it
    is what the gap skipped ("heart is *not* enlarged").
    """
    triggers = []
    for trigger in TRIGGER_INDEX.find_all(tokens):
        overlapping = [m for m in mentions if trigger.start < m.end and m.start < trigger.end]
        if all(m.start < trigger.start and trigger.end < m.end for m in overlapping):
            triggers.append(trigger)
    return triggers


def assert_mentions(tokens: Sequence[str], mentions: Sequence[PhraseMatch]) -> list[Presence]:
    """The presence of each mention (ordered by position) in one sentence's ``tokens``."""
    triggers = find_triggers(tokens, mentions)
    hits: list[set[Trigger]] = [set() for _ in mentions]
    for k, mention in enumerate(mentions):
        for trigger in triggers:
            if mention.start < trigger.start and trigger.end < mention.end:
                hits[k].add(trigger.value)
    trigger_starts = [t.start for t in triggers]
    closers = _clause_closers(tokens, mentions)
    for trigger in triggers:
        kind = trigger.value
        if kind in (Trigger.NEGATION_PRE, Trigger.UNCERTAIN_PRE, Trigger.UNCERTAIN_BOTH):
            _apply_forward(trigger, mentions, trigger_starts, closers, hits)
        if kind in (Trigger.NEGATION_POST, Trigger.NORMAL_POST, Trigger.UNCERTAIN_POST, Trigger.UNCERTAIN_BOTH):
            _apply_backward(trigger, mentions, triggers, hits, tokens)
    return [_presence(h) for h in hits]


def _clause_closers(tokens: Sequence[str], mentions: Sequence[PhraseMatch]) -> list[int]:
    """Positions of verbs that close a clause: a closer word right after a mention or an
    auxiliary ("effusion *seen*", "is *identified*"), not an adjective before a noun ("*visible* pneumothorax")."""
    mention_ends = {m.end for m in mentions}
    return [
        i
        for i, tok in enumerate(tokens)
        if tok in CLAUSE_CLOSERS
        and i > 0
        and (i in mention_ends or tokens[i - 1] in AUXILIARIES)
        and not any(m.start <= i < m.end for m in mentions)
    ]


def _apply_forward(
    trigger: PhraseMatch, mentions: Sequence[PhraseMatch], trigger_starts: list[int], closers: list[int], hits: list[set]
) -> None:
    """Cover the mentions after a pre trigger; a clause closer ends the scope only after a
    covered mention ("no *visualized* pneumothorax" vs "no effusion is *seen*, atelectasis")."""
    stop = min((b for b in trigger_starts if b >= trigger.end), default=None)
    reach = trigger.end + MAX_PRE_GAP
    covered_end = None
    for k, mention in enumerate(mentions):
        if mention.start < trigger.end:
            continue
        closed = covered_end is not None and any(covered_end <= c < mention.start for c in closers)
        if (stop is not None and mention.start >= stop) or mention.start > reach or closed:
            break
        hits[k].add(trigger.value)
        reach = mention.end + MAX_LIST_GAP
        covered_end = mention.end


def _apply_backward(
    trigger: PhraseMatch, mentions: Sequence[PhraseMatch], triggers: Sequence[PhraseMatch], hits: list[set], tokens: Sequence[str]
) -> None:
    for k in range(len(mentions) - 1, -1, -1):
        mention = mentions[k]
        if mention.end > trigger.start:
            continue
        if trigger.start - mention.end > MAX_POST_GAP:
            break
        if any(mention.end <= t.start < trigger.start for t in triggers if t.value is Trigger.TERMINATION):
            break
        if trigger.value is Trigger.NORMAL_POST and CLAUSE_PUNCTUATION.intersection(tokens[mention.end : trigger.start]):
            break
        hits[k].add(trigger.value)
        if trigger.value is Trigger.UNCERTAIN_BOTH:
            break  # "atelectasis versus pneumonia": only the neighbour on each side


def _presence(kinds: set[Trigger]) -> Presence:
    if kinds & _UNCERTAIN:
        return Presence.UNCERTAIN
    if kinds & _NEGATIONS:
        return Presence.ABSENT
    return Presence.PRESENT
