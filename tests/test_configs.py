"""The configs parse, layer and build what they declare, without running a workflow."""

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]


def parse(*files: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in files])
    parser.read_meta(str(REPO / "metadata.json"))
    return parser


@pytest.mark.parametrize("override, name, min_params", [("configs/vit_b16.json", "ViT-B-16", 100e6),
                                                          ("configs/rn50.json", "RN50", 50e6)])
def test_real_run_configs_build_named_open_clip_models_offline(override, name, min_params):
    parser = parse("configs/train.json", override)
    network = parser.get_parsed_content("network_def")
    assert sum(p.numel() for p in network.parameters()) > min_params
    assert parser.get("clip_def#model_name") == name
    # the ITM head's declared token widths fit the named towers
    size, length = parser["image_size"], parser["context_length"]
    text = torch.zeros(1, 1, length, dtype=torch.long)
    text[0, 0, :3] = torch.tensor([49406, 320, 49407])
    with torch.no_grad():
        out = network(torch.rand(1, 1, size, size), text)
        logits = network.match_logits(out["image_tokens"], out["text_tokens"], out["text_token_mask"])
    assert out["image_tokens"].shape[-1] == parser["image_token_dim"] and logits.shape == (1,)


VARIANTS = ("clip_baseline", "no_iki", "no_field_masking", "no_ssm", "no_itm", "no_patch_matching")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_a_small_override_that_builds(variant):
    override = json.loads((REPO / f"configs/{variant}.json").read_text())
    assert override["variant"] == variant and len(override) <= 12
    parser = parse("configs/train.json", f"configs/{variant}.json")
    parser.update({"datalist": {"categories": ["pleural_effusion", "mass"], "unseen_categories": ["mass"]}})
    assert parser.get_parsed_content("network_def") is not None and parser.get_parsed_content("loss") is not None
    assert parser.get_parsed_content("validate#inferer").num_categories == 1


def test_hyper_parameters_are_top_level_keys():
    config = json.loads((REPO / "configs/train.json").read_text())
    for key in ("image_size", "batch_size", "learning_rate", "max_epochs", "embed_dim", "context_length",
                "pretrained_weights", "val_interval", "seed", "resume", "track_mlflow", "tracking_uri", "iki",
                "finding_templates", "field_drop_probabilities", "max_texts_per_image", "contrastive_weight",
                "itm_weight", "patch_weight", "patch_temperature", "min_temperature", "max_temperature",
                "unmentioned_findings", "zero_shot_scoring"):
        assert key in config, key
    assert {"imports", "bundle_root", "device", "network_def", "network", "train", "validate", "initialize", "run",
            "training"} <= set(config)


def test_metadata_input_shape_matches_the_default_image_size():
    parser = parse("configs/train.json")
    assert parser.get("_meta_#clip_data_format#inputs#image#spatial_shape") == [parser["image_size"]] * 2


def test_package_version_is_the_bundle_version():
    import bundle

    assert bundle.__version__ == json.loads((REPO / "metadata.json").read_text())["version"]


def test_command_line_switches_read_lower_case_words():
    from bundle.engines import flag

    assert flag(True) and flag("true") and flag("Yes") and flag(1)
    assert not flag(False) and not flag("false") and not flag("0") and not flag(None)
    with pytest.raises(ValueError, match="on/off"):
        flag("maybe")
