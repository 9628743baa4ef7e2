"""A MONAI Label app serving the bundle's segmentation network on 2D chest radiographs.

Run it from the MONAI Label environment (``scripts/setup_monailabel.sh``; commands in
docs/monailabel.md)::

    .monailabel-env/bin/monailabel start_server --app bundle/apps/monailabel --studies STUDIES \
        --host 127.0.0.1 --port 8000 [--conf configs configs/vit_b16.json] [--conf bundle_root DIR]

It offers one model, ``segmentation_<task>`` (``segmentation_lungs`` by default): auto-segmentation
with ``configs/inference_segmentation.json`` and ``models/<seg_model_file>``, and training with
``configs/train_segmentation.json`` on the images whose final label was saved through the server.

Why not the ``monaibundle`` sample app: it serves ``configs/inference.json`` with
``models/model.pt`` and trains ``configs/train.json``, which in this bundle are the
vision-language pre-training; it reads ``configs/metadata.json`` (this bundle keeps
``metadata.json`` at its root, where its CLI and tests read it); and it reads one config file,
while a tower or task override (``configs/vit_b16.json``, ``configs/seg_lesions.json``) must be
layered on the segmentation configs as on the command line. The tasks below are MONAI Label's
bundle tasks with those names and a few overrides.

``--conf`` options:
    bundle_root: the bundle folder whose ``configs/``, ``models/`` and ``eval/`` are used
        (default: the bundle this app is in). The server works in that folder: the configs
        name each other by paths relative to it.
    configs: config files layered on both segmentation configs, comma-separated (relative to
        ``bundle_root`` or absolute); the same ones the model was trained with.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import monai.bundle
import torch
from monai.bundle import ConfigParser
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize, SaveImaged
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.infer.bundle import BundleConstants as InferConstants
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleConstants as TrainConstants
from monailabel.tasks.train.bundle import BundleTrainTask

# MONAI Label imports this file by its path, so the bundle's package is importable only once its
# root (three folders up) is on sys.path; the training subprocess imports this file again.
DEFAULT_BUNDLE_ROOT = Path(__file__).resolve().parents[3]
if str(DEFAULT_BUNDLE_ROOT) not in sys.path:
    sys.path.insert(0, str(DEFAULT_BUNDLE_ROOT))

from bundle.engines import UserInputError  # noqa: E402  (needs the path above)
from bundle.transforms.segmentation import SaveSegmentationd, label_map  # noqa: E402

LOGGER = logging.getLogger(__name__)
INFER_CONFIG = "inference_segmentation.json"
TRAIN_CONFIG = "train_segmentation.json"
METADATA = os.path.join("..", "metadata.json")  # MONAI Label joins it to <bundle>/configs


class ClassIndicesd(MapTransform):
    """Class probabilities ``[C, h, w]`` to a uint8 label map at the source radiograph's size, as MONAI Label writes it.

    0 is background and k is class k (1-based: the value MONAI Label's labels give it), so one
    class is 1 where the bundle's mask files have 255. Probabilities are resized bilinearly before
    the threshold, as ``SaveSegmentationd`` does for those files. The map is ``[W, H]``: MONAI
    Label's writer takes MONAI's (x, y) order and transposes it into the file, while the bundle
    loads radiographs as rows and columns, ``[1, H, W]``.
    """

    def __init__(self, keys: KeysCollection, source_key: str, threshold: float) -> None:
        super().__init__(keys)
        self.source_key = source_key
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        size = d[self.source_key].shape[1:]
        for key in self.key_iterator(d):
            probabilities = torch.as_tensor(Resize(spatial_size=size, mode="bilinear")(
                torch.as_tensor(d[key], dtype=torch.float32).cpu()))
            indices = label_map(probabilities, self.threshold)
            d[key] = ((indices > 0) if probabilities.shape[0] == 1 else indices).to(torch.uint8).T.numpy()
        return d


class SegmentationFiles(InferConstants, TrainConstants):
    """This bundle's file names where MONAI Label's bundle tasks look for a zoo bundle's."""

    def __init__(self, config: str, model_file: str) -> None:
        self.config = config
        self.model_file = model_file

    def configs(self) -> Sequence[str]:
        return [self.config]

    def metadata_json(self) -> str:
        return METADATA

    def model_pytorch(self) -> str:
        return self.model_file


class SegmentationSettings:
    """What the app reads from the segmentation configs with the ``configs`` overrides layered on."""

    def __init__(self, bundle_root: Path, extra_configs: Sequence[str]) -> None:
        self.bundle_root = bundle_root
        self.extra_configs = [str(bundle_root / path) for path in extra_configs]  # absolute ones stay as they are
        missing = [path for path in [str(bundle_root / "configs" / TRAIN_CONFIG), *self.extra_configs]
                   if not os.path.isfile(path)]
        if missing:
            raise UserInputError(f"the config file(s) {', '.join(missing)} do not exist. Fix: pass --conf bundle_root "
                                 "with the bundle folder and --conf configs with files inside it, comma-separated")
        parser = self.parser(TRAIN_CONFIG)
        self.task: str = parser.get_parsed_content("task")
        self.class_names: list[str] = list(parser.get_parsed_content("class_names"))
        self.model_file: str = parser.get_parsed_content("seg_model_file")
        self.batch_size: int = parser.get_parsed_content("batch_size")
        self.mask_key: str = parser.get_parsed_content("mask_key")
        self.model_name = f"segmentation_{self.task}"
        self.description = (f"{', '.join(self.class_names)} on a 2D chest radiograph (the MedFILIP vision tower "
                            "with a UNet decoder)")

    def config_files(self, config: str) -> list[str]:
        return [str(self.bundle_root / "configs" / config), *self.extra_configs]

    def parser(self, config: str) -> ConfigParser:
        parser = ConfigParser()
        parser.read_config(self.config_files(config))
        parser["bundle_root"] = str(self.bundle_root)
        return parser


class SegmentationInferTask(BundleInferTask):
    """Auto-segmentation: the bundle's inference pre-processing and network, a label map at the image's size.

    The bundle's own writer (``SaveSegmentationd``, mask and overlay files) is left out: MONAI
    Label writes the label map it returns, as PNG.
    """

    def __init__(self, settings: SegmentationSettings, conf: dict[str, str]) -> None:
        self.settings = settings
        super().__init__(str(settings.bundle_root), conf, const=SegmentationFiles(INFER_CONFIG, settings.model_file),
                         type=InferType.SEGMENTATION, post_filter=[SaveImaged, SaveSegmentationd],
                         add_post_restore=False, load_strict=True)
        if not self.is_valid():
            return
        self.labels = {name: index for index, name in enumerate(settings.class_names, 1)}
        self.description = settings.description
        self._config["model_filename"] = [settings.model_file]  # not the pre-training checkpoint beside it
        self._check_checkpoint()

    def _load_bundle_config(self, path: str, config: str) -> ConfigParser:
        return self.settings.parser(INFER_CONFIG)

    def _check_checkpoint(self) -> None:
        """Load the checkpoint once now, so that a tower other than the configured one stops the server with the fix."""
        path = self.settings.bundle_root / "models" / self.settings.model_file
        try:
            self.network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except RuntimeError as error:
            raise UserInputError(
                f"'{path}' does not fit the network of configs/{INFER_CONFIG} (first lines: "
                f"{str(error).splitlines()[0]}). Fix: pass --conf configs with the config files it was trained "
                "with (e.g. configs/vit_b16.json), or train it again through this server"
            ) from error

    def post_transforms(self, data: Any = None) -> Sequence[Any]:
        threshold = self.bundle_config.get_parsed_content("probability_threshold")
        return [*super().post_transforms(data), ClassIndicesd("pred", "source_image", threshold)]

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        # PNG, whatever the image's format: a JPEG label would be lossy
        return super().writer(data, extension or data.get("result_extension") or ".png", dtype or "uint8")


class SegmentationTrainTask(BundleTrainTask):
    """Training from the labels saved through the server, with the bundle's training config.

    Each request fine-tunes the served model (MONAI Label loads ``models/<seg_model_file>`` when
    ``pretrained``) in a run of its own: periodic checkpoints go to
    ``models/segmentation_<task>_monailabel`` and never resume, so that they neither mix with a
    command-line run's nor stop the next request as a finished run. The best model by validation
    Dice replaces ``models/<seg_model_file>``, which the inference task reloads.
    """

    def __init__(self, settings: SegmentationSettings, conf: dict[str, str]) -> None:
        self.settings = settings
        super().__init__(str(settings.bundle_root), conf, const=SegmentationFiles(TRAIN_CONFIG, settings.model_file),
                         load_strict=True)
        self.description = settings.description  # not the vision-language pre-training's, from metadata.json
        self.bundle_metadata_path = str(settings.bundle_root / "metadata.json")

    def _load_bundle_config(self, path: str, config: str) -> ConfigParser:
        return self.settings.parser(TRAIN_CONFIG)

    def config(self) -> dict[str, Any]:
        options = super().config()
        options["model_filename"] = [self.settings.model_file]
        options["multi_gpu"] = False  # the bundle has no multi-GPU training config
        return options

    def _fetch_datalist(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, str]]:
        items = super()._fetch_datalist(request, datastore)
        if not items:
            raise UserInputError("no image has a final label yet. Fix: save at least one label (Submit Label in "
                                 "the client, or PUT /datastore/label?tag=final) before training")
        return [{"image": item["image"], self.settings.mask_key: item["label"]} for item in items]

    def _partition_datalist(self, datalist: list, request: dict[str, Any], shuffle: bool = False) -> tuple[list, list]:
        train, validation = super()._partition_datalist(datalist, request, shuffle)
        if not validation:
            LOGGER.warning("%d labelled image(s) leave none for validation (val_split %s): validating on the training "
                           "images, so the best model is chosen by training Dice", len(train), request.get("val_split"))
            validation = train
        return train, validation

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        return super().__call__({**request, "model_filename": self.settings.model_file, "multi_gpu": False},
                                datastore)

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        items = len(overrides["train#dataset#data"])
        checkpoint = self.settings.bundle_root / "models" / self.settings.model_file
        overrides.update({
            "resume": False,
            "seg_checkpoint_dir": str(self.settings.bundle_root / "models" / f"{self.settings.model_name}_monailabel"),
            # a few labelled images should train rather than stop at drop_last with no full batch
            "batch_size": min(self.settings.batch_size, items),
            "test#items": [],  # MONAI Label's datastore has no test split
        })
        if any(handler.get("_target_") == "CheckpointLoader" for handler in overrides["train#handlers"]):
            overrides["encoder_weights"] = "random"  # the whole network comes from the served model
            LOGGER.info("fine-tuning %s", checkpoint)
        return overrides

    def run_single_gpu(self, request: dict[str, Any], overrides: dict[str, Any]) -> None:
        monai.bundle.run(run_id=request.get("run_id", "run"), meta_file=self.bundle_metadata_path,
                         config_file=self.settings.config_files(TRAIN_CONFIG), **overrides)


