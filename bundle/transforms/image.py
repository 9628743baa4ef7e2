"""Loading chest radiographs and their masks as ``[1, H, W]`` tensors in display orientation.

MONAI's ``LoadImage`` does the reading, with one explicit reader per format (PNG/JPEG/BMP/TIFF:
``PILReader``; DICOM: ``PydicomReader``; NIfTI: ``NibabelReader``; MetaImage/NRRD: ``ITKReader``
when the optional ``itk`` package is installed). What MONAI does not do for radiographs is
written here: colour to luminance, DICOM MONOCHROME1 inversion and VOI windowing, the choice of
intensity scaling by bit depth, size limits checked on the header before decoding (a
decompression bomb is refused, not decoded), and errors that name the file and the fix. See
``docs/transforms.md`` for the conventions and the recommended resize/augmentation transforms.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import nibabel as nib
import pydicom
import torch
from monai.config import KeysCollection, PathLike
from monai.data import ImageReader, MetaTensor, NibabelReader, PILReader, PydicomReader
from monai.transforms import EnsureChannelFirst, LoadImage, MapTransform, ScaleIntensityRange, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils import ensure_tuple, optional_import
from PIL import Image

try:
    from pydicom.pixels import apply_voi_lut
except ImportError:  # pydicom 2: the MONAI Label environment's (monailabel imports pydicom-seg, which needs it)
    from pydicom.pixel_data_handlers.util import apply_voi_lut

from ..data.datalist import check_item_keys, describe_item

_, HAS_ITK = optional_import("itk")

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom", "")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
# PIL modes that np.asarray turns into one grey value per pixel; every other mode is colour
# (RGB, RGBA, CMYK, YCbCr, LA, P, PA, ...) or bilevel and is converted.
PIL_GREY_MODES = ("L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# Below 32 pixels a side an image is an icon or a thumbnail (SynthCXR's smallest images are 32).
MIN_SIZE = 32
# 8192 x 8192: about four times the pixels of the largest detectors (43 cm at 100 um, 4300 a side), and below
# PIL's own decompression-bomb warning (89 million pixels), which this limit replaces.
MAX_PIXELS = 8192 * 8192
TOO_LARGE_FIX = "downscale it (a few thousand pixels a side keep every detail), or raise max_pixels if it is genuine"


class ChestXRayReadError(ValueError):
    """A radiograph or mask file that cannot be used; the message names the file, the problem and the fix."""

    def __init__(self, filename: PathLike, problem: str, fix: str) -> None:
        self.filename = str(filename)
        self.problem = problem
        self.fix = fix
        super().__init__(f"cannot load chest X-ray file '{filename}': {problem}. Fix: {fix}")


def grey_from_pil(image: Image.Image) -> Image.Image:
    """PIL converter for radiographs: colour/palette/bilevel images to 8-bit luminance, alpha dropped.

    ``convert("L")`` is ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B). 16-bit and float
    images are left as they are so that their bit depth survives.
    """
    return image if image.mode in PIL_GREY_MODES else image.convert("L")


def label_map_from_pil(image: Image.Image) -> Image.Image:
    """PIL converter for masks: palette indices and bilevel values are the labels and are kept;
    colour masks (white on black saved as RGB/RGBA/LA) become their grey value."""
    return image if image.mode in PIL_GREY_MODES + ("P", "1") else image.convert("L")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


class LoadChestXRay(Transform):
    """Load one chest radiograph (or a mask) as a ``[1, H, W]`` ``MetaTensor``.

    Orientation is that of the displayed image: row 0 is the top, as ``np.asarray(PIL.Image.open(f))``
    gives, for every format. NIfTI files are read as stored, first axis = rows (a ``(H, W)`` array
    saved with nibabel comes back unchanged); the affine is not applied.

    Images come out as float32 in [0, 1], bright = dense (bone), whatever the source:
        - 8-bit data (8-bit PNG/JPEG, 8-bit DICOM without a VOI transform) is divided by 255;
        - anything else (16-bit PNG, 12/16-bit or rescaled DICOM, NIfTI, float) is scaled
          robustly: the ``percentiles`` of the image map to 0 and 1, values outside are clipped
          (high-bit-depth radiographs use a device-dependent part of their range and carry
          outliers such as collimator edges and burned-in text); float data already within
          [0, 1] is kept as it is;
        - DICOM: RescaleSlope/Intercept are applied (by ``PydicomReader``), then the VOI LUT or
          window of the header (first one) if ``apply_voi_lut``; MONOCHROME1 images are inverted
          after scaling (``1 - x``) so that they look like MONOCHROME2.

    Masks (``as_mask=True``) come out as uint8 label maps with the values stored in the file
    (no scaling: a 0/255 mask stays 0/255); non-integer values or values outside 0..255 are an error.

    Args:
        as_mask: load a label map instead of a radiograph.
        percentiles: lower and upper percentile for the robust scaling of high-bit-depth images.
        apply_voi_lut: apply the DICOM VOI LUT / window from the header.
        min_size: the smallest accepted side in pixels.
        max_pixels: the most pixels accepted. PNG/JPEG/BMP/TIFF, DICOM and NIfTI files are checked
            on their header, before any pixel is decoded; ITK formats after decoding. PIL refuses
            images above twice ``PIL.Image.MAX_IMAGE_PIXELS`` (179 million) whatever this says.

    Raises:
        ChestXRayReadError: missing, unreadable or truncated file, unsupported format, colour DICOM,
            an image with no content (zero size, every pixel equal, NaN/inf), a volume or multi-frame
            file (TIFF, APNG, DICOM) with several slices or frames (single-slice volumes are squeezed
            to 2D), a side shorter than ``min_size`` or more pixels than ``max_pixels``.
    """

    def __init__(
        self,
        as_mask: bool = False,
        percentiles: Sequence[float] = (0.5, 99.5),
        apply_voi_lut: bool = True,
        min_size: int = MIN_SIZE,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        lower, upper = percentiles
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {tuple(percentiles)}")
        if min_size < 1 or max_pixels < min_size**2:
            raise ValueError(f"need 1 <= min_size and min_size ** 2 <= max_pixels, got {min_size} and {max_pixels}")
        self.as_mask = as_mask
        self.percentiles = (float(lower), float(upper))
        self.apply_voi_lut = apply_voi_lut
        self.min_size = int(min_size)
        self.max_pixels = int(max_pixels)
        with warnings.catch_warnings():
            # LoadImage registers every default reader, among them the GPU DICOM decoder, which warns
            # that it falls back to pydicom on machines without nvImageCodec; it is never used here.
            warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
            self.load = LoadImage(image_only=True, ensure_channel_first=False, dtype=None)
        # reverse_indexing=False / swap_ij=False keep numpy (row, column) order; MONAI's defaults
        # transpose 2D images to the (x, y) order of ITK.
        self.pil_reader = PILReader(
            converter=label_map_from_pil if as_mask else grey_from_pil, reverse_indexing=False
        )
        self.dicom_reader = PydicomReader(swap_ij=False)
        self.nifti_reader = NibabelReader()

    def __call__(self, filename: PathLike) -> MetaTensor:
        """Load ``filename``; returns a ``[1, H, W]`` float32 image in [0, 1] or uint8 mask."""
        if not isinstance(filename, (str, os.PathLike)):
            raise ChestXRayReadError(
                repr(filename), f"expected a file path, got a {type(filename).__name__}", "give the image's path"
            )
        path = Path(filename).expanduser()
        if not path.is_file():
            problem = "it is a directory, not an image file" if path.is_dir() else "the file does not exist"
            raise ChestXRayReadError(
                path,
                problem,
                "check the path; if it comes from a datalist, check that item's entry and the `dataset_dir` "
                "the datalist's relative paths are resolved against",
            )
        file_format, reader = self._reader_for(path)
        header = self._dicom_header(path) if reader is self.dicom_reader else None
        try:
            with warnings.catch_warnings():
                # Projection radiographs (CR/DX) have no ImageOrientation/PositionPatient; the identity
                # affine PydicomReader falls back to is right for them.
                warnings.filterwarnings("ignore", message="PydicomReader: ImageOrientationPatient")
                # PIL gives read-only arrays; every path below copies the data before anyone can write to it.
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                # max_pixels, checked below before decoding, is the limit; PIL's warning would only repeat it
                warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
                stored_shape = self._stored_shape(path, reader, header)
                if stored_shape is not None:
                    self._check_shape(stored_shape, path)
                image = self.load(path, reader=reader)
        except ChestXRayReadError:
            raise
        except Image.DecompressionBombError as err:  # PIL's hard limit, when max_pixels is set above it
            raise ChestXRayReadError(path, f"PIL refuses to decode it ({err})", TOO_LARGE_FIX) from err
        except Exception as err:  # readers raise anything from OSError to struct.error on a bad file
            raise ChestXRayReadError(
                path,
                f"it is not a readable {file_format} file (corrupt, truncated or another format; "
                f"{type(err).__name__}: {err})",
                "re-export or re-download the file, or drop it from the datalist",
            ) from err
        image = self._as_2d(image, path)
        image = EnsureChannelFirst(channel_dim="no_channel")(image)
        if self.as_mask:
            return self._label_map(image, path)
        return self._unit_range(image, path, header)

    def _reader_for(self, path: Path) -> tuple[str, ImageReader]:
        suffix = _suffix(path)
        if suffix in PIL_SUFFIXES:
            return suffix.lstrip(".").upper(), self.pil_reader
        if suffix in NIFTI_SUFFIXES:
            return "NIfTI", self.nifti_reader
        # DICOM files are often named by their UID ("1.2.840.113619.2.55.3.12345"): look at the preamble.
        if suffix in DICOM_SUFFIXES or pydicom.misc.is_dicom(path):
            return "DICOM", self.dicom_reader
        if suffix in ITK_SUFFIXES:
            if not HAS_ITK:
                raise ChestXRayReadError(
                    path, f"{suffix} files need ITK, which is not installed", "pip install itk, or convert it to NIfTI"
                )
            from monai.data import ITKReader  # imported here: itk is an optional extra

            return suffix.lstrip(".").upper(), ITKReader(reverse_indexing=True)  # True = numpy (row, column) order
        supported = PIL_SUFFIXES + DICOM_SUFFIXES[:-1] + NIFTI_SUFFIXES + (ITK_SUFFIXES if HAS_ITK else ())
        raise ChestXRayReadError(
            path,
            f"the format '{suffix}' is not supported",
            f"convert it to one of {', '.join(supported)} (or a DICOM file without extension)",
        )

    def _dicom_header(self, path: Path) -> pydicom.Dataset:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as err:  # InvalidDicomError, EOFError, struct.error ...
            raise ChestXRayReadError(
                path,
                f"it is not a readable DICOM file ({type(err).__name__}: {err})",
                "re-export or re-download the file, or drop it from the datalist",
            ) from err
        samples = int(header.get("SamplesPerPixel", 1))
        if samples != 1:
            raise ChestXRayReadError(
                path,
                f"it is a colour DICOM ({header.get('PhotometricInterpretation', '?')}, {samples} samples per "
                "pixel), not a grayscale radiograph",
                "convert it to a MONOCHROME2 DICOM or a grayscale PNG",
            )
        return header

    def _stored_shape(self, path: Path, reader: ImageReader, header: pydicom.Dataset | None) -> tuple[int, ...] | None:
        """The shape of what the file holds, read from its header without decoding a pixel (None for ITK)."""
        if reader is self.pil_reader:
            with Image.open(path) as image:
                # PILReader would silently read the first frame only. MPO JPEGs from cameras are the
                # exception: the frames after the first are previews of the same picture.
                frames = 1 if image.format == "MPO" else getattr(image, "n_frames", 1)
                return (image.height, image.width, frames)
        if header is not None:
            return (int(header.Rows), int(header.Columns), int(header.get("NumberOfFrames") or 1))
        if reader is self.nifti_reader:
            return tuple(nib.load(path).shape)
        return None

    def _check_shape(self, shape: tuple[int, ...], path: Path) -> None:
        # Single-slice volumes (NIfTI (H, W, 1), ITK (H, W, 1)) are 2D images stored in 3D.
        while len(shape) > 2 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != 2:
            raise ChestXRayReadError(
                path,
                f"it holds an array of shape {shape}, not a 2D radiograph (a volume or multi-frame file with "
                "several slices or frames)",
                "save the frontal 2D image as its own file (e.g. one slice of the volume) and list that file",
            )
        if 0 in shape:
            raise ChestXRayReadError(path, f"the image is empty (shape {shape})", "re-export the file")
        if math.prod(shape) > self.max_pixels:
            raise ChestXRayReadError(
                path,
                f"it has {shape[0]} x {shape[1]} = {math.prod(shape):,} pixels, more than max_pixels="
                f"{self.max_pixels:,} (too large for a radiograph; it may be a decompression bomb)",
                TOO_LARGE_FIX,
            )
        if min(shape) < self.min_size:
            raise ChestXRayReadError(
                path,
                f"it is {shape[0]} x {shape[1]} pixels, smaller than min_size={self.min_size} on a side: an icon or "
                "a thumbnail, not a radiograph",
                "list the full-size image, or lower min_size",
            )

    def _as_2d(self, image: MetaTensor, path: Path) -> MetaTensor:
        while image.ndim > 2 and image.shape[-1] == 1:
            image = image[..., 0]
        self._check_shape(tuple(image.shape), path)  # again on what was decoded: ITK files have no header check
        return image

    def _label_map(self, mask: MetaTensor, path: Path) -> MetaTensor:
        if mask.dtype == torch.uint8:
            return mask.clone()
        values = mask.to(torch.float64)
        if not bool(torch.all(values == values.round())) or values.min() < 0 or values.max() > 255:
            raise ChestXRayReadError(
                path,
                f"it is not a label map (values from {values.min().item():g} to {values.max().item():g}, "
                "integers 0..255 expected)",
                "save the mask with integer labels, e.g. 0 = background and 1 or 255 = foreground",
            )
        return mask.to(torch.uint8)

    def _unit_range(self, image: MetaTensor, path: Path, header: pydicom.Dataset | None) -> MetaTensor:
        if header is not None and self.apply_voi_lut:
            try:
                image = MetaTensor(apply_voi_lut(image.numpy(), header), meta=image.meta)
            except Exception as err:  # malformed WindowCenter/Width or LUT descriptor
                raise ChestXRayReadError(
                    path,
                    f"its VOI LUT / window cannot be applied ({type(err).__name__}: {err})",
                    "fix the header, or load without it (apply_voi_lut=False)",
                ) from err
        if image.is_floating_point() and not bool(torch.isfinite(image).all()):
            raise ChestXRayReadError(path, "the image contains NaN or infinite values", "re-export the file")
        low, high = image.min().item(), image.max().item()
        if low == high:
            raise ChestXRayReadError(
                path,
                f"the image has no content (every pixel is {low:g})",
                "re-export the file from the source system, or drop it from the datalist",
            )
        if image.dtype == torch.uint8:
            image = image.to(torch.float32) / 255.0
        elif not (image.is_floating_point() and low >= 0.0 and high <= 1.0):
            image = image.to(torch.float32)
            lower, upper = percentile(image, self.percentiles).tolist()
            if upper <= lower:  # nearly constant: more than the tails share one value
                lower, upper = low, high
            image = ScaleIntensityRange(lower, upper, 0.0, 1.0, clip=True, dtype=torch.float32)(image)
        image = image.to(torch.float32)
        if header is not None and header.get("PhotometricInterpretation") == "MONOCHROME1":
            image = 1.0 - image
        return image


class LoadChestXRayd(MapTransform):
    """Dictionary version of :class:`LoadChestXRay` for datalist items.

    Args:
        keys: keys of radiograph paths, loaded as float32 ``[1, H, W]`` in [0, 1].
        mask_keys: keys of mask paths (e.g. ``lung_mask``, ``lesion_mask``), loaded as uint8
            ``[1, H, W]`` label maps; in addition to ``keys``.
        percentiles, apply_voi_lut, min_size, max_pixels: see :class:`LoadChestXRay` (the size limits
            apply to masks too).
        allow_missing_keys: skip keys that an item lacks instead of raising an error.

    Errors are :class:`ChestXRayReadError` naming the file, the item (study id or image path)
    and the key; an item without one of ``keys`` (and ``mask_keys``, unless ``allow_missing_keys``)
    is a ``DatalistError`` naming the item.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_keys: KeysCollection = (),
        percentiles: Sequence[float] = (0.5, 99.5),
        apply_voi_lut: bool = True,
        min_size: int = MIN_SIZE,
        max_pixels: int = MAX_PIXELS,
        allow_missing_keys: bool = False,
    ) -> None:
        image_keys, self.mask_keys = ensure_tuple(keys), ensure_tuple(mask_keys)
        shared = set(image_keys) & set(self.mask_keys)
        if shared:
            raise ValueError(f"keys {sorted(shared)} are in both keys and mask_keys; list each key once")
        super().__init__(image_keys + self.mask_keys, allow_missing_keys)
        limits = {"min_size": min_size, "max_pixels": max_pixels}
        self.load_image = LoadChestXRay(percentiles=percentiles, apply_voi_lut=apply_voi_lut, **limits)
        self.load_mask = LoadChestXRay(as_mask=True, **limits)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        check_item_keys(self, d)
        for key in self.key_iterator(d):
            load = self.load_mask if key in self.mask_keys else self.load_image
            try:
                d[key] = load(d[key])
            except ChestXRayReadError as err:
                raise ChestXRayReadError(
                    err.filename, f"{err.problem} (item {describe_item(data)}, key '{key}')", err.fix
                ) from err
        return d
