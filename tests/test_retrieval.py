"""Retrieval metrics on hand-made similarity matrices, the report glue, and the retrieval text choice per variant."""

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from bundle.metrics import (
    chance_recall_at_k,
    mean_text_embedding,
    recall_at_k,
    relevance_from_labels,
    rerank_top_k,
    retrieval_report,
)

REPO = Path(__file__).resolve().parents[1]


def test_relevance_is_equality_of_positive_sets_and_empty_sets_match():
    labels = torch.tensor([[1, 0, 1], [1, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float32)
    relevance = relevance_from_labels(labels, labels)
    assert relevance.tolist() == [
        [True, True, False, False, False],
        [True, True, False, False, False],
        [False, False, True, False, False],
        [False, False, False, True, True],
        [False, False, False, True, True],
    ]


def test_recall_counts_a_query_as_hit_when_any_relevant_candidate_is_in_the_top_k():
    # query 0: the relevant candidate (1) is ranked 2nd; query 1: relevant 2 and 3 ranked 3rd and 4th;
    # query 2: the relevant candidate (0) is ranked 1st.
    similarity = torch.tensor([[0.9, 0.8, 0.1, 0.0],
                               [0.9, 0.8, 0.5, 0.4],
                               [0.7, 0.1, 0.2, 0.3]])
    relevance = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    recalls = recall_at_k(similarity, relevance, ks=(1, 2, 3, 10))
    assert recalls == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(1.0), 10: pytest.approx(1.0)}


def test_text_to_image_is_the_transpose():
    similarity = torch.tensor([[0.9, 0.2], [0.8, 0.1]])  # both images prefer text 0
    relevance = torch.eye(2, dtype=torch.bool)
    assert recall_at_k(similarity, relevance, ks=(1,))[1] == pytest.approx(0.5)
    # text 0 prefers image 0 (0.9 > 0.8), text 1 prefers image 0 too (0.2 > 0.1)
    assert recall_at_k(similarity.T, relevance.T, ks=(1,))[1] == pytest.approx(0.5)


def test_ties_are_broken_against_the_query_so_a_constant_model_is_not_perfect():
    similarity = torch.ones(4, 4)
    relevance = torch.eye(4, dtype=torch.bool)
    recalls = recall_at_k(similarity, relevance, ks=(1, 3, 4))
    assert recalls == {1: 0.0, 3: 0.0, 4: 1.0}


def test_a_query_without_relevant_candidates_is_a_miss():
    similarity = torch.tensor([[0.5, 0.4], [0.1, 0.9]])
    relevance = torch.tensor([[False, False], [False, True]])
    assert recall_at_k(similarity, relevance, ks=(1, 2)) == {1: 0.5, 2: 0.5}


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\[Q, C\]"):
        recall_at_k(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.bool))


def test_chance_recall_matches_the_hypergeometric_formula():
    relevance = torch.zeros(2, 10, dtype=torch.bool)
    relevance[0, 0] = True  # 1 relevant of 10: P(hit@k) = k / 10
    relevance[1, :2] = True  # 2 relevant of 10: P(hit@1) = 0.2, P(hit@2) = 1 - (8/10)(7/9)
    chance = chance_recall_at_k(relevance, ks=(1, 2, 10))
    assert chance[1] == pytest.approx((0.1 + 0.2) / 2)
    assert chance[2] == pytest.approx((0.2 + 1 - 8 / 10 * 7 / 9) / 2)
    assert chance[10] == pytest.approx(1.0)


def test_rerank_reorders_only_the_shortlist():
    similarity = torch.tensor([[0.9, 0.8, 0.7, 0.1],
                               [0.1, 0.2, 0.3, 0.4]])
    relevance = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    calls = []

    def prefer_high_index(query_index, candidate_index):
        calls.append((query_index.tolist(), candidate_index.tolist()))
        return candidate_index.float()

    scores = rerank_top_k(similarity, k=3, score_pairs=prefer_high_index)
    # query 0: shortlist {0, 1, 2} becomes 2, 1, 0, then 3; query 1: shortlist {3, 2, 1} becomes 3, 2, 1, then 0
    assert scores.argsort(dim=1, descending=True).tolist() == [[2, 1, 0, 3], [3, 2, 1, 0]]
    assert calls == [([0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 2, 1])]
    assert recall_at_k(similarity, relevance, ks=(1,))[1] == 0.5
    assert recall_at_k(scores, relevance, ks=(1, 3))[1] == 1.0


def test_rerank_can_push_the_relevant_candidate_out_of_the_top_1_but_not_out_of_the_shortlist():
    similarity = torch.tensor([[0.9, 0.5, 0.1]])
    relevance = torch.tensor([[True, False, False]])
    scores = rerank_top_k(similarity, k=2, score_pairs=lambda q, c: -similarity[q, c])
    assert recall_at_k(scores, relevance, ks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_mean_text_embedding_skips_empty_slots():
    features = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]],
                             [[0.0, 2.0], [0.0, 0.0], [0.0, 0.0]]])
    study = mean_text_embedding(features)
    assert torch.allclose(study, torch.tensor([[2 ** -0.5, 2 ** -0.5], [0.0, 1.0]]))


