"""Sentence embeddings of an item's finding texts, for the SSM's optional sentence-similarity blend."""

from __future__ import annotations

from typing import Callable, Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ..data.datalist import describe_item


class EmbedTextsd(MapTransform):
    """Embed the list of strings under a key into ``[pad_to, E]`` rows (zero rows for empty slots).

    It reads the strings that ``ComposeFindingTextsd`` writes, so it must run before
    ``TokenizeTextd`` replaces them with token ids under the same key (``configs/sentence_ssm.json``).

    Args:
        keys: the key holding the item's list of texts.
        embedder: called on a list of strings, returns ``[n, E]`` normalised embeddings
            (``bundle.losses.SentenceEmbedder``).
        output_key: where to write the float ``[pad_to, E]`` tensor.
        pad_to: rows of the output, the text slots per image (``max_texts_per_image``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        embedder: Callable[[list[str]], torch.Tensor],
        pad_to: int,
        output_key: str = "text_embeddings",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"EmbedTextsd writes one output_key, so it takes one key, got {self.keys}")
        if pad_to < 1:
            raise ValueError(f"pad_to must be at least 1, got {pad_to}")
        self.embedder = embedder
        self.output_key = output_key
        self.pad_to = int(pad_to)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            texts = d[key]
            if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
                raise TypeError(
                    f"EmbedTextsd needs a list of strings under '{key}' for {describe_item(d)}: put it after "
                    "ComposeFindingTextsd and before TokenizeTextd"
                )
            if len(texts) > self.pad_to:
                raise ValueError(f"{describe_item(d)} has {len(texts)} texts under '{key}' for pad_to={self.pad_to}")
            embeddings = self.embedder(list(texts)).float()  # [n, E]
            empty = embeddings.new_zeros(self.pad_to - len(texts), embeddings.shape[1])
            d[self.output_key] = torch.cat([embeddings, empty])
        return d
