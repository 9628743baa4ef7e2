"""Report sections and sentences.

Radiology reports put the observations in FINDINGS and the conclusion in IMPRESSION (MIMIC-CXR
also uses CONCLUSION); INDICATION, HISTORY, COMPARISON and TECHNIQUE describe the request, and
a finding named there ("evaluate for pneumonia") is not an observation. Hand-written because
no installed library splits radiology sections, and a general sentence splitter (nltk, spaCy)
is not a dependency and breaks on "x-XXXX.", "1." list markers and missing spaces
("apex.There"), which the rules here handle.
"""

from __future__ import annotations

import re

OBSERVATION_SECTIONS = ("findings", "impression", "conclusion", "conclusions", "summary", "opinion")
REQUEST_SECTIONS = (
    "indication", "indications", "history", "clinical history", "reason for exam", "reason for examination",
    "comparison", "comparisons", "technique", "examination", "exam", "procedure", "clinical information",
    "notification", "recommendation", "recommendations", "wet read", "addendum", "final report", "type of examination",
)  # fmt: skip
_HEADER = re.compile(
    r"(?im)^[ \t]*(" + "|".join(re.escape(h) for h in sorted(OBSERVATION_SECTIONS + REQUEST_SECTIONS, key=len, reverse=True)) + r")[ \t]*:"
)
_SENTENCE_END = re.compile(
    r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])"  # ". Next"
    r"|(?<=[a-z]{2}\.)(?=[A-Z][a-z])"  # "apex.There" (missing space after a word)
    r"|\n\s*\n"  # blank line
    r"|\n(?=\s*(?:\d+[.)]|[-*•])\s)"  # a new numbered or bulleted item
)
_HAS_WORD = re.compile(r"[A-Za-z]{2}")


def split_sections(text: str) -> dict[str, str]:
    """Map lower-case section names to their text; text before any header goes under ``""``.

    Headers are recognised at the start of a line followed by a colon (``FINDINGS:``); a
    section that occurs twice is concatenated.
    """
    sections: dict[str, str] = {}
    starts = list(_HEADER.finditer(text))
    bounds = [(m.group(1).lower(), m.end()) for m in starts]
    preamble_end = starts[0].start() if starts else len(text)
    if text[:preamble_end].strip():
        sections[""] = text[:preamble_end].strip()
    for k, (name, begin) in enumerate(bounds):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(text)
        body = text[begin:end].strip()
        if body:
            sections[name] = (sections[name] + "\n" + body) if name in sections else body
    return sections


def observation_text(text: str) -> str:
    """The part of a report that states observations.

    FINDINGS + IMPRESSION (+ CONCLUSION...) when any is present; otherwise everything except
    request sections (a report with no headers is returned whole).
    """
    sections = split_sections(text)
    observed = [sections[name] for name in sections if name in OBSERVATION_SECTIONS]
    if observed:
        return "\n\n".join(observed)
    return "\n\n".join(body for name, body in sections.items() if name not in REQUEST_SECTIONS)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (stripped, without fragments that hold no word, such as ``"2."``)."""
    pieces = _SENTENCE_END.split(text)
    return [" ".join(p.split()) for p in pieces if p and _HAS_WORD.search(p)]
