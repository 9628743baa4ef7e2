"""Cross-modal retrieval metrics: Recall@K from a similarity and a relevance matrix, and ITM re-ranking.

Everything here is pure tensor code: no network, no files. Rows of a similarity matrix are
queries and columns candidates (images x texts for image-to-text retrieval; transpose both
matrices for text-to-image). A query is a hit at K when at least one relevant candidate is
among its K best-scored candidates; Recall@K is the fraction of queries that are hits.

Ties are broken against the query: a relevant candidate ranks after every irrelevant one with
the same score. A collapsed model that gives every candidate the same score therefore gets
chance-level recall, not a perfect one.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

RELEVANCE_RULE = (
    "an image and a text are relevant when their studies have the same set of positive categories "
    "(present or hedged findings among the evaluated categories); two studies without any are relevant to each other"
)


def mean_text_embedding(text_features: torch.Tensor) -> torch.Tensor:
    """One embedding per study from its texts: the L2-normalised mean of the filled slots.

    Args:
        text_features: ``[N, T, D]`` text embeddings, T slots per study; an all-zero row is an
            empty slot (how ``MedFILIP`` returns padding) and is left out of the mean.

    Returns ``[N, D]``; a study with a single text (T = 1) keeps that text's (normalised) embedding.
    """
    if text_features.ndim != 3:
        raise ValueError(f"expected text features [N, T, D], got {tuple(text_features.shape)}")
    filled = text_features.ne(0).any(dim=-1, keepdim=True).to(text_features.dtype)
    mean = (text_features * filled).sum(dim=1) / filled.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(mean, dim=-1)


def relevance_from_labels(query_labels: torch.Tensor, candidate_labels: torch.Tensor) -> torch.Tensor:
    """Relevance by identical label sets: ``[Q, C]`` bool, True where the two multi-hot rows are equal.

    Args:
        query_labels: ``[Q, K]`` multi-hot positive categories of the queries (any value > 0 is positive).
        candidate_labels: ``[C, K]`` the same for the candidates.

    Two rows without any positive category are equal, hence relevant to each other.
    """
    if query_labels.ndim != 2 or candidate_labels.ndim != 2 or query_labels.shape[1] != candidate_labels.shape[1]:
        raise ValueError(
            f"expected label matrices [Q, K] and [C, K], "
            f"got {tuple(query_labels.shape)} and {tuple(candidate_labels.shape)}"
        )
    query, candidate = query_labels > 0, candidate_labels > 0
    return (query[:, None, :] == candidate[None, :, :]).all(dim=-1)


def recall_at_k(similarity: torch.Tensor, relevance: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@K of every query against all candidates.

    Args:
        similarity: ``[Q, C]`` scores, higher is better.
        relevance: ``[Q, C]`` bool, True where the candidate is relevant to the query.
        ks: the cut-offs K (a K above C counts every query with a relevant candidate as a hit).

    Returns ``{K: recall}``. A query without any relevant candidate is a miss at every K.
    """
    if similarity.shape != relevance.shape or similarity.ndim != 2:
        raise ValueError(
            f"similarity and relevance must both be [Q, C]; got {tuple(similarity.shape)} and {tuple(relevance.shape)}"
        )
    if similarity.shape[0] == 0:
        raise ValueError("recall_at_k needs at least one query")
    similarity, relevance = similarity.float(), relevance.bool()
    best_relevant = similarity.masked_fill(~relevance, float("-inf")).amax(dim=1, keepdim=True)
    # candidates placed before the best relevant one: irrelevant ones scoring at least as high
    ahead = ((similarity >= best_relevant) & ~relevance).sum(dim=1)
    found = relevance.any(dim=1)
    return {int(k): float((found & (ahead < k)).float().mean()) for k in ks}


def chance_recall_at_k(relevance: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Expected Recall@K of a random ranking, the chance level for ``relevance`` ``[Q, C]``.

    For a query with r relevant out of C candidates, a random top K misses them all with
    probability ``prod_{i<K} (C - r - i) / (C - i)``.
    """
    if relevance.ndim != 2:
        raise ValueError(f"relevance must be [Q, C], got {tuple(relevance.shape)}")
    candidates = relevance.shape[1]
    relevant = relevance.bool().sum(dim=1).double()
    result = {}
    for k in ks:
        steps = torch.arange(min(int(k), candidates), dtype=torch.float64)
        miss = ((candidates - relevant[:, None] - steps) / (candidates - steps)).clamp(min=0.0).prod(dim=1)
        result[int(k)] = float((1.0 - miss).mean())
    return result


def rerank_top_k(
    similarity: torch.Tensor,
    k: int,
    score_pairs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Re-rank each query's ``k`` best candidates by a second scorer (e.g. an ITM head); keep the rest.

    Args:
        similarity: ``[Q, C]`` first-stage scores (e.g. embedding cosines).
        k: how many top candidates per query the second stage re-orders (capped at C).
        score_pairs: ``score_pairs(query_index [P], candidate_index [P]) -> [P]`` scores of the
            pairs, higher is better; called once with the ``P = Q * k`` shortlisted pairs.

    Returns ``[Q, C]`` rank scores whose order is the re-ranked order: the shortlist, sorted by
    ``score_pairs``, above every other candidate, those in their first-stage order. Feed it to
    :func:`recall_at_k`; Recall@K for K >= k is that of the first stage (same shortlist), except
    that first-stage ties are broken here by candidate index, not against the query.
    """
    if similarity.ndim != 2:
        raise ValueError(f"similarity must be [Q, C], got {tuple(similarity.shape)}")
    queries, candidates = similarity.shape
    k = min(int(k), candidates)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    # stable sort, so the shortlist is reproducible when first-stage scores tie
    order = similarity.float().argsort(dim=1, descending=True, stable=True)
    shortlist = order[:, :k]
    query_index = torch.arange(queries, device=similarity.device).repeat_interleave(k)
    second = torch.as_tensor(score_pairs(query_index, shortlist.reshape(-1))).to(similarity.device).float()
    if second.shape != (queries * k,):
        raise ValueError(f"score_pairs returned shape {tuple(second.shape)} for {queries * k} pairs")
    reordered = shortlist.gather(1, second.view(queries, k).argsort(dim=1, descending=True, stable=True))
    ranking = torch.cat([reordered, order[:, k:]], dim=1)
    # position p becomes the score -p, so higher is better and no two candidates tie
    positions = torch.arange(candidates, device=similarity.device, dtype=torch.float32).expand(queries, -1)
    return torch.empty(queries, candidates, device=similarity.device).scatter_(1, ranking, -positions)
