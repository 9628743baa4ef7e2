"""The configs parse, layer and build what they declare, without running a workflow."""

import json
from pathlib import Path

import pytest
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
    assert parser.get("network_def#clip#model_name") == name


def test_hyper_parameters_are_top_level_keys():
    config = json.loads((REPO / "configs/train.json").read_text())
    for key in ("image_size", "batch_size", "learning_rate", "max_epochs", "embed_dim", "context_length",
                "pretrained_weights", "val_interval", "seed", "resume", "track_mlflow", "tracking_uri"):
        assert key in config, key
    assert {"imports", "bundle_root", "device", "network_def", "network", "train", "validate", "initialize", "run",
            "training"} <= set(config)


def test_metadata_input_shape_matches_the_default_image_size():
    parser = parse("configs/train.json")
    assert parser.get("_meta_#network_data_format#inputs#image#spatial_shape") == [parser["image_size"]] * 2


def test_command_line_switches_read_lower_case_words():
    from bundle.engines import flag

    assert flag(True) and flag("true") and flag("Yes") and flag(1)
    assert not flag(False) and not flag("false") and not flag("0") and not flag(None)
    with pytest.raises(ValueError, match="on/off"):
        flag("maybe")
