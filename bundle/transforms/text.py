"""Text-side transforms: report text to token ids."""

from __future__ import annotations

from typing import Callable, Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ..data.datalist import describe_item
from ..extraction.sections import observation_text, split_sections


def paired_output_keys(keys: tuple, output_keys: KeysCollection | None) -> tuple:
    """One output key per input key; None means write back in place."""
    paired = keys if output_keys is None else tuple([output_keys] if isinstance(output_keys, str) else output_keys)
    if len(paired) != len(keys):
        raise ValueError(f"got {len(keys)} keys but {len(paired)} output_keys")
    return paired


class TokenizeTextd(MapTransform):
    """Tokenise free text (a report, a sentence) into a fixed-length id tensor.

    A key may also hold a list of strings (the finding texts of an image): they become
    ``[pad_to, L]`` ids, the rows after the texts all zero (padding), so that items stack.

    Args:
        keys: keys holding the text strings (or lists of strings).
        tokenizer: called on a list of strings, returns ``[N, L]`` token ids (open_clip tokenizers do).
        output_keys: where to write the ``[L]`` (or ``[pad_to, L]``) ids (default: overwrite the text key).
        pad_to: rows of the output for a list of strings (default: as many as strings).
    """

    def __init__(
        self,
        keys: KeysCollection,
        tokenizer: Callable[[list[str]], torch.Tensor],
        output_keys: KeysCollection | None = None,
        pad_to: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.tokenizer = tokenizer
        self.output_keys = paired_output_keys(self.keys, output_keys)
        self.pad_to = pad_to

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key, output_key in self.key_iterator(d, self.output_keys):
            text = d[key]
            texts = text if isinstance(text, (list, tuple)) else [text]
            if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise ValueError(
                    f"empty or missing text under '{key}' for {describe_item(d)}: every training item needs "
                    "a non-empty report; drop the item from the datalist or fill in its report."
                )
            tokens = self.tokenizer(list(texts))
            if not isinstance(text, (list, tuple)):
                d[output_key] = tokens[0]
                continue
            rows = self.pad_to or len(texts)
            if len(texts) > rows:
                raise ValueError(f"{describe_item(d)} has {len(texts)} texts under '{key}' for pad_to={rows} rows")
            d[output_key] = torch.cat([tokens, tokens.new_zeros(rows - len(texts), tokens.shape[1])])
        return d


class ReportSectionsd(MapTransform):
    """Replace a report by the text of some of its sections (``IMPRESSION`` by default).

    A report's impression states the positive findings in a few words, which is what a zero-shot
    prompt looks like; the full report also carries indication, comparison and boilerplate
    negatives. Reports without the requested sections fall back to their FINDINGS+IMPRESSION
    text, then to the whole report, so no item ends up empty.

    Args:
        keys: keys holding report strings.
        sections: section names to keep, in order (lower case, e.g. ``("impression",)``).
        output_keys: where to write the text (default: overwrite).
    """

    def __init__(
        self,
        keys: KeysCollection,
        sections: Sequence[str] = ("impression",),
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.sections = tuple(s.lower() for s in sections)
        self.output_keys = paired_output_keys(self.keys, output_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key, output_key in self.key_iterator(d, self.output_keys):
            report = d[key]
            if not isinstance(report, str) or not report.strip():
                d[output_key] = report  # left as it is, so TokenizeTextd names the item with the empty report
                continue
            found = split_sections(report)
            kept = " ".join(found[s] for s in self.sections if found.get(s))
            d[output_key] = kept or observation_text(report) or report
        return d
