"""Text-side transforms: report text to token ids."""

from __future__ import annotations

from typing import Callable, Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ..data.datalist import describe_item


class TokenizeTextd(MapTransform):
    """Tokenise free text (a report, a sentence) into a fixed-length id tensor.

    Args:
        keys: keys holding the text strings.
        tokenizer: called on a list of strings, returns ``[N, L]`` token ids (open_clip tokenizers do).
        output_keys: where to write the ``[L]`` ids (default: overwrite the text key).
    """

    def __init__(
        self,
        keys: KeysCollection,
        tokenizer: Callable[[list[str]], torch.Tensor],
        output_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.tokenizer = tokenizer
        self.output_keys = self.keys if output_keys is None else tuple(
            [output_keys] if isinstance(output_keys, str) else output_keys
        )
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"got {len(self.keys)} keys but {len(self.output_keys)} output_keys")

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key, output_key in self.key_iterator(d, self.output_keys):
            text = d[key]
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f"empty or missing text under '{key}' for {describe_item(d)}: every training item needs "
                    "a non-empty report; drop the item from the datalist or fill in its report."
                )
            d[output_key] = self.tokenizer([text])[0]
        return d
