"""The dual encoder, the contrastive loss and the zero-shot inferer on a tiny open_clip model."""

import re

import numpy as np
import open_clip
import pytest
import torch

from bundle.engines import ZeroShotInferer
from bundle.losses import CLIPContrastiveLoss
from bundle.networks import ChestXRayCLIP, build_open_clip

TINY = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=64, patch_size=16, width=64, layers=2, head_width=32),
    text_cfg=dict(context_length=24, vocab_size=49408, width=64, heads=2, layers=2),
)


@pytest.fixture()
def tokenizer():
    return open_clip.tokenizer.SimpleTokenizer(context_length=24)


@pytest.fixture()
def network():
    torch.manual_seed(0)
    return ChestXRayCLIP(build_open_clip(**TINY))


def test_forward_shapes_and_normalised_features(network, tokenizer):
    out = network(torch.rand(3, 1, 64, 64), tokenizer(["left pleural effusion", "no pneumothorax", "normal"]))
    assert out["image_features"].shape == (3, 32) and out["text_features"].shape == (3, 32)
    assert torch.allclose(out["image_features"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert 0 < out["logit_scale"].item() <= 100.0


def test_grayscale_and_rgb_inputs_agree(network):
    network.eval()
    gray = torch.rand(2, 1, 64, 64)
    assert torch.allclose(network.encode_image(gray), network.encode_image(gray.expand(-1, 3, -1, -1)), atol=1e-6)


def test_wrong_shapes_are_explained(network):
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        network.encode_image(torch.rand(1, 64, 64))
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        network.encode_text(torch.zeros(24, dtype=torch.long))


def test_pretrained_must_be_a_local_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_open_clip(**TINY, pretrained="openai")
    with pytest.raises(ValueError, match="schema"):
        build_open_clip(model_name="hf-hub:some/model")


def test_local_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    source = build_open_clip(**TINY)
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = build_open_clip(**TINY, pretrained=str(path))
    for (name, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_named_open_clip_model_builds_offline():
    model = build_open_clip(model_name="RN50")
    assert sum(p.numel() for p in model.parameters()) > 50e6


def test_contrastive_loss_prefers_matched_pairs():
    loss = CLIPContrastiveLoss()
    features = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    matched = loss({"image_features": features, "text_features": features, "logit_scale": torch.tensor(20.0)})
    shuffled = loss(
        {"image_features": features, "text_features": features.roll(1, 0), "logit_scale": torch.tensor(20.0)}
    )
    assert matched < shuffled
    with pytest.raises(ValueError, match="one text per image"):
        loss({"image_features": features, "text_features": features[:4], "logit_scale": torch.tensor(1.0)})


def test_training_steps_reduce_the_loss(network, tokenizer):
    images = torch.rand(8, 1, 64, 64)
    texts = tokenizer([f"finding number {i}" for i in range(8)])
    loss_fn, optimizer = CLIPContrastiveLoss(), torch.optim.AdamW(network.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = loss_fn(network(images, texts))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_zero_shot_inferer_gives_probabilities(network, tokenizer):
    inferer = ZeroShotInferer.for_categories(["pleural_effusion", "pneumothorax"], tokenizer)
    probabilities = inferer(torch.rand(4, 1, 64, 64), network)
    assert probabilities.shape == (4, 2)
    assert torch.all((probabilities > 0) & (probabilities < 1))
    with pytest.raises(ValueError):
        ZeroShotInferer([], tokenizer)


def test_zero_shot_inferer_follows_the_prompts(network, tokenizer):
    # Swapping a category's positive and negative prompts must mirror its probability.
    inferer = ZeroShotInferer([("effusion", "no effusion")], tokenizer)
    swapped = ZeroShotInferer([("no effusion", "effusion")], tokenizer)
    image = torch.rand(2, 1, 64, 64)
    np.testing.assert_allclose(inferer(image, network).detach(), 1 - swapped(image, network).detach(), atol=1e-6)


def test_softmax_scoring_shares_each_image_among_the_categories_and_the_background(network, tokenizer):
    network.eval()
    prompts = [("effusion", "no effusion"), ("pneumothorax", "no pneumothorax")]
    image = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        shares = ZeroShotInferer(prompts, tokenizer, "softmax", background="no acute finding")(image, network)
        alone = ZeroShotInferer(prompts, tokenizer, "softmax")(image, network)
        images = network.encode_image(image)
        texts = network.encode_text(tokenizer(["effusion", "pneumothorax", "no acute finding"]))
        expected = (images @ texts.T * network.clip.logit_scale.exp()).softmax(dim=-1)
    np.testing.assert_allclose(shares, expected[:, :2], atol=1e-6)
    assert torch.all(shares.sum(dim=1) < 1)  # the background takes the rest
    np.testing.assert_allclose(alone.sum(dim=1), torch.ones(3), atol=1e-6)  # no background: the categories share all
    with pytest.raises(ValueError, match="scoring must be one of"):
        ZeroShotInferer(prompts, tokenizer, "softmax_all")


def test_report_sections_keep_the_impression_and_fall_back():
    from bundle.transforms import ReportSectionsd

    report = "INDICATION: Cough.\nFINDINGS: Small left effusion. No pneumothorax.\nIMPRESSION: Small left pleural effusion."
    assert ReportSectionsd("report")({"report": report})["report"] == "Small left pleural effusion."
    no_impression = "FINDINGS: Heart size is normal. Lungs are clear."
    assert ReportSectionsd("report")({"report": no_impression})["report"] == "Heart size is normal. Lungs are clear."
    both = ReportSectionsd("report", sections=("findings", "impression"), output_keys="text")({"report": report})
    assert both["text"] == "Small left effusion. No pneumothorax. Small left pleural effusion."


def test_tokenize_text_rejects_an_empty_report(tokenizer):
    from bundle.transforms import TokenizeTextd

    with pytest.raises(ValueError, match="study_id='s7'.*non-empty report"):
        TokenizeTextd("report", tokenizer)({"report": "  ", "study_id": "s7"})


def test_an_empty_report_still_fails_clearly_after_section_selection(tokenizer):
    from monai.transforms import Compose

    from bundle.transforms import ReportSectionsd, TokenizeTextd

    chain = Compose([ReportSectionsd("report", output_keys="text"), TokenizeTextd("text", tokenizer)])
    for empty in (None, "", "   "):
        with pytest.raises(RuntimeError) as raised:  # MONAI's Compose wraps the transform's error
            chain({"report": empty, "study_id": "s9"})
        assert re.search("study_id='s9'.*non-empty report", str(raised.value.__cause__))
