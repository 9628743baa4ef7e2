"""Sentence embeddings of finding texts from a local ``transformers`` model, for the SSM's optional blend.

MedFILIP's released code compares the triplet strings with sentence-transformers'
``all-mpnet-base-v2`` (mean-pooled token states, L2-normalised; ``../shared/research/medfilip.md``
§3.1). sentence-transformers is not a dependency of this bundle, and for MPNet its pipeline is
just that: the transformer, mean pooling over the attention mask, normalisation. So it is written
here in a few lines on ``transformers``' ``AutoTokenizer`` / ``AutoModel``, which load the same
folder (a sentence-transformers folder keeps the transformer's files at its root).
"""

from __future__ import annotations

import os

import torch

NEVER_DOWNLOADS = (
    "the bundle never downloads models: download e.g. sentence-transformers/all-mpnet-base-v2 yourself "
    "and pass its folder"
)


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from a local model folder, cached per string.

    Args:
        model_path: a local folder that ``transformers.AutoTokenizer`` and ``AutoModel`` load
            (``local_files_only``: nothing is ever fetched from the hub).
        max_length: tokens per text (longer texts are truncated).
        batch_size: texts per forward pass.

    ``__call__(texts)`` returns ``[N, E]`` float32 CPU embeddings, one row per text, ``E`` the
    model's hidden size (``dim``). A batch repeats texts (the same finding in several images, the
    same "no X" negation), so each distinct string is embedded once and kept in ``cache``.
    """

    def __init__(self, model_path: str | os.PathLike, max_length: int = 64, batch_size: int = 64) -> None:
        if not (model_path and os.path.isdir(model_path)):
            raise FileNotFoundError(
                f"sentence model folder {str(model_path)!r} does not exist (set it with --sentence_model_path DIR); "
                + NEVER_DOWNLOADS
            )
        if max_length < 1 or batch_size < 1:
            raise ValueError(f"max_length and batch_size must be at least 1, got {max_length}, {batch_size}")
        # imported here: transformers is only needed when the blend is configured
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
            self.model = AutoModel.from_pretrained(model_path, local_files_only=True).eval()
        except OSError as error:
            message = f"cannot load a tokenizer and model from {str(model_path)!r}: {error}; "
            raise OSError(message + NEVER_DOWNLOADS) from error
        self.model.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            for text, row in zip(chunk, self._embed(chunk)):
                self.cache[text] = row
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self.cache[t] for t in texts])

    def _embed(self, texts: list[str]) -> torch.Tensor:
        """``[len(texts), E]``: token states averaged over the attention mask, then L2-normalised."""
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        states = self.model(**encoded).last_hidden_state.float()  # [n, L, E]
        mask = encoded["attention_mask"].unsqueeze(-1).to(states.dtype)  # [n, L, 1]
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)
