"""Zero-shot classification: score each image against a positive and a negative prompt per category.

Scoring ``"contrast"`` (default) gives ``softmax(scale * [cos(image, positive), cos(image, negative)])[0]``,
the CheXzero form: it compares the two readings a report could give instead of thresholding a
raw cosine, so scores are probabilities comparable across categories. Scoring ``"positive"``
gives ``cos(image, positive)`` alone: for a category never seen in training the negative
prompt ("no <unseen name>") is an untrained word and adds noise, while the positive prompt's
attribute words (IKI) carry the meaning. Scoring ``"softmax"`` is CLIP's zero-shot form over the
whole label set: ``softmax(scale * [cos(image, positive_1..C), cos(image, background)])[c]``, each
category's share of the image among all scored categories' positive prompts and a background text
(IKI's no-finding text). It asks which finding the image shows rather than how much it looks like
one finding: an image with a consolidation scores high on a held-out "opaque, large, round" prompt
too, but the consolidation prompt takes the larger share. A category's score therefore depends on
which categories are scored with it. AUC depends only on the order within a category, so all
three serve it; ``contrast`` and ``softmax`` are probabilities.

With ``patch_temperature`` set, every form compares a text with the image patches it attends to
(``bundle.losses.patch_sentence_similarity``, MLIP's patch-sentence matching) instead of with the
pooled image embedding; the network needs a patch head (``configs/train.json`` declares one).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from monai.inferers import Inferer
from torch import nn

from bundle.knowledge.iki import FindingTextComposer
from bundle.losses.medfilip import patch_sentence_similarity

POSITIVE_TEMPLATE = "{}"
NEGATIVE_TEMPLATE = "no {}"
SCORINGS = ("contrast", "positive", "softmax")


def category_display_name(category: str) -> str:
    return category.replace("_", " ")


class ZeroShotInferer(Inferer):
    """MONAI inferer that turns a dual encoder into a multi-label classifier over named categories.

    Args:
        prompts: one ``(positive, negative)`` text pair per category, in output-channel order.
        tokenizer: called on a list of strings, returns ``[N, L]`` token ids.
        scoring: ``"contrast"``, ``"positive"`` or ``"softmax"`` (see the module docstring).
        background: with ``"softmax"``, the text that competes for images without a finding
            (None: the categories compete only among themselves); unused by the other scorings.
        patch_temperature: None (default): texts are compared with the pooled image embedding.
            A temperature: with the patches each text attends to (the network's ``encode_patches``).

    ``__call__(image, network)`` takes ``image`` ``[B, 1, H, W]`` and a network with
    ``encode_image``/``encode_text`` (see ``ChestXRayCLIP``) and returns probabilities ``[B, C]``.
    """

    def __init__(
        self,
        prompts: Sequence[tuple[str, str]],
        tokenizer: Callable[[list[str]], torch.Tensor],
        scoring: str = "contrast",
        background: str | None = None,
        patch_temperature: float | None = None,
    ) -> None:
        super().__init__()
        if not prompts:
            raise ValueError("ZeroShotInferer needs at least one (positive, negative) prompt pair")
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        self.prompts = [tuple(pair) for pair in prompts]
        self.background = background if scoring == "softmax" else None
        texts = [text for pair in prompts for text in pair] + ([self.background] if self.background else [])
        self.tokens = tokenizer(texts)
        self.num_categories = len(prompts)
        self.scoring = scoring
        self.patch_temperature = None if patch_temperature is None else float(patch_temperature)

    @classmethod
    def from_composer(
        cls,
        categories: Sequence[str],
        composer: FindingTextComposer,
        tokenizer: Callable[[list[str]], torch.Tensor],
        scoring: str = "contrast",
        patch_temperature: float | None = None,
    ) -> "ZeroShotInferer":
        """Prompts composed by IKI exactly as training texts are (``FindingTextComposer.prompts``); with
        ``"softmax"`` scoring the composer's no-finding text is the background."""
        prompts = [composer.prompts(c) for c in categories]
        return cls(prompts, tokenizer, scoring, composer.compose(None).text, patch_temperature)

    @classmethod
    def for_categories(
        cls,
        categories: Sequence[str],
        tokenizer: Callable[[list[str]], torch.Tensor],
        names: Mapping[str, str] | None = None,
    ) -> "ZeroShotInferer":
        """Build the inferer with the default ``"<name>"`` / ``"no <name>"`` prompts.

        ``names`` maps category ids to display names (the knowledge base's); ids it lacks are
        shown with spaces for underscores.
        """
        names = names or {}
        display = [names.get(c, category_display_name(c)) for c in categories]
        return cls([(POSITIVE_TEMPLATE.format(n), NEGATIVE_TEMPLATE.format(n)) for n in display], tokenizer)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        model = getattr(network, "module", network)  # unwrap DistributedDataParallel
        text_features = model.encode_text(self.tokens.to(inputs.device))
        if self.patch_temperature is None:
            similarity = model.encode_image(inputs) @ text_features.T
        else:
            similarity = patch_sentence_similarity(model.encode_patches(inputs), text_features, self.patch_temperature)
        pairs = 2 * self.num_categories
        cosines = similarity[:, :pairs].reshape(-1, self.num_categories, 2)
        if self.scoring == "positive":
            return cosines[..., 0]
        scale = model.clip.logit_scale.exp()
        if self.scoring == "softmax":
            competitors = torch.cat([cosines[..., 0], similarity[:, pairs:]], dim=1)
            return (competitors * scale).softmax(dim=-1)[:, : self.num_categories]
        return (cosines * scale).softmax(dim=-1)[..., 0]


def stack_outputs(outputs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Stack what ``EpochOutputStore(output_transform=from_engine(["pred", "label"]))`` collected.

    Returns ``(scores, labels)``, each ``[N, C]``. The stored tensors may be on the GPU the
    evaluator ran on, or still attached to a graph: both are moved to plain CPU arrays.
    """

    def on_cpu(value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(torch.as_tensor(value).detach().cpu()))

    scores = [on_cpu(p) for pred, _ in outputs for p in pred]
    labels = [on_cpu(y) for _, label in outputs for y in label]
    if not scores:
        raise ValueError("no outputs were collected: the evaluated split is empty")
    return torch.stack(scores).numpy(), torch.stack(labels).numpy()
