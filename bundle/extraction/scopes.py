"""Negation, uncertainty and context scopes (NegEx / NegBio / ConText-style assertion of each mention).

Trigger lists follow NegEx (Chapman et al. 2001, pre/post negation, pseudo-negation and
termination terms), NegBio's uncertainty patterns (Peng et al. 2018) and ConText's historical
and hypothetical contexts (Harkema et al. 2009), written for chest radiograph language. Matching
uses the same token n-gram index as the categories, so a longer phrase always wins over the
words inside it ("cannot be excluded" is uncertainty, not the negation "not"; "no change in" is a
pseudo-negation, not "no"; "partial resolution" is not "resolution"). Hand-written because
negspaCy / NegBio / medspaCy need spaCy or a dependency parser, which are not dependencies of
this bundle.

Scopes:
- a *pre* trigger covers the mentions after it in the same clause, stopping at a termination
  term, a clause-closing verb ("... is seen"), ``;``/``:``/parentheses, the next trigger, or a gap
  of more than ``MAX_LIST_GAP`` tokens between consecutive mentions (so "no pneumothorax,
  effusion, or focal airspace consolidation" negates all three);
- a *post* trigger covers the mentions ending at most ``MAX_POST_GAP`` tokens before it with no
  termination in between ("pneumonia cannot be excluded"); a normality predicate ("is normal",
  "within normal limits") only within its clause and conjunct, so "heart size is mildly enlarged,
  pulmonary vascularity within normal limits" and "mild atelectasis and heart size is normal" keep
  their findings;
- a *resolution* predicate ("resolved", "cleared", "no longer seen") reaches ``MAX_RESOLVED_GAP``
  tokens back, across a relative pronoun ("the effusion seen on the prior study, which has since
  resolved"), and covers what follows when it opens its clause ("resolved right pneumothorax");
  partial resolution ("nearly resolved", "partial resolution of", "to document resolution of") is
  a pseudo-trigger: the finding is still there;
- *both* triggers ("versus") make the mentions on either side uncertain;
- a hedge followed by a causal or complement link ("may be *secondary to*", "suggests *that*")
  also hedges what comes after the link;
- a trigger inside a gapped mention ("heart is not enlarged") applies to that mention.

Context (not negation) decides whether a mention is an observation of *this* radiograph at all:
- *historical*: "history of pneumonia" names the patient's past, not the image ("consistent
  with history of ..." is a pseudo-trigger: the image supports it);
- *other exam*: "atelectasis ... on the prior CT", "pneumothorax on the previous study" was seen
  on another exam; a comparison word near the mention ("stable", "again", "larger than") makes it
  a current observation too, and "as seen on" / "better seen on" are pseudo-triggers, as is "not
  seen on the prior study" (a new finding);
- *hypothetical*: requests ("correlate clinically for pneumonia", "evaluate for", "to exclude")
  are uncertainty triggers: they raise a finding without asserting it.
Such mentions get no presence (``None``): the extractor drops them.

A *mimic* (nipple shadow, overlapping bone or soft tissue, superimposed structures, skin fold,
artifact) explains the nearest mention before it in the clause, with the mentions of the same noun
phrase, as something that is not a finding: "nodular opacity at the right base represents a nipple
shadow" is an absent nodule and opacity. A hedged explanation ("likely a nipple shadow") leaves the
mention uncertain, a denied one ("not a nipple shadow") or an occluding one ("obscured by
overlapping ribs") leaves it as it was, and a mention right before the mimic is its source
("pacemaker artifact"), not what it explains.

Precedence: historical over everything; another exam over uncertainty and presence, not over a
negation, which says what this exam shows ("the nodule seen on CT is not visible" is absent);
uncertainty over negation; negation over presence.

Every step is linear in the sentence length (sorted positions and bisection, bounded windows),
so a report without sentence breaks costs the same per word as a short one.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from typing import Sequence

from bundle.findings import Presence
from bundle.knowledge.phrases import CLAUSE_PUNCTUATION, GAP_STOPS, PhraseIndex, PhraseMatch


class Trigger(enum.Enum):
    NEGATION_PRE = "negation_pre"
    NEGATION_POST = "negation_post"
    RESOLVED = "resolved"
    NORMAL_POST = "normal_post"
    UNCERTAIN_PRE = "uncertain_pre"
    UNCERTAIN_POST = "uncertain_post"
    UNCERTAIN_BOTH = "uncertain_both"
    HISTORICAL_PRE = "historical_pre"
    OTHER_EXAM_POST = "other_exam_post"
    MIMIC_POST = "mimic_post"
    PSEUDO = "pseudo"
    TERMINATION = "termination"


NEGATION_PRE = (
    "no", "not", "without", "free of", "clear of", "negative for", "no evidence of", "no evidence for",
    "no evidence to suggest", "no radiographic evidence of", "no sign of", "no signs of", "no findings of",
    "no findings to suggest", "absence of", "absent", "never", "neither", "nor", "resolution of",
    "interval resolution of", "no definite", "no definitive", "no convincing", "no suspicious",
    "no other", "no new", "no acute", "no focal", "no visible", "no significant", "no obvious", "no large",
    "no residual", "removal of", "rather than", "unlikely to represent", "unlikely to be", "ruled out for",
    "no longer", "no appreciable", "no overt", "no frank", "no gross", "negative", "clearing of",
    "interval clearing of", "mimicking", "mimics", "mimic", "simulating", "simulates", "simulate",
)  # fmt: skip
NEGATION_POST = (
    "is absent", "are absent", "not seen", "not identified", "not present", "not visualized", "not appreciated",
    "not demonstrated", "not evident", "not detected", "not noted", "ruled out", "is unlikely", "are unlikely",
    "unlikely", "is not seen", "are not seen", "is not identified", "are not identified", "not visible",
    "is not visible", "are not visible",
)  # fmt: skip
# Resolution predicates: post negations that reach further back, across a relative pronoun ("effusion
# seen on the prior study, which has since resolved"), and cover what follows when they open their
# clause with nothing before it to cover ("resolved right pneumothorax", "no longer seen is the pneumothorax").
RESOLVED = (
    "resolved", "has resolved", "have resolved", "cleared", "has cleared", "have cleared", "removed",
    "has been removed", "have been removed", "no longer seen", "no longer present", "no longer visualized",
    "no longer evident", "no longer identified", "no longer visible", "no longer demonstrated",
)  # fmt: skip
# Normality predicates: post negations that stay inside their clause and conjunct (NORMAL_SUBJECT_STOPS).
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
    # requests name what to look for, they do not assert it
    "correlate for", "correlate clinically for", "clinically correlate for", "clinical correlation for",
    "correlation for", "assess for", "to assess for", "evaluation for", "exclude", "to exclude",
)  # fmt: skip
UNCERTAIN_POST = (
    "cannot be excluded", "can not be excluded", "not excluded", "is not excluded", "are not excluded",
    "not entirely excluded", "cannot be ruled out", "can not be ruled out", "not ruled out", "could not be excluded",
    "is possible", "are possible", "is likely", "are likely", "is suspected", "are suspected", "is questioned",
    "not entirely excluded", "is not entirely excluded", "is difficult to exclude", "difficult to exclude",
    "can t be excluded", "is suspicious", "is a consideration", "considered", "may not be", "may be",
)  # fmt: skip
UNCERTAIN_BOTH = ("versus", "vs", "or possibly", "and or")
HISTORICAL_PRE = ("history of", "hx of", "h/o", "past history of", "prior history of", "remote history of")
# "on [the recent / outside] CT", "on the prior study": what another exam showed.
OTHER_EXAM_POST = tuple(
    f"{preposition} ... {exam}"
    for preposition in ("on", "by", "at")
    for exam in ("ct", "cts", "cta", "cat scan", "mri", "ultrasound", "sonography", "pet", "fluoroscopy", "prior",
                 "previous", "comparison", "outside")
)  # fmt: skip
MIMIC_POST = (
    "nipple", "nipples", "nipple shadow", "nipple shadows", "overlapping bone", "overlapping bones",
    "overlapping bony structures", "overlapping osseous structures", "overlapping rib", "overlapping ribs",
    "overlapping structures", "overlapping shadows", "overlapping soft tissue", "overlapping soft tissues",
    "overlapping vessels", "overlapping vascular structures", "overlap of", "bony overlap", "osseous overlap",
    "rib overlap", "overlying bone", "overlying ribs", "overlying soft tissue", "overlying soft tissues",
    "overlying breast tissue", "overlapping breast tissue", "breast shadow", "breast shadows", "superimposition",
    "superimposed structures", "summation", "skin fold", "skin folds", "skinfold", "skinfolds", "artifact",
    "artifacts", "artefact", "artefacts", "artifactual", "vessel on end", "vessels on end",
    "end on vessel", "end on vessels",
)  # fmt: skip
PSEUDO = (
    "no increase", "no change", "no significant change", "no interval change", "no significant interval change",
    "not only", "no further", "without change", "without interval change", "not changed", "no decrease",
    "no worsening", "no definite change", "not significantly changed", "gram negative", "not necessarily",
    "no evidence of change", "no substantial change", "no appreciable change", "not significantly changed",
    "without significant change", "no interval", "not appreciably changed", "no overall change",
    "no substantial interval change",
    # the finding is still there, or is expected to resolve
    "partial resolution", "partially resolved", "near complete resolution", "nearly complete resolution",
    "nearly resolved", "almost resolved", "incomplete resolution", "incompletely resolved", "not resolved",
    "not completely resolved", "not fully resolved", "not entirely resolved", "has not resolved",
    "have not resolved", "partial clearing", "document resolution", "ensure resolution", "confirm resolution",
    "to resolution", "until resolution",
    # indeterminate age, not presence
    "age indeterminate", "indeterminate age",
    # the image supports the history; seen here and on another exam; a marker, not a shadow
    "consistent with history of", "consistent with a history of", "consistent with the history of",
    "compatible with history of", "in keeping with history of", "as seen on", "as noted on", "as described on",
    "as demonstrated on", "as shown on", "also seen on", "also noted on", "also visible on", "better seen on",
    "better visualized on", "better demonstrated on", "better evaluated on", "better characterized on",
    "nipple marker", "nipple markers",
    # a new finding: the negation is about the prior exam
    "not seen on ... prior", "not present on ... prior", "not visualized on ... prior", "not evident on ... prior",
    "not identified on ... prior", "not seen on ... previous", "not present on ... previous", "not previously seen",
    "not previously present", "not previously visualized", "not previously identified",
)  # fmt: skip
TERMINATION = (
    "but", "however", "although", "though", "except", "aside from", "apart from", "other than", "which",
    "whereas", "yet", "nevertheless", "otherwise", "still", "secondary to", "due to", "cause of", "source of",
    "etiology of", "reason for", "and the", "and there", "and a", "and an", "there is", "there are", "there has",
    "there have", "with", "and is", "and are", "and has", "which is", "that", ";", ":", "(", ")",
)  # fmt: skip
# Terminations right after a hedge that continue it: "may be *secondary to* X", "suggests *that* X".
HEDGE_LINKS = frozenset({("due", "to"), ("secondary", "to"), ("that",)})
MAX_HEDGE_LINK_GAP = 1  # tokens between a hedge and its link
# Relative pronouns: a resolution predicate reaches across them ("effusion, which has resolved").
RELATIVE_PRONOUNS = frozenset({("which",), ("that",), ("which", "is")})
# Terminations an explanation reaches across ("opacity *which* represents overlapping bone");
# the others ("but", ";", "there is") start a new statement.
EXPLANATION_LINKS = frozenset(
    {("which",), ("which", "is"), ("that",), ("due", "to"), ("secondary", "to"), ("and", "is"), ("and", "are"),
     ("(",), (")",)}
)  # fmt: skip
# A mimic after one of these hides the finding, it does not explain it: "opacity partly obscured by overlapping ribs".
OCCLUSION_WORDS = frozenset(
    {"obscured", "obscuring", "obscures", "obscure", "limited", "limiting", "limits", "limit", "hidden", "despite"}
)
# A normality predicate stays within its clause and its conjunct.
NORMAL_SUBJECT_STOPS = CLAUSE_PUNCTUATION | {"and", "but", "while", "whereas"}
# "No effusion is seen" closes the clause: later mentions are outside the "no".
CLAUSE_CLOSERS = frozenset(
    {"seen", "identified", "noted", "present", "demonstrated", "visualized", "appreciated", "evident", "detected",
     "observed", "shown", "visible", "suspected", "excluded", "enlarged", "clear", "normal", "unremarkable"}
)  # fmt: skip
AUXILIARIES = frozenset({"is", "are", "was", "were", "be", "been", "being", "appear", "appears", "seen", "now", "remain", "remains"})
# A finding compared with another exam ("stable ... on the prior CT", "again seen", "larger than on the
# prior study") is seen on this image too.
COMPARISON_WORDS = frozenset(
    {"stable", "unchanged", "again", "persistent", "persists", "persisting", "redemonstrated", "redemonstration",
     "similar", "than", "compared", "increased", "decreased", "improved", "worsened", "larger", "smaller", "new",
     "still", "since"}
)  # fmt: skip
MAX_LIST_GAP = 6  # tokens between two mentions still read as one list under the same trigger
MAX_PRE_GAP = 8  # tokens from a pre trigger to the first mention it covers
MAX_POST_GAP = 6  # tokens from a mention to a post trigger that covers it
MAX_RESOLVED_GAP = 10  # tokens from a mention to a resolution predicate that covers it
MAX_EXPLANATION_GAP = 10  # tokens from a mention to the mimic that explains it
MAX_COMPARISON_LOOKBACK = 6  # tokens before a mention searched for a comparison word
MAX_MIMIC_HEDGE_GAP = 4  # tokens from a hedge, negation or occlusion word to the mimic it qualifies


def _build_index() -> PhraseIndex[Trigger]:
    entries: dict[str, Trigger] = {}
    for terms, kind in (
        (NEGATION_PRE, Trigger.NEGATION_PRE),
        (UNCERTAIN_PRE, Trigger.UNCERTAIN_PRE),
        (NEGATION_POST, Trigger.NEGATION_POST),
        (RESOLVED, Trigger.RESOLVED),
        (NORMAL_POST, Trigger.NORMAL_POST),
        (UNCERTAIN_POST, Trigger.UNCERTAIN_POST),
        (UNCERTAIN_BOTH, Trigger.UNCERTAIN_BOTH),
        (HISTORICAL_PRE, Trigger.HISTORICAL_PRE),
        (OTHER_EXAM_POST, Trigger.OTHER_EXAM_POST),
        (MIMIC_POST, Trigger.MIMIC_POST),
        (PSEUDO, Trigger.PSEUDO),
        (TERMINATION, Trigger.TERMINATION),
    ):
        for term in terms:
            entries[term] = kind  # a later list wins: "may be" is post, "versus" is both
    return PhraseIndex(entries.items())


TRIGGER_INDEX: PhraseIndex[Trigger] = _build_index()
_NEGATIONS = {Trigger.NEGATION_PRE, Trigger.NEGATION_POST, Trigger.RESOLVED, Trigger.NORMAL_POST, Trigger.MIMIC_POST}
_UNCERTAIN = {Trigger.UNCERTAIN_PRE, Trigger.UNCERTAIN_POST, Trigger.UNCERTAIN_BOTH}
_FORWARD = {Trigger.NEGATION_PRE, Trigger.UNCERTAIN_PRE, Trigger.UNCERTAIN_BOTH, Trigger.HISTORICAL_PRE}
_BACKWARD = {
    Trigger.NEGATION_POST, Trigger.RESOLVED, Trigger.NORMAL_POST, Trigger.UNCERTAIN_POST, Trigger.UNCERTAIN_BOTH,
    Trigger.OTHER_EXAM_POST,
}  # fmt: skip


@dataclass
class _Sentence:
    """One sentence's tokens, mentions and triggers, with the sorted positions the scopes bisect."""

    tokens: Sequence[str]
    mentions: Sequence[PhraseMatch]
    triggers: Sequence[PhraseMatch[Trigger]]

    def __post_init__(self) -> None:
        # Mentions and triggers are leftmost-longest matches: sorted and disjoint, so their starts
        # and ends are both sorted.
        self.mention_starts = [m.start for m in self.mentions]
        self.mention_ends = [m.end for m in self.mentions]
        self.trigger_starts = [t.start for t in self.triggers]
        terminations = [t for t in self.triggers if t.value is Trigger.TERMINATION]
        self.termination_starts = [t.start for t in terminations]
        self.clause_break_starts = [
            t.start for t in terminations if tuple(self.tokens[t.start : t.end]) not in RELATIVE_PRONOUNS
        ]
        self.closers = _clause_closers(self.tokens, self.mentions, self.mention_starts)
        self.hits: list[set[Trigger]] = [set() for _ in self.mentions]

    def mention_containing(self, trigger: PhraseMatch) -> int | None:
        """Index of the mention whose gap holds ``trigger`` ("heart is *not* enlarged"), or None."""
        k = bisect.bisect_right(self.mention_starts, trigger.start) - 1
        if k >= 0 and self.mentions[k].start < trigger.start and trigger.end < self.mentions[k].end:
            return k
        return None

    def termination_between(self, start: int, end: int, relative_pronouns: bool = True) -> bool:
        """Whether a termination starts in ``[start, end)``; with ``relative_pronouns=False``, one other
        than "which" / "that"."""
        starts = self.termination_starts if relative_pronouns else self.clause_break_starts
        i = bisect.bisect_left(starts, start)
        return i < len(starts) and starts[i] < end

    def opens_clause(self, trigger: PhraseMatch) -> bool:
        return trigger.start == 0 or self.tokens[trigger.start - 1] in CLAUSE_PUNCTUATION

    def next_trigger(self, position: int) -> int:
        """Index in ``triggers`` of the first trigger starting at or after ``position``."""
        return bisect.bisect_left(self.trigger_starts, position)


