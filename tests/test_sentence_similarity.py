"""The SSM's optional sentence-embedding blend: the local embedder, EmbedTextsd, the blend rule, the config.

The model is a tiny BERT saved to a temporary folder (random weights, a 23-token vocabulary), so
nothing is downloaded; the end-to-end run trains one epoch of the tiny network through the CLI.
"""

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from bundle.engines.prepare_batch import TARGET_KEYS
from bundle.findings import Finding
from bundle.knowledge import default_knowledge_base
from bundle.knowledge.iki import FindingText, TextKind
from bundle.losses import FindingsVocabulary, SemanticSimilarityMatrix, SentenceEmbedder
from bundle.transforms import EmbedTextsd
from tests.bundle_cli import TINY, describe, make_synthcxr, run_bundle

REPO = Path(__file__).resolve().parents[1]
WORDS = ["no", "pleural", "effusion", "nodule", "mild", "moderate", "left", "right", "base", "opaque", "round",
         "small", "large", "possible", "acute", "cardiopulmonary", "finding", ":"]  # fmt: skip
VOCAB = FindingsVocabulary(default_knowledge_base())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = {word: i for i, word in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    BertTokenizerFast(vocab=vocab).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    return folder


def test_embeddings_are_normalised_deterministic_and_independent_of_padding(model_dir):
    texts = ["no pleural effusion", "mild left base pleural effusion: opaque", "no pleural effusion"]
    embedder = SentenceEmbedder(str(model_dir))
    embeddings = embedder(texts)
    assert embeddings.shape == (3, 32) and embeddings.dtype == torch.float32
    assert torch.linalg.vector_norm(embeddings, dim=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert float(embeddings[0] @ embeddings[2]) == pytest.approx(1.0, abs=1e-6)
    assert set(embedder.cache) == set(texts), "each distinct string is embedded once"
    # a fresh model, the short text alone (no padding): the same vector, so pooling ignores padding
    alone = SentenceEmbedder(str(model_dir))(["no pleural effusion"])
    assert torch.allclose(alone[0], embeddings[0], atol=1e-5)
    assert float(embeddings[0] @ embeddings[1]) < 0.999


def test_a_missing_model_folder_is_refused_without_downloading(tmp_path):
    missing = tmp_path / "all-mpnet-base-v2"
    with pytest.raises(FileNotFoundError, match="all-mpnet-base-v2.*never downloads"):
        SentenceEmbedder(str(missing))
    with pytest.raises(FileNotFoundError, match="--sentence_model_path"):
        SentenceEmbedder(None)


def test_embed_textsd_pads_to_the_text_slots_with_zero_rows(model_dir):
    transform = EmbedTextsd("text", SentenceEmbedder(str(model_dir)), pad_to=4)
    out = transform({"study_id": "s1", "text": ["no pleural effusion", "nodule: round"]})
    assert out["text_embeddings"].shape == (4, 32)
    assert out["text_embeddings"][2:].abs().sum() == 0 and out["text"] == ["no pleural effusion", "nodule: round"]
    with pytest.raises(ValueError, match="s1.*3 texts"):
        EmbedTextsd("text", SentenceEmbedder(str(model_dir)), pad_to=2)({"study_id": "s1", "text": ["a", "b", "c"]})
    with pytest.raises(TypeError, match="before TokenizeTextd"):
        transform({"study_id": "s1", "text": torch.zeros(4, 8, dtype=torch.long)})


def blend_batch(deny_effusion_in_image_1: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three images with two text slots each, and hand-made unit embeddings ``[3, 2, 2]``.

    image 0: effusion;                  texts: "pleural effusion" [1, 0], "no cardiomegaly" [.6, .8]
    image 1: nodule (+ effusion denied); texts: "nodule" [.8, .6], "no pleural effusion" [1, 0]
    image 2: nothing;                   texts: no-finding [0, 1], padding [0, 0]
    """
    images = [[Finding("pleural_effusion")], [Finding("nodule")], []]
    if deny_effusion_in_image_1:
        images[1].append(Finding("pleural_effusion", presence="absent"))
    texts = [
        [FindingText("pleural effusion", TextKind.PRESENT, "pleural_effusion", True),
         FindingText("no cardiomegaly", TextKind.ABSENT, "cardiomegaly", True)],
        [FindingText("nodule", TextKind.PRESENT, "nodule", True),
         FindingText("no pleural effusion", TextKind.ABSENT, "pleural_effusion", True)],
        [FindingText("no acute cardiopulmonary finding", TextKind.NO_FINDING)],
    ]  # fmt: skip
    batch = VOCAB.encode_batch(images, texts, max_texts=2, max_findings=4)
    findings, codes, attributes = batch["findings_code"], batch["text_code"], batch["text_attributes"]
    embeddings = torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.8, 0.6], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])
    return findings, codes, attributes, embeddings


def test_blend_mixes_the_max_pooled_cosine_into_positive_texts_only():
    findings, codes, attributes, embeddings = blend_batch()
    structured, weights = SemanticSimilarityMatrix(VOCAB, unmentioned="absent")(findings, codes, attributes)
    blended, blended_weights = SemanticSimilarityMatrix(VOCAB, unmentioned="absent", embedding_blend=0.5)(
        findings, codes, attributes, embeddings
    )
    # positive texts are columns 0 (effusion) and 2 (nodule); semantic = max cosine with the image's positive texts:
    # image 0 -> [1, .8], image 1 -> [.8 but denied, 1], image 2 has none -> 0
    assert structured[:, [0, 2]].tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    assert torch.allclose(blended[:, [0, 2]], torch.tensor([[1.0, 0.4], [0.0, 1.0], [0.0, 0.0]]))
    # "no X" and no-finding keep their structured targets, though "no pleural effusion" embeds like "pleural effusion"
    assert torch.equal(blended[:, [1, 3, 4, 5]], structured[:, [1, 3, 4, 5]])
    assert torch.equal(blended_weights, weights)
    # blend 0 ignores embeddings
    zero_blend, _ = SemanticSimilarityMatrix(VOCAB, unmentioned="absent")(findings, codes, attributes, embeddings)
    assert torch.equal(zero_blend, structured)


def test_a_denied_category_still_forces_zero():
    findings, codes, attributes, embeddings = blend_batch(deny_effusion_in_image_1=False)
    ssm = SemanticSimilarityMatrix(VOCAB, unmentioned="absent", embedding_blend=0.5)
    assert ssm(findings, codes, attributes, embeddings)[0][1, 0] == pytest.approx(0.4)  # nodule text's cosine .8
    findings, codes, attributes, embeddings = blend_batch(deny_effusion_in_image_1=True)
    assert ssm(findings, codes, attributes, embeddings)[0][1, 0] == 0.0


def test_blend_without_embeddings_names_the_transform_and_the_config():
    findings, codes, attributes, _ = blend_batch()
    with pytest.raises(ValueError, match="EmbedTextsd.*configs/sentence_ssm.json"):
        SemanticSimilarityMatrix(VOCAB, embedding_blend=0.5)(findings, codes, attributes)
    with pytest.raises(ValueError, match="embedding_blend"):
        SemanticSimilarityMatrix(VOCAB, embedding_blend=1.5)


def test_override_inserts_embed_textsd_into_train_json_text_transforms():
    train = json.loads((REPO / "configs/train.json").read_text())["train"]
    override = json.loads((REPO / "configs/sentence_ssm.json").read_text())
    transforms = override["train#text_transforms"]
    targets = [t["_target_"].rsplit(".", 1)[-1] for t in transforms]
    assert targets == ["EncodeFindingsd", "ComposeFindingTextsd", "EmbedTextsd", "TokenizeTextd"]
    assert transforms[:2] + transforms[3:] == train["text_transforms"], "the copied transforms drifted from train.json"
    assert override["train#batch_keys"] == train["batch_keys"] + ["text_embeddings"]
    assert override["train#prepare_batch"]["target_keys"] == [*TARGET_KEYS, "text_embeddings"]


def test_override_without_a_model_path_refuses_with_the_flag_to_set():
    parser = ConfigParser()
    parser.read_config([str(REPO / "configs/train.json"), str(REPO / "configs/sentence_ssm.json")])
    with pytest.raises(RuntimeError) as raised:
        parser.get_parsed_content("sentence_embedder")
    assert "--sentence_model_path" in repr(raised.value.__cause__)


def test_training_through_the_cli_with_the_blend(model_dir, tmp_path):
    data = make_synthcxr(tmp_path / "synthcxr", 60)
    configs = ("configs/train.json", "configs/sentence_ssm.json", TINY)
    result = run_bundle(tmp_path, data, "training", "--sentence_model_path", str(model_dir), "--max_epochs", "1",
                        "--track_mlflow", "false", configs=configs, timeout=600)  # fmt: skip
    assert result.returncode == 0, describe(result)
    assert "Epoch[1]" in result.stdout + result.stderr
    assert (tmp_path / "models/checkpoint_checkpoint_epoch=1.pt").is_file()