class _FakeITMNetwork(torch.nn.Module):
    """ITM logit = <first image token, mean of the real text tokens>: one-hot tokens make it 1 for a study's own text."""

    def __init__(self) -> None:
        super().__init__()
        self.itm_head = torch.nn.Identity()  # only its presence matters to the report
        self.weight = torch.nn.Parameter(torch.ones(()))

    def match_logits(self, image_tokens, text_tokens, text_token_mask):
        mask = text_token_mask.unsqueeze(-1).float()
        text = (text_tokens * mask).sum(1) / mask.sum(1)
        return (image_tokens[:, 0] * text).sum(-1)


# six studies with distinct label sets, so only a study's own text is relevant to its image
LABELS = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.float32)


def _outputs(itm: bool) -> list:
    """Two non-decollated batches of three studies, two text slots each (slot 1 empty).

    The embeddings put each image closest to the next study's text and second closest to its own;
    the ITM tokens are one-hot study ids, so ITM prefers the own text.
    """
    eye = torch.eye(6)
    images = eye
    texts = torch.nn.functional.normalize(eye.roll(-1, dims=1) + 0.5 * eye, dim=1)  # text j ~ e_{j-1} + 0.5 e_j
    outputs = []
    for batch, length in ((slice(0, 3), 2), (slice(3, 6), 3)):  # text lengths differ per batch, as with MedFILIP
        slots = torch.stack([texts[batch], torch.zeros_like(texts[batch])], dim=1)
        pred = {"image_features": images[batch], "text_features": slots.reshape(-1, 6)}
        if itm:
            pred["image_tokens"] = eye[batch].unsqueeze(1)  # [B, 1, 6]
            tokens = torch.stack([eye[batch], torch.zeros(3, 6)], dim=1).unsqueeze(2).expand(-1, -1, length, -1)
            mask = torch.zeros(3, 2, length, dtype=torch.bool)
            mask[:, 0, :2] = True
            pred.update(text_tokens=tokens.reshape(6, length, 6), text_token_mask=mask.reshape(6, length))
        outputs.append((pred, LABELS[batch]))
    return outputs


def test_retrieval_report_without_itm_head_has_no_reranked_block():
    report = retrieval_report(_outputs(itm=False), torch.nn.Linear(1, 1), ks=(1, 2))
    assert report["n_studies"] == 6 and report["text_slots_per_study"] == 2
    assert report["image_to_text"] == {"recall@1": 0.0, "recall@2": 1.0}
    assert report["text_to_image"] == {"recall@1": 0.0, "recall@2": 1.0}
    assert report["chance"]["image_to_text"]["recall@1"] == pytest.approx(1 / 6)
    assert "itm_reranked" not in report


def test_retrieval_report_reranks_with_the_itm_head():
    report = retrieval_report(_outputs(itm=True), _FakeITMNetwork(), ks=(1, 2), itm_top_k=2)
    assert report["image_to_text"] == {"recall@1": 0.0, "recall@2": 1.0}
    assert report["itm_reranked"] == {"top_k": 2, "image_to_text": {"recall@1": 1.0, "recall@2": 1.0}}


def _parse(*configs: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in configs])
    parser["datalist"] = {"categories": ["pleural_effusion", "mass"], "unseen_categories": ["mass"],
                          "unmentioned_findings": "absent"}
    return parser


FINDINGS = [{"category": "pleural_effusion", "location": "left", "severity": "moderate", "presence": "present"},
            {"category": "mass", "location": None, "severity": None, "presence": "absent"}]
REPORT = "FINDINGS: Moderate left effusion. No mass.\nIMPRESSION: Left pleural effusion."


@pytest.mark.parametrize("variant", ["medfilip", "no_iki", "no_field_masking", "no_ssm", "no_itm"])
def test_medfilip_variants_retrieve_with_full_finding_texts(variant):
    configs = ["configs/train.json"] + ([] if variant == "medfilip" else [f"configs/{variant}.json"])
    parser = _parse(*configs, "configs/evaluate.json")
    transforms = parser.get_parsed_content("eval_text_transforms")
    item = {"findings": FINDINGS, "report": REPORT}
    texts = [transforms[0](item)["text"] for _ in range(5)]
    assert all(t == texts[0] for t in texts), "retrieval texts must not vary between calls (no field dropping)"
    assert len(texts[0]) == 2 and texts[0][1] == "no mass"
    assert texts[0][0].startswith("moderate left pleural effusion")


def test_clip_baseline_retrieves_with_its_report_impression():
    parser = _parse("configs/train.json", "configs/clip_baseline.json", "configs/evaluate.json")
    transforms = parser.get_parsed_content("eval_text_transforms")
    item = transforms[0]({"findings": FINDINGS, "report": REPORT})
    assert item["text"] == "Left pleural effusion."