def find_triggers(tokens: Sequence[str], mentions: Sequence[PhraseMatch]) -> list[PhraseMatch[Trigger]]:
    """Triggers in ``tokens`` that do not overlap a mention's own words.

    A trigger strictly inside a gapped mention (between its first and last token) is kept: it
    is what the gap skipped ("heart is *not* enlarged").
    """
    starts = [m.start for m in mentions]
    triggers = []
    for trigger in TRIGGER_INDEX.find_all(tokens):
        k = bisect.bisect_left(starts, trigger.end) - 1  # the last mention starting before the trigger ends
        kept = True
        while k >= 0 and mentions[k].end > trigger.start:
            if not (mentions[k].start < trigger.start and trigger.end < mentions[k].end):
                kept = False
                break
            k -= 1
        if kept:
            triggers.append(trigger)
    return triggers


def assert_mentions(tokens: Sequence[str], mentions: Sequence[PhraseMatch]) -> list[Presence | None]:
    """The presence of each mention (ordered by position) in one sentence's ``tokens``.

    ``None`` marks a mention that is not an observation of this radiograph (a historical one or
    one seen on another exam).
    """
    sentence = _Sentence(tokens, mentions, find_triggers(tokens, mentions))
    for trigger in sentence.triggers:
        k = sentence.mention_containing(trigger)
        if k is not None:
            sentence.hits[k].add(trigger.value)
    for index, trigger in enumerate(sentence.triggers):
        kind = trigger.value
        covered_before = kind in _BACKWARD and _apply_backward(sentence, trigger)
        if kind in _FORWARD or (kind is Trigger.RESOLVED and not covered_before and sentence.opens_clause(trigger)):
            _apply_forward(sentence, trigger)
        if kind in _UNCERTAIN:
            _apply_hedge_link(sentence, index)
        if kind is Trigger.MIMIC_POST:
            _apply_mimic(sentence, index)
    return [_presence(h) for h in sentence.hits]