class MedfilipSegmentationApp(MONAILabelApp):
    """The MONAI Label app: one segmentation model, its trainer, and the first/random sample strategies."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        bundle_root = Path(conf.get("bundle_root") or DEFAULT_BUNDLE_ROOT).expanduser().resolve()
        extra = [path.strip() for path in conf.get("configs", "").split(",") if path.strip()]
        self.settings = SegmentationSettings(bundle_root, extra)
        # the configs take the tower from each other with %configs/...json macros, read from the working folder
        os.chdir(bundle_root)
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="medfilip_cxr segmentation",
                         description=self.settings.description, version=self._bundle_version())

    def _bundle_version(self) -> str:
        return json.loads((self.settings.bundle_root / "metadata.json").read_text(encoding="utf-8"))["version"]

    def init_infers(self) -> dict[str, InferTask]:
        task = SegmentationInferTask(self.settings, self.conf)
        if not task.is_valid():
            LOGGER.warning("no %s in %s: only training is offered until a model is there (restart the server after "
                           "the first training, or train one with configs/%s)", self.settings.model_file,
                           self.settings.bundle_root / "models", TRAIN_CONFIG)
            return {}
        return {self.settings.model_name: task}

    def init_trainers(self) -> dict[str, TrainTask]:
        return {self.settings.model_name: SegmentationTrainTask(self.settings, self.conf)}

    def init_strategies(self) -> dict[str, Strategy]:
        return {"first": First(), "random": Random()}
