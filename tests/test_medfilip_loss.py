"""MedFILIP losses: the soft contrastive loss against a direct computation, temperature, ITM mining, the network."""

import math

import pytest
import torch
import torch.nn.functional as F

from bundle.findings import Finding
from bundle.knowledge import default_knowledge_base
from bundle.knowledge.iki import FindingTextComposer
from bundle.losses import FindingsVocabulary, MedFILIPLoss, SemanticSimilarityMatrix, SoftTargetContrastiveLoss
from bundle.losses import mine_itm_pairs, patch_sentence_similarity
from bundle.networks import ImageTextMatchingHead, MedFILIP, build_open_clip


def direct_soft_infonce(similarity, scale, targets, weights):
    """Loop-by-loop reference: rows then columns, softmax over included pairs, rows without targets skipped."""
    def one_direction(sim, tgt, wgt):
        losses = []
        for row in range(sim.shape[0]):
            included = [j for j in range(sim.shape[1]) if wgt[row, j] > 0]
            mass = sum(float(tgt[row, j] * wgt[row, j]) for j in included)
            if mass == 0:
                continue
            norm = math.log(sum(math.exp(scale * float(sim[row, j])) for j in included))
            losses.append(-sum(float(tgt[row, j] * wgt[row, j]) / mass * (scale * float(sim[row, j]) - norm)
                               for j in included))
        return sum(losses) / len(losses)
    return 0.5 * (one_direction(similarity, targets, weights) + one_direction(similarity.t(), targets.t(), weights.t()))


def test_soft_infonce_matches_a_direct_computation():
    generator = torch.Generator().manual_seed(0)
    similarity = torch.rand(3, 5, generator=generator) * 2 - 1
    targets = torch.tensor([[1.0, 0.5, 0, 0, 0], [0, 0, 1, 0, 0.25], [0, 0, 0, 0, 0]])
    weights = torch.tensor([[1.0, 1, 1, 0, 1], [1, 1, 1, 1, 1], [1, 0, 1, 1, 1]])
    loss = SoftTargetContrastiveLoss()(similarity, torch.tensor(10.0), targets, weights)
    assert loss.item() == pytest.approx(direct_soft_infonce(similarity, 10.0, targets, weights), rel=1e-5)


def test_one_hot_targets_reduce_to_clip_infonce():
    generator = torch.Generator().manual_seed(1)
    similarity = torch.rand(4, 4, generator=generator)
    loss = SoftTargetContrastiveLoss()(similarity, torch.tensor(5.0), torch.eye(4), torch.ones(4, 4))
    labels = torch.arange(4)
    clip = 0.5 * (F.cross_entropy(5 * similarity, labels) + F.cross_entropy(5 * similarity.t(), labels))
    assert loss.item() == pytest.approx(clip.item(), rel=1e-5)


def test_mse_bce_form_is_the_papers():
    similarity, targets = torch.tensor([[0.5, -0.2]]), torch.tensor([[1.0, 0.0]])
    loss = SoftTargetContrastiveLoss(form="mse_bce")(similarity, torch.tensor(2.0), targets, torch.ones(1, 2))
    logits = 2.0 * similarity
    expected = F.mse_loss(logits, targets) + F.binary_cross_entropy_with_logits(logits, targets)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradients_flow_and_the_temperature_is_clamped():
    features = torch.randn(2, 8, requires_grad=True)
    texts = torch.randn(4, 8, requires_grad=True)
    loss_fn = SoftTargetContrastiveLoss(min_temperature=0.05, max_temperature=0.5)
    inside = torch.tensor(10.0, requires_grad=True)
    loss = loss_fn(F.normalize(features) @ F.normalize(texts).t(), inside, torch.eye(2, 4), torch.ones(2, 4))
    loss.backward()
    assert features.grad.abs().sum() > 0 and texts.grad.abs().sum() > 0 and inside.grad.abs() > 0
    for outside, clamped in ((torch.tensor(1000.0, requires_grad=True), 20.0), (torch.tensor(0.1, requires_grad=True), 2.0)):
        similarity = torch.rand(2, 4)
        value = loss_fn(similarity, outside, torch.eye(2, 4), torch.ones(2, 4))
        value.backward()
        assert outside.grad.item() == 0.0
        assert value.item() == pytest.approx(loss_fn(similarity, torch.tensor(clamped), torch.eye(2, 4), torch.ones(2, 4)).item())
    with pytest.raises(ValueError, match="temperature"):
        SoftTargetContrastiveLoss(min_temperature=0.5, max_temperature=0.1)