def _clause_closers(tokens: Sequence[str], mentions: Sequence[PhraseMatch], mention_starts: list[int]) -> list[int]:
    """Positions of verbs that close a clause: a closer word right after a mention or an
    auxiliary ("effusion *seen*", "is *identified*"), not an adjective before a noun ("*visible* pneumothorax")."""
    mention_ends = {m.end for m in mentions}
    closers = []
    for i, tok in enumerate(tokens):
        if tok in CLAUSE_CLOSERS and i > 0 and (i in mention_ends or tokens[i - 1] in AUXILIARIES):
            k = bisect.bisect_right(mention_starts, i) - 1
            if k < 0 or mentions[k].end <= i:  # not a word of a mention
                closers.append(i)
    return closers


def _apply_forward(sentence: _Sentence, trigger: PhraseMatch, kind: Trigger | None = None) -> None:
    """Cover the mentions after a pre trigger (with ``kind``, default its own); a clause closer
    ends the scope only after a covered mention ("no *visualized* pneumothorax" vs "no effusion
    is *seen*, atelectasis")."""
    next_index = sentence.next_trigger(trigger.end)
    stop = sentence.trigger_starts[next_index] if next_index < len(sentence.triggers) else None
    reach = trigger.end + MAX_PRE_GAP
    covered_end = None
    for k in range(bisect.bisect_left(sentence.mention_starts, trigger.end), len(sentence.mentions)):
        mention = sentence.mentions[k]
        if (stop is not None and mention.start >= stop) or mention.start > reach:
            break
        if covered_end is not None:
            c = bisect.bisect_left(sentence.closers, covered_end)
            if c < len(sentence.closers) and sentence.closers[c] < mention.start:
                break
        sentence.hits[k].add(kind or trigger.value)
        reach = mention.end + MAX_LIST_GAP
        covered_end = mention.end


