"""Findings-side transforms: structured findings to label tensors."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


class FindingsToLabelsd(MapTransform):
    """Turn a list of findings into a multi-hot label vector over fixed categories.

    Args:
        keys: key holding the findings (``Finding.to_dict()`` records).
        categories: category ids, one output channel each, in order.
        output_key: where to write the float ``[C]`` label vector.
        uncertain_value: label given to ``uncertain`` findings (1.0 counts a hedged finding as
            positive, the "U-ones" policy; 0.0 counts it as negative).

    A category that is absent or never mentioned gets 0.
    """

    def __init__(
        self,
        keys: KeysCollection,
        categories: Sequence[str],
        output_key: str = "label",
        uncertain_value: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not categories:
            raise ValueError("FindingsToLabelsd needs at least one category")
        self.index = {category: i for i, category in enumerate(categories)}
        self.output_key = output_key
        self.value_of = {"present": 1.0, "uncertain": float(uncertain_value), "absent": 0.0}

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = torch.zeros(len(self.index), dtype=torch.float32)
            for finding in d[key]:
                channel = self.index.get(finding["category"])
                if channel is not None:
                    label[channel] = max(label[channel].item(), self.value_of[finding["presence"]])
            d[self.output_key] = label
        return d