def test_hard_negatives_are_similar_pairs_with_low_targets():
    # 2 texts per image; image 0 owns texts 0-1, image 1 texts 2-3, image 2 texts 4-5
    targets = torch.tensor([[1.0, 1, 0.9, 0, 0, 0], [0.9, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]])
    weights = torch.ones(3, 6)
    weights[:, 5] = 0  # an empty slot
    similarity = torch.tensor([[0.9, 0.8, 0.95, 0.1, 0.7, 0.0], [0.9, 0.85, 0.9, 0.9, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4, 0.9, 0.0]])
    images, texts = mine_itm_pairs(similarity, targets, weights, texts_per_image=2, negative_threshold=0.2, temperature=1e-4)
    pairs = list(zip(images.tolist(), texts.tolist()))
    positives = [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4)]
    assert pairs[:5] == positives
    negatives = pairs[5:]
    assert all(targets[i, j] < 0.2 and weights[i, j] > 0 for i, j in negatives)
    # the hardest negative image of text 1 is image 1 (similarity 0.85 with target 0)
    assert (1, 1) in negatives and (0, 4) in negatives  # text 4's most similar wrong image is image 0 (0.7)
    limited, _ = mine_itm_pairs(similarity, targets, weights, 2, 0.2, max_positives=2, temperature=1e-4)
    assert len(limited) <= 6