def _apply_backward(sentence: _Sentence, trigger: PhraseMatch) -> bool:
    """Cover the mentions before a post trigger; whether it covered any."""
    tokens, kind = sentence.tokens, trigger.value
    covered = False
    reach = MAX_RESOLVED_GAP if kind is Trigger.RESOLVED else MAX_POST_GAP
    for k in range(bisect.bisect_right(sentence.mention_ends, trigger.start) - 1, -1, -1):
        mention = sentence.mentions[k]
        if trigger.start - mention.end > reach:
            break
        if sentence.termination_between(mention.end, trigger.start, relative_pronouns=kind is not Trigger.RESOLVED):
            break
        if kind is Trigger.NORMAL_POST and not NORMAL_SUBJECT_STOPS.isdisjoint(tokens[mention.end : trigger.start]):
            break  # "atelectasis, heart size is normal" / "atelectasis and heart size is normal": another subject
        if kind is Trigger.OTHER_EXAM_POST and COMPARISON_WORDS.intersection(
            tokens[max(mention.start - MAX_COMPARISON_LOOKBACK, 0) : trigger.start]
        ):
            continue
        sentence.hits[k].add(kind)
        covered = True
        if kind is Trigger.UNCERTAIN_BOTH:
            break  # "atelectasis versus pneumonia": only the neighbour on each side
    return covered


