"""Image preprocessing for the Qwen2.5-ViT, equal to transformers' ``Qwen2VLImageProcessor``.

The pipeline is split where the data-prep / training boundary lies:

    load_image(file) -> resize_image(...)   offline, in ``data_prep ingest`` (the result is stored as PNG)
    patchify(pixels)                        in the training loader, on the decoded PNG

``patchify(resize_image(load_image(f)))`` gives bit for bit the ``pixel_values`` and
``image_grid_thw`` of ``Qwen2VLImageProcessorPil()(images=[the image of f])``. It is faster than the
processor because the rescale-then-normalize arithmetic is looked up per byte value (the processor
does it in float64 over the whole image) and the patch shuffle moves bytes, not floats.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os

import numpy as np
from PIL import Image, ImageOps

from megatron_vl.config.validation import positive_int

# CLIP's normalization constants, which Qwen2-VL's processor uses.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_ASPECT_RATIO = 200


class PatchGeometry:
    """What image and video settings share: the patch geometry (``patch_size``, ``temporal_patch_size``,
    ``merge_size`` fields of the dataclass) and reading / writing the settings as a dict."""

    SETTINGS_NAME = "image"

    @property
    def factor(self) -> int:
        """Resized sides are multiples of this: one merged token covers ``factor x factor`` pixels."""
        return self.patch_size * self.merge_size

    @property
    def patch_dim(self) -> int:
        """Values in one flattened patch: channels x temporal x patch x patch (1176 by default)."""
        return 3 * self.temporal_patch_size * self.patch_size * self.patch_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown {cls.SETTINGS_NAME} settings {sorted(unknown)}; expected a subset of {cls().to_dict()}"
            )
        return cls(**values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageSettings(PatchGeometry):
    """How images are resized and cut into patches. Defaults are ``Qwen2VLImageProcessor``'s."""

    min_pixels: int = 56 * 56
    """Images with fewer pixels (after rounding to ``factor``) are scaled up to at least this many."""
    max_pixels: int = 28 * 28 * 1280
    """Images with more pixels are scaled down to at most this many."""
    patch_size: int = 14
    """Side of one ViT patch in pixels."""
    temporal_patch_size: int = 2
    """Frames per patch; a still image is repeated this many times."""
    merge_size: int = 2
    """The projector merges ``merge_size x merge_size`` patches into one LLM token."""

    def __post_init__(self) -> None:
        for name in ("min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size"):
            positive_int("ImageSettings", name, getattr(self, name))
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"ImageSettings.min_pixels={self.min_pixels} exceeds max_pixels={self.max_pixels}; "
                "lower min_pixels or raise max_pixels"
            )
        if self.max_pixels < self.factor * self.factor:
            raise ValueError(
                f"ImageSettings.max_pixels={self.max_pixels} is below one merged patch "
                f"({self.factor}x{self.factor} = {self.factor * self.factor} pixels); raise max_pixels"
            )



def smart_resize(height: int, width: int, settings: ImageSettings) -> tuple[int, int]:
    """The (height, width) the processor resizes to: sides multiples of ``factor``, pixels within
    [min_pixels, max_pixels], aspect ratio kept as closely as rounding allows."""
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width} is empty; every side needs at least one pixel")
    aspect = max(height, width) / min(height, width)
    if aspect > MAX_ASPECT_RATIO:
        raise ValueError(
            f"image of {height}x{width} pixels has aspect ratio {aspect:.1f}, above the limit "
            f"{MAX_ASPECT_RATIO} of the vision encoder; crop or split the image"
        )
    factor = settings.factor
    new_height = round(height / factor) * factor
    new_width = round(width / factor) * factor
    if new_height * new_width > settings.max_pixels:
        scale = math.sqrt(height * width / settings.max_pixels)
        new_height = max(factor, math.floor(height / scale / factor) * factor)
        new_width = max(factor, math.floor(width / scale / factor) * factor)
    elif new_height * new_width < settings.min_pixels:
        scale = math.sqrt(settings.min_pixels / (height * width))
        new_height = math.ceil(height * scale / factor) * factor
        new_width = math.ceil(width * scale / factor) * factor
    return new_height, new_width


def num_vision_tokens(height: int, width: int, settings: ImageSettings) -> int:
    """LLM tokens (``<|image_pad|>`` placeholders) of an image already resized to height x width."""
    factor = settings.factor
    if height % factor or width % factor or height < factor or width < factor:
        raise ValueError(
            f"resized image size {height}x{width} is not a positive multiple of {factor}; "
            "resize it with resize_image / smart_resize first"
        )
    return (height // factor) * (width // factor)


def load_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Decode an image file (path or bytes) into the RGB picture the processor sees.

    EXIF orientation is applied (as transformers' ``load_image`` does). Transparent images (RGBA,
    LA, palette with a transparent colour) are composited onto white, as the processor's own RGB
    conversion does; grayscale, palette, CMYK and 16-bit images go through PIL's RGB conversion.
    Raises whatever PIL raises for a missing or undecodable file.
    """
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.load()  # decode now, so a truncated file fails here and not in a later step
    # In place, and no conversion of what is RGB already: copies of a 12 MP image cost 40 ms.
    ImageOps.exif_transpose(image, in_place=True)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_image(image: Image.Image, settings: ImageSettings) -> np.ndarray:
    """Resize an RGB image to its smart size with bicubic filtering: uint8 [H, W, 3]."""
    if image.mode != "RGB":
        raise ValueError(f"resize_image expects an RGB image (see load_image), got mode {image.mode}")
    height, width = smart_resize(image.height, image.width, settings)
    if (height, width) != (image.height, image.width):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image)


def _normalization_table() -> np.ndarray:
    """float32 [3, 256]: what the processor's ``(x / 255 - mean) / std`` gives for each byte value.

    The processor rescales in float64, casts to float32, then normalizes in float32; repeating
    exactly those steps per value makes the lookup bit-identical to it.
    """
    values = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)[:, None]
    std = np.asarray(IMAGE_STD, dtype=np.float32)[:, None]
    return (values[None, :] - mean) / std


_NORMALIZED = _normalization_table()


def patchify(pixels: np.ndarray, settings: ImageSettings) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Cut a resized uint8 [H, W, 3] image into normalized ViT patches.

    Returns float32 [t*h*w, 3 * temporal * patch * patch] and the grid (t, h, w) in patches,
    with patches ordered merge-group by merge-group (each ``merge x merge`` block contiguous) and
    each patch laid out (channel, time, row, column), as the processor does.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"patchify expects uint8 [H, W, 3] pixels, got {pixels.dtype} {list(pixels.shape)}")
    height, width, _ = pixels.shape
    num_vision_tokens(height, width, settings)
    patch, merge, temporal = settings.patch_size, settings.merge_size, settings.temporal_patch_size
    grid_h, grid_w = height // patch, width // patch
    # Rows split as (merged row, row in merge group, pixel row in patch); same for columns.
    blocks = pixels.reshape(grid_h // merge, merge, patch, grid_w // merge, merge, patch, 3)
    blocks = blocks.transpose(0, 3, 1, 4, 6, 2, 5).reshape(grid_h * grid_w, 3, patch * patch)
    patches = np.empty((grid_h * grid_w, 3, temporal, patch * patch), dtype=np.float32)
    for channel in range(3):
        normalized = _NORMALIZED[channel][blocks[:, channel]]
        # A still image fills every temporal slot of the patch with the same frame.
        patches[:, channel] = normalized[:, None, :]
    return patches.reshape(grid_h * grid_w, settings.patch_dim), (1, grid_h, grid_w)
