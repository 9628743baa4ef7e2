"""Loading chest radiographs and masks: formats, orientation, intensity, errors, resizing, augmentation."""

import json
import re
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import Dataset
from monai.transforms import Compose
from monai.utils import set_determinism
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from bundle.transforms.image import HAS_ITK, ChestXRayReadError, LoadChestXRay, LoadChestXRayd

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
SIIM_DICOMS = sorted((REALDATA / "siim-acr-pneumothorax" / "dicom").glob("*.dcm"))
NIH_PNGS = sorted((REALDATA / "nih-chestxray14" / "images").glob("*.png"))
TBX_PNGS = sorted((REALDATA / "tbx11k-sample" / "imgs").glob("*/*.png"))
COVID_IMAGES = REALDATA / "covid-chestxray-dataset" / "images"
COVID_MASKS = REALDATA / "covid-chestxray-dataset" / "masks" / "lungVAE"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "transforms.md"

H, W = 40, 60  # non-square on purpose: a transposed load changes the shape


@pytest.fixture(scope="module")
def load() -> LoadChestXRay:
    return LoadChestXRay()


@pytest.fixture(scope="module")
def load_mask() -> LoadChestXRay:
    return LoadChestXRay(as_mask=True)


def corner_image(dtype=np.uint8, high=255) -> np.ndarray:
    """A (H, W) gradient image with a bright block in the top-left corner."""
    image = (np.linspace(0.1, 0.4, W)[None, :] * np.ones((H, 1)) * high).astype(dtype)
    image[:8, :12] = high
    return image


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", **tags) -> Path:
    """An uncompressed single-frame DICOM with the given pixels (uint8/uint16, (rows, cols) or (rows, cols, 3))."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = tags.pop("BitsStored", ds.BitsAllocated)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def assert_unit_image(image: torch.Tensor, shape: tuple[int, int]) -> None:
    assert image.shape == (1, *shape)
    assert image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


# --- orientation -------------------------------------------------------------------------------


def test_png_keeps_display_orientation(tmp_path, load):
    Image.fromarray(corner_image()).save(tmp_path / "x.png")
    image = load(tmp_path / "x.png")
    assert_unit_image(image, (H, W))
    assert image[0, 0, 0] == 1.0 and image[0, -1, -1] < 0.5
    np.testing.assert_allclose(image[0].numpy(), corner_image() / 255.0, atol=1e-6)


def test_dicom_keeps_display_orientation(tmp_path, load):
    # UID-named files ("1.2.840....12345") have no .dcm suffix; the DICOM preamble identifies them
    for name in ("x.dcm", "1.2.840.99.12345"):
        image = load(write_dicom(tmp_path / name, corner_image()))
        assert_unit_image(image, (H, W))
        np.testing.assert_allclose(image[0].numpy(), corner_image() / 255.0, atol=1e-6)


def test_nifti_round_trips_the_array_it_was_written_from(tmp_path, load):
    array = corner_image(np.float32, 1.0)
    nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / "x.nii.gz")
    nib.save(nib.Nifti1Image(array[..., None], np.eye(4)), tmp_path / "one_slice.nii")
    for name in ("x.nii.gz", "one_slice.nii"):
        image = load(tmp_path / name)
        assert image.shape == (1, H, W)
        np.testing.assert_array_equal(image[0].numpy(), array)  # float already in [0, 1]: kept as is


# --- real files ---------------------------------------------------------------------------------


def test_real_nih_pngs_equal_pil_pixels(load):
    assert len(NIH_PNGS) == 9
    for path in NIH_PNGS:
        expected = np.asarray(Image.open(path)) / 255.0
        image = load(path)
        assert_unit_image(image, expected.shape)
        np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-6, err_msg=str(path))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_real_covid_images_become_luminance(mode, load):
    # the smallest file of each mode keeps the test fast
    paths = sorted(COVID_IMAGES.iterdir(), key=lambda p: p.stat().st_size)
    path = next(p for p in paths if Image.open(p).mode == mode)
    expected = np.asarray(Image.open(path).convert("L")) / 255.0
    image = load(path)
    assert_unit_image(image, expected.shape)
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-6, err_msg=str(path))


def test_real_tbx11k_rgb_pngs(load):
    assert len(TBX_PNGS) == 3
    for path in TBX_PNGS:
        assert Image.open(path).mode == "RGB"
        image = load(path)
        assert_unit_image(image, (512, 512))
        assert image.std() > 0.1  # a real radiograph, not a flat image


def test_real_siim_dicom_and_its_monochrome1_twin_are_inverses(load):
    monochrome2, monochrome1 = (load(p) for p in SIIM_DICOMS)  # "...850819.dcm" sorts first
    assert "MONOCHROME1" in SIIM_DICOMS[1].name
    assert_unit_image(monochrome2, (1024, 1024))
    assert_unit_image(monochrome1, (1024, 1024))
    correlation = np.corrcoef(monochrome2.flatten().numpy(), monochrome1.flatten().numpy())[0, 1]
    assert correlation < -0.999
    # The twin stores the same pixels under a MONOCHROME1 header, so read correctly it is the
    # inverted picture: lungs dark and spine bright in the original, the other way round in the twin.
    rows = slice(350, 650)
    lungs = lambda x: torch.cat([x[0, rows, 220:380], x[0, rows, 650:800]], dim=1).mean()  # noqa: E731
    spine = lambda x: x[0, rows, 480:545].mean()  # noqa: E731
    assert lungs(monochrome2) < spine(monochrome2) - 0.1
    assert lungs(monochrome1) > spine(monochrome1) + 0.1


def test_real_image_and_mask_stay_aligned_through_resize_and_pad():
    item = {"image": str(COVID_IMAGES / "16663_1_1.jpg"), "lung_mask": str(COVID_MASKS / "16663_1_1_mask.png")}
    out = Dataset([item], transform=Compose(ConfigParser(docs_config()).get_parsed_content("preprocessing")))[0]
    assert out["image"].shape == out["lung_mask"].shape == (1, 224, 224)
    assert set(out["lung_mask"].unique().tolist()) == {0.0, 255.0}  # stored values, nearest resampling


# --- intensity ----------------------------------------------------------------------------------


def test_16bit_png_uses_robust_percentile_scaling(tmp_path, load):
    array = corner_image(np.uint16, 4095)  # 12 bits used out of 16, as in many exported radiographs
    array[20, 30] = 65535  # one outlier (burned-in marker) must not squash the rest
    Image.fromarray(array).save(tmp_path / "x16.png")
    assert Image.open(tmp_path / "x16.png").mode == "I;16"
    image = load(tmp_path / "x16.png")
    assert_unit_image(image, (H, W))
    assert image[0, 0, 0] == 1.0 and image[0, 20, 30] == 1.0
    assert image[0, 30, 0] == 0.0  # darkest column maps to 0
    low, high = np.percentile(array, [0.5, 99.5])
    assert high == 4095  # min/max scaling would put the 12-bit content below 4095 / 65535 = 0.06
    np.testing.assert_allclose(image[0, 30].numpy(), np.clip((array[30] - low) / (high - low), 0, 1), atol=1e-6)


def test_jpeg_loads_close_to_the_source(tmp_path, load):
    Image.fromarray(corner_image()).save(tmp_path / "x.jpg", quality=95)
    image = load(tmp_path / "x.jpg")
    assert_unit_image(image, (H, W))
    assert np.abs(image[0].numpy() - corner_image() / 255.0).mean() < 0.02


def test_dicom_rescale_window_and_monochrome1(tmp_path, load):
    raw = np.tile(np.arange(W, dtype=np.uint16) * 64, (H, 1))  # 0 .. 3776, 12-bit
    window = dict(BitsStored=12, RescaleSlope=1, RescaleIntercept=0, WindowCenter=1900, WindowWidth=1000)
    windowed = load(write_dicom(tmp_path / "w.dcm", raw, **window))
    assert_unit_image(windowed, (H, W))
    below, above = raw[0] < 1400, raw[0] > 2400
    assert torch.all(windowed[0, :, below] == 0) and torch.all(windowed[0, :, above] == 1)
    assert torch.all(torch.diff(windowed[0, 0]) >= 0)  # monotonic in the stored value
    inverted = load(write_dicom(tmp_path / "m1", raw, photometric="MONOCHROME1", **window))  # no extension
    torch.testing.assert_close(inverted, 1.0 - windowed)
    unwindowed = LoadChestXRay(apply_voi_lut=False)(tmp_path / "w.dcm")
    assert unwindowed[0, 0, below].max() > 0  # without the window the ramp is only percentile-scaled


# --- masks --------------------------------------------------------------------------------------


def test_masks_keep_their_values_and_orientation(tmp_path, load_mask):
    labels = np.zeros((H, W), np.uint8)
    labels[:8, :12], labels[30:, 50:] = 1, 2
    Image.fromarray(labels).save(tmp_path / "l.png")
    Image.fromarray(labels, mode="L").convert("P").save(tmp_path / "p.png")  # palette: indices are labels
    Image.fromarray(labels * 255).convert("RGB").save(tmp_path / "rgb.png")
    nib.save(nib.Nifti1Image(labels.astype(np.float32), np.eye(4)), tmp_path / "l.nii.gz")
    for name, expected in (("l.png", labels), ("p.png", labels), ("rgb.png", labels * 255), ("l.nii.gz", labels)):
        mask = load_mask(tmp_path / name)
        assert mask.shape == (1, H, W) and mask.dtype == torch.uint8
        np.testing.assert_array_equal(mask[0].numpy(), expected, err_msg=name)
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "empty.png")
    assert load_mask(tmp_path / "empty.png").max() == 0  # an empty mask is valid (a normal study)


def test_mask_that_is_not_a_label_map_is_rejected(tmp_path, load_mask):
    nib.save(nib.Nifti1Image(np.full((H, W), 0.5, np.float32), np.eye(4)), tmp_path / "soft.nii.gz")
    with pytest.raises(ChestXRayReadError, match=r"soft\.nii\.gz.*not a label map.*integers 0\.\.255"):
        load_mask(tmp_path / "soft.nii.gz")


def test_dict_transform_loads_images_and_masks(tmp_path):
    Image.fromarray(corner_image()).save(tmp_path / "x.png")
    Image.fromarray((corner_image() == 255).astype(np.uint8)).save(tmp_path / "m.png")
    item = {"study_id": "s1", "image": str(tmp_path / "x.png"), "lung_mask": str(tmp_path / "m.png"), "report": "r"}
    out = LoadChestXRayd("image", mask_keys=["lung_mask", "lesion_mask"], allow_missing_keys=True)(item)
    assert out["image"].dtype == torch.float32 and out["lung_mask"].dtype == torch.uint8
    assert out["image"].shape == out["lung_mask"].shape == (1, H, W)
    assert "lesion_mask" not in out and out["report"] == "r"
    assert out["image"].meta["filename_or_obj"] == str(tmp_path / "x.png")
    with pytest.raises(ValueError, match="both keys and mask_keys"):
        LoadChestXRayd(["image", "lung_mask"], mask_keys="lung_mask")


# --- errors -------------------------------------------------------------------------------------


def test_missing_file_names_the_item_and_the_datalist(tmp_path):
    missing = tmp_path / "images" / "nowhere.png"
    with pytest.raises(ChestXRayReadError) as info:
        LoadChestXRayd("image")({"study_id": "s42", "image": str(missing)})
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message
    assert "study_id='s42'" in message and "key 'image'" in message and "dataset_dir" in message
    assert isinstance(info.value.__cause__, ChestXRayReadError)


def test_truncated_png_is_reported_as_corrupt(tmp_path, load):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (H, W), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ChestXRayReadError, match=r"half\.png.*not a readable PNG file.*truncated") as info:
        load(tmp_path / "half.png")
    assert info.value.__cause__ is not None  # the reader's error is chained, not lost


def test_text_file_named_png_and_dcm(tmp_path, load):
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "notes.dcm").write_text("not an image")
    with pytest.raises(ChestXRayReadError, match=r"notes\.png.*not a readable PNG file.*re-export"):
        load(tmp_path / "notes.png")
    with pytest.raises(ChestXRayReadError, match=r"notes\.dcm.*not a readable DICOM file"):
        load(tmp_path / "notes.dcm")


def test_constant_and_empty_images(tmp_path, load):
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(ChestXRayReadError, match=r"black\.png.*no content \(every pixel is 0\)"):
        load(tmp_path / "black.png")
    nib.save(nib.Nifti1Image(np.zeros((0, W), np.float32), np.eye(4)), tmp_path / "empty.nii")
    with pytest.raises(ChestXRayReadError, match=r"empty\.nii.*empty"):
        load(tmp_path / "empty.nii")


def test_volume_with_several_slices_is_rejected(tmp_path, load):
    nib.save(nib.Nifti1Image(np.random.rand(H, W, 5).astype(np.float32), np.eye(4)), tmp_path / "ct.nii.gz")
    with pytest.raises(ChestXRayReadError, match=r"ct\.nii\.gz.*shape \(40, 60, 5\), not a 2D radiograph"):
        load(tmp_path / "ct.nii.gz")


def test_colour_dicom_and_unsupported_formats(tmp_path, load):
    rgb = np.stack([corner_image()] * 3, axis=-1)
    with pytest.raises(ChestXRayReadError, match=r"colour DICOM \(RGB, 3 samples"):
        load(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ChestXRayReadError, match=r"format '\.txt' is not supported.*\.png"):
        load(tmp_path / "x.txt")
    (tmp_path / "x.mha").write_text("x")
    expected = "not a readable MHA file" if HAS_ITK else r"\.mha files need ITK.*pip install itk"
    with pytest.raises(ChestXRayReadError, match=expected):
        load(tmp_path / "x.mha")
    with pytest.raises(ChestXRayReadError, match="expected a file path, got a NoneType"):
        load(None)


# --- frames and size limits --------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tiff", ".png"])  # multi-page TIFF and animated PNG
def test_multi_frame_files_are_rejected_not_cut_to_their_first_frame(tmp_path, load, suffix):
    frames = [Image.fromarray(corner_image() // (k + 1)) for k in range(3)]
    frames[0].save(tmp_path / f"frames{suffix}", save_all=True, append_images=frames[1:])
    assert Image.open(tmp_path / f"frames{suffix}").n_frames == 3
    with pytest.raises(ChestXRayReadError, match=rf"frames\{suffix}.*shape \(40, 60, 3\), not a 2D radiograph.*"
                                                 r"Fix: save the frontal 2D image as its own file"):
        load(tmp_path / f"frames{suffix}")
    frames[0].save(tmp_path / f"one{suffix}")
    np.testing.assert_allclose(load(tmp_path / f"one{suffix}")[0].numpy(), corner_image() / 255.0, atol=1e-6)


def test_camera_mpo_jpeg_loads_its_main_picture(tmp_path, load):
    """An MPO JPEG (a photo of a film) carries previews after the main picture: not a multi-frame radiograph."""
    Image.fromarray(corner_image()).save(tmp_path / "photo.jpg", format="MPO", save_all=True,
                                         append_images=[Image.fromarray(np.zeros((H, W), np.uint8))])
    assert Image.open(tmp_path / "photo.jpg").n_frames == 2
    assert np.abs(load(tmp_path / "photo.jpg")[0].numpy() - corner_image() / 255.0).mean() < 0.02


def refuse_decoding(loader: LoadChestXRay) -> LoadChestXRay:
    """A loader that fails the test if it gets as far as decoding pixels."""
    loader.load = lambda *args, **kwargs: pytest.fail("the pixels were decoded before the size check")
    return loader


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = Image.new("1", (12000, 12000))  # 18 MB in memory, 18 kB as PNG, 144 million pixels decoded
    bomb.paste(1, (0, 0, 600, 600))
    bomb.save(tmp_path / "bomb.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not be the only signal
        with pytest.raises(ChestXRayReadError, match=r"bomb\.png.*12000 x 12000 = 144,000,000 pixels, more than "
                                                     r"max_pixels=67,108,864.*decompression bomb.*Fix: downscale"):
            refuse_decoding(LoadChestXRay())(tmp_path / "bomb.png")
    Image.new("1", (14000, 14000)).save(tmp_path / "huge.png")  # beyond PIL's own hard limit
    with pytest.raises(ChestXRayReadError, match=r"huge\.png.*PIL refuses to decode it.*Fix: downscale"):
        LoadChestXRay()(tmp_path / "huge.png")


def test_max_pixels_is_checked_on_the_header_of_every_format(tmp_path):
    Image.fromarray(corner_image()).save(tmp_path / "x.png")
    write_dicom(tmp_path / "x.dcm", corner_image())
    nib.save(nib.Nifti1Image(corner_image(np.float32, 1.0), np.eye(4)), tmp_path / "x.nii.gz")
    small_limit = refuse_decoding(LoadChestXRay(max_pixels=2000))
    for name in ("x.png", "x.dcm", "x.nii.gz"):
        with pytest.raises(ChestXRayReadError, match=r"40 x 60 = 2,400 pixels, more than max_pixels=2,000"):
            small_limit(tmp_path / name)
    assert LoadChestXRay(max_pixels=H * W)(tmp_path / "x.dcm").shape == (1, H, W)
    # a DICOM header that announces a huge image is refused before its pixel data is read
    write_dicom(tmp_path / "bomb.dcm", corner_image(), Rows=12000, Columns=12000)
    with pytest.raises(ChestXRayReadError, match=r"bomb\.dcm.*12000 x 12000 = 144,000,000 pixels"):
        refuse_decoding(LoadChestXRay())(tmp_path / "bomb.dcm")


def test_tiny_images_and_masks_are_not_radiographs(tmp_path, load, load_mask):
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(ChestXRayReadError, match=r"tiny\.png.*it is 1 x 2 pixels, smaller than min_size=32 on a "
                                                 r"side.*Fix: list the full-size image, or lower min_size"):
        load(tmp_path / "tiny.png")
    with pytest.raises(ChestXRayReadError, match="smaller than min_size=32"):
        load_mask(tmp_path / "tiny.png")
    assert LoadChestXRay(min_size=1)(tmp_path / "tiny.png").shape == (1, 1, 2)
    item = {"study_id": "s7", "image": str(tmp_path / "tiny.png"), "lung_mask": str(tmp_path / "tiny.png")}
    with pytest.raises(ChestXRayReadError, match=r"min_size=32 on a side.*\(item study_id='s7', key 'image'\)"):
        LoadChestXRayd("image", mask_keys="lung_mask")(item)
    out = LoadChestXRayd("image", mask_keys="lung_mask", min_size=1, max_pixels=2)(item)
    assert out["image"].shape == out["lung_mask"].shape == (1, 1, 2)
    for limits in ({"min_size": 0}, {"min_size": 64, "max_pixels": 4000}):
        with pytest.raises(ValueError, match="min_size"):
            LoadChestXRay(**limits)


# --- recommended transform lists (docs/transforms.md) -------------------------------------------


def docs_config() -> dict:
    """The JSON block of docs/transforms.md, so that the documented lists are the tested ones."""
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/transforms.md should hold one ```json block"
    return json.loads(blocks[0])


def test_documented_resize_and_pad_keeps_aspect_and_alignment(tmp_path):
    image = np.zeros((H, W), np.uint8)
    image[10:20, 6:26] = 200  # a bright lesion on even pixels (halved exactly) ...
    image[0, :] = 50  # ... and a non-constant background
    mask = (image == 200).astype(np.uint8)  # ... and its mask
    Image.fromarray(image).save(tmp_path / "x.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    config = docs_config()
    config["image_size"] = 30
    transform = Compose(ConfigParser(config).get_parsed_content("preprocessing"))
    out = transform({"image": str(tmp_path / "x.png"), "lesion_mask": str(tmp_path / "m.png")})
    assert out["image"].shape == out["lesion_mask"].shape == (1, 30, 30)
    # longest side 60 -> 30, so 40 rows -> 20, padded by 5 rows top and bottom
    assert torch.all(out["image"][0, :5] == 0) and torch.all(out["image"][0, -5:] == 0)
    lesion = out["lesion_mask"][0] == 1
    assert set(out["lesion_mask"].unique().tolist()) == {0.0, 1.0}
    assert lesion.sum() == 5 * 10  # 10x20 box halved
    assert torch.all(out["image"][0][lesion] > 0.7) and out["image"][0][~lesion].max() < 0.25


def test_documented_augmentation_keeps_shape_range_and_laterality(tmp_path):
    size = 64
    image = np.full((size, size), 60, np.uint8)
    image[28:36, 8:16] = 250  # a lesion on the image's left side
    Image.fromarray(image).save(tmp_path / "x.png")
    Image.fromarray((image == 250).astype(np.uint8)).save(tmp_path / "m.png")
    config = docs_config()
    config["image_size"] = size
    parser = ConfigParser(config)
    preprocessing = Compose(parser.get_parsed_content("preprocessing"))
    augmentation = parser.get_parsed_content("augmentation")
    names = [type(t).__name__ for t in augmentation]
    assert not any("Flip" in name for name in names), names
    set_determinism(seed=0)
    item = preprocessing({"image": str(tmp_path / "x.png"), "lung_mask": str(tmp_path / "m.png")})
    columns = torch.arange(size, dtype=torch.float32)
    changed = 0
    for _ in range(20):
        out = dict(item)
        for transform in augmentation:
            out = transform(out)
        assert out["image"].shape == out["lung_mask"].shape == (1, size, size)
        assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0
        assert set(out["lung_mask"].unique().tolist()) <= {0.0, 1.0}
        lesion = out["lung_mask"][0].sum(dim=0)
        assert (lesion * columns).sum() / lesion.sum() < size / 2  # still on the left: no flip
        changed += not torch.equal(out["image"], item["image"])
    set_determinism(seed=None)
    assert changed >= 15  # the augmentation does act