def tiny_medfilip(itm: bool = True, patches: bool = False) -> MedFILIP:
    clip = build_open_clip(
        embed_dim=16,
        vision_cfg={"image_size": 32, "timm_model_name": "resnet10t", "timm_model_pretrained": False,
                    "timm_pool": "avg", "timm_proj": "linear"},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    head = ImageTextMatchingHead(image_dim=512, text_dim=32, width=16, heads=2) if itm else None
    patch_head = torch.nn.Linear(512, 16) if patches else None
    return MedFILIP(clip, head, image_token_layer="trunk.layer4", patch_head=patch_head)


def test_medfilip_network_and_loss_end_to_end_gradients():
    torch.manual_seed(0)
    kb = default_knowledge_base()
    vocabulary = FindingsVocabulary(kb)
    composer = FindingTextComposer(kb)
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer(context_length=16)
    images_findings = [[Finding("pleural_effusion", "left base", "mild")], [Finding("nodule", "right upper zone")],
                       [Finding("pneumothorax", presence="absent")]]  # fmt: skip
    texts = [[composer.compose(f) for f in findings] or [composer.compose(None)] for findings in images_findings]
    texts[2] = [composer.compose(None), composer.compose(images_findings[2][0])]
    tokens = torch.stack([torch.cat([tokenizer([t.text for t in row]), torch.zeros(2 - len(row), 16, dtype=torch.long)])
                          for row in texts])  # fmt: skip
    target = vocabulary.encode_batch(images_findings, texts, max_texts=2, max_findings=3)
    network = tiny_medfilip()
    pred = network(torch.rand(3, 1, 32, 32), tokens)
    assert pred["text_features"].shape == (6, 16)
    assert pred["text_features"][1].abs().sum() == 0  # the empty slot of image 0
    assert pred["image_tokens"].shape[:2] == (3, 1) and pred["text_tokens"].shape[0] == 6
    loss_fn = MedFILIPLoss(SemanticSimilarityMatrix(vocabulary, unmentioned="absent"), SoftTargetContrastiveLoss(),
                           network.itm_head)  # fmt: skip
    loss = loss_fn(pred, target)
    loss.backward()
    assert set(loss_fn.last_terms) == {"contrastive", "itm"}
    assert network.itm_head.classifier.weight.grad.abs().sum() > 0
    assert network.clip.logit_scale.grad is not None
    no_itm = MedFILIPLoss(SemanticSimilarityMatrix(vocabulary), SoftTargetContrastiveLoss(), None)
    assert set((no_itm(tiny_medfilip(itm=False)(torch.rand(3, 1, 32, 32), tokens), target), no_itm.last_terms)[1]) == {"contrastive"}


def test_network_refuses_bad_shapes_and_layers():
    network = tiny_medfilip()
    with pytest.raises(ValueError, match=r"\[B, T, L\]"):
        network(torch.rand(2, 1, 32, 32), torch.ones(2, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="image_token_layer"):
        MedFILIP(network.clip, network.itm_head, image_token_layer="no.such.layer")


def test_a_copied_network_captures_its_own_tokens():
    import copy

    original = tiny_medfilip()
    copied = copy.deepcopy(original)
    tokens = torch.randint(1, 100, (2, 1, 16))
    out = copied(torch.rand(2, 1, 32, 32), tokens)
    assert out["image_tokens"].shape[0] == 2 and out["text_tokens"].shape[0] == 2
    assert original._captured == {}  # the copy's hooks wrote into the copy


def test_patch_sentence_similarity_attends_to_the_matching_patch():
    torch.manual_seed(0)
    patches = F.normalize(torch.randn(3, 5, 8), dim=-1)
    texts = F.normalize(torch.randn(4, 8), dim=-1)
    texts[3] = 0.0  # an empty slot
    temperature = 0.2
    expected = torch.zeros(3, 4)
    for i in range(3):
        for j in range(4):
            cosines = [float(patches[i, p] @ texts[j]) for p in range(5)]
            weights = [math.exp(c / temperature) for c in cosines]
            expected[i, j] = sum(w * c for w, c in zip(weights, cosines)) / sum(weights)
    assert torch.allclose(patch_sentence_similarity(patches, texts, temperature), expected, atol=1e-6)
    cosine = torch.einsum("bpd,nd->bpn", patches, texts)
    assert torch.allclose(patch_sentence_similarity(patches, texts, 1e-4), cosine.amax(dim=1), atol=1e-4)
    assert torch.allclose(patch_sentence_similarity(patches, texts, 1e4), cosine.mean(dim=1), atol=1e-4)
    assert patch_sentence_similarity(patches, texts)[:, 3].abs().max() == 0
    with pytest.raises(ValueError, match=r"\[B, P, D\]"):
        patch_sentence_similarity(patches, torch.randn(4, 7))


def test_the_patch_term_trains_the_patch_head():
    torch.manual_seed(0)
    vocabulary = FindingsVocabulary(default_knowledge_base())
    composer = FindingTextComposer(default_knowledge_base())
    from open_clip.tokenizer import SimpleTokenizer

    findings = [[Finding("nodule", "right upper zone")], [Finding("pleural_effusion", "left base")]]
    texts = [[composer.compose(f[0])] for f in findings]
    target = vocabulary.encode_batch(findings, texts, max_texts=1, max_findings=2)
    tokens = torch.stack([SimpleTokenizer(context_length=16)([t.text for t in row]) for row in texts])
    network = tiny_medfilip(itm=False, patches=True)
    pred = network(torch.rand(2, 1, 64, 64), tokens)  # a 2 x 2 last feature map: 4 patches
    assert pred["patch_features"].shape == (2, 4, 16)
    assert torch.allclose(pred["patch_features"].norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    loss_fn = MedFILIPLoss(SemanticSimilarityMatrix(vocabulary, unmentioned="absent"), SoftTargetContrastiveLoss(),
                           patch_weight=0.5)  # fmt: skip
    loss_fn(pred, target).backward()
    assert set(loss_fn.last_terms) == {"contrastive", "patch"}
    assert network.patch_head.weight.grad.abs().sum() > 0
    with pytest.raises(KeyError, match="patch_head"):
        loss_fn(tiny_medfilip(itm=False)(torch.rand(2, 1, 64, 64), tokens), target)


def test_zero_shot_patch_scoring_compares_prompts_with_the_patches():
    from open_clip.tokenizer import SimpleTokenizer

    from bundle.engines import ZeroShotInferer

    torch.manual_seed(0)
    network = tiny_medfilip(itm=False, patches=True).eval()
    tokenizer = SimpleTokenizer(context_length=16)
    prompts = [("pleural effusion", "no pleural effusion"), ("nodule", "no nodule")]
    image = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        patches = network.encode_patches(image)
        texts = network.encode_text(tokenizer([text for pair in prompts for text in pair]))
        expected = patch_sentence_similarity(patches, texts, 0.1)
        positive = ZeroShotInferer(prompts, tokenizer, "positive", patch_temperature=0.1)(image, network)
        contrast = ZeroShotInferer(prompts, tokenizer, "contrast", patch_temperature=0.1)(image, network)
        pooled = ZeroShotInferer(prompts, tokenizer, "positive")(image, network)
    assert patches.shape == (3, 4, 16)
    assert torch.allclose(positive, expected[:, [0, 2]], atol=1e-6)
    scaled = expected.reshape(3, 2, 2) * network.clip.logit_scale.exp()
    assert torch.allclose(contrast, scaled.softmax(dim=-1)[..., 0], atol=1e-6)
    assert torch.allclose(pooled, network.encode_image(image) @ texts[[0, 2]].T, atol=1e-6)
    with pytest.raises(RuntimeError, match="no patch head"):
        tiny_medfilip(itm=False).encode_patches(image)