def _apply_hedge_link(sentence: _Sentence, index: int) -> None:
    """A hedge right before "due to" / "secondary to" / "that" also hedges what follows the link."""
    hedge = sentence.triggers[index]
    if index + 1 == len(sentence.triggers):
        return
    link = sentence.triggers[index + 1]
    words = tuple(sentence.tokens[link.start : link.end])
    if link.value is Trigger.TERMINATION and words in HEDGE_LINKS and link.start - hedge.end <= MAX_HEDGE_LINK_GAP:
        _apply_forward(sentence, link, Trigger.UNCERTAIN_PRE)


def _apply_mimic(sentence: _Sentence, index: int) -> None:
    """A mimic explains the nearest mention before it as no finding (see the module docstring)."""
    mimic = sentence.triggers[index]
    k = bisect.bisect_right(sentence.mention_ends, mimic.start) - 1
    if k < 0:
        return
    mention = sentence.mentions[k]
    gap = mimic.start - mention.end
    if gap == 0 or gap > MAX_EXPLANATION_GAP:
        return  # "pacemaker artifact" names the artifact's source
    if OCCLUSION_WORDS.intersection(sentence.tokens[max(mimic.start - MAX_MIMIC_HEDGE_GAP, mention.end) : mimic.start]):
        return
    kind = Trigger.MIMIC_POST
    for j in range(index - 1, -1, -1):
        trigger = sentence.triggers[j]
        if trigger.end <= mention.end:
            break
        words = tuple(sentence.tokens[trigger.start : trigger.end])
        if trigger.value is Trigger.TERMINATION and words not in EXPLANATION_LINKS:
            return  # "nodule; nipple shadows": a new statement
        if mimic.start - trigger.end > MAX_MIMIC_HEDGE_GAP:
            continue
        if trigger.value in (Trigger.NEGATION_PRE, Trigger.NEGATION_POST):
            return  # "not a nipple shadow"
        if trigger.value in _UNCERTAIN:
            kind = Trigger.UNCERTAIN_PRE  # "likely a nipple shadow"
    sentence.hits[k].add(kind)
    # The mentions modifying the explained one go with it: "*nodular* right lower lobe opacity".
    while k > 0 and _same_phrase(sentence, sentence.mentions[k - 1], sentence.mentions[k]):
        k -= 1
        sentence.hits[k].add(kind)


def _same_phrase(sentence: _Sentence, left: PhraseMatch, right: PhraseMatch) -> bool:
    """Whether two mentions belong to one noun phrase: close, with no coordination, punctuation or trigger between."""
    between = sentence.tokens[left.end : right.start]
    next_index = sentence.next_trigger(left.end)
    no_trigger = next_index == len(sentence.triggers) or sentence.trigger_starts[next_index] >= right.start
    return len(between) <= MAX_LIST_GAP and GAP_STOPS.isdisjoint(between) and no_trigger


def _presence(kinds: set[Trigger]) -> Presence | None:
    if Trigger.HISTORICAL_PRE in kinds:
        return None
    if Trigger.OTHER_EXAM_POST in kinds and not kinds & _NEGATIONS:
        return None  # "nodule seen on CT is not visible": a negation says what this exam shows
    if kinds & _UNCERTAIN:
        return Presence.UNCERTAIN
    if kinds & _NEGATIONS:
        return Presence.ABSENT
    return Presence.PRESENT
