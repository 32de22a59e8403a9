"""Image preprocessing equals transformers' Qwen2VLImageProcessor (PIL backend) bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from transformers import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from megatron_vl.data.images import ImageSettings, load_image, num_vision_tokens, patchify, resize_image, smart_resize

DEFAULT = ImageSettings()
SMALL = ImageSettings(min_pixels=28 * 28 * 8, max_pixels=28 * 28 * 40)


@pytest.fixture(scope="module")
def processors():
    return {
        settings: Qwen2VLImageProcessorPil(min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
        for settings in (DEFAULT, SMALL)
    }


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: resampling differences would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    return np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)


def assert_matches_processor(data: bytes, settings: ImageSettings, processors) -> None:
    reference = processors[settings](images=[ImageOps.exif_transpose(Image.open(io.BytesIO(data)))])
    patches, grid = patchify(resize_image(load_image(data), settings), settings)
    assert [list(grid)] == reference["image_grid_thw"].tolist()
    assert patches.dtype == np.float32
    np.testing.assert_array_equal(patches, reference["pixel_values"])


@pytest.mark.parametrize("settings", [DEFAULT, SMALL], ids=["default", "small"])
@pytest.mark.parametrize(
    "height, width",
    [(1, 1), (3, 5), (27, 29), (56, 56), (57, 91), (224, 160), (479, 641), (28, 5572), (5600, 28), (37, 1000)],
)
def test_sizes_match_processor(height, width, settings, processors):
    assert_matches_processor(encoded(Image.fromarray(photo(height, width)), "PNG"), settings, processors)


def test_huge_image_matches_processor(processors):
    assert_matches_processor(encoded(Image.fromarray(photo(2000, 3000)), "JPEG", quality=90), DEFAULT, processors)


def _modes() -> dict[str, bytes]:
    rgb = Image.fromarray(photo(150, 230, seed=1))
    alpha = Image.fromarray(np.random.default_rng(2).integers(0, 256, (150, 230), dtype=np.uint8))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    palette = rgb.quantize(colors=32)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 3
    cmyk = rgb.convert("CMYK")
    deep = Image.fromarray((photo(150, 230, seed=3)[..., 0].astype(np.uint16) * 257))
    return {
        "L": encoded(rgb.convert("L"), "PNG"),
        "LA": encoded(rgba.convert("LA"), "PNG"),
        "RGBA": encoded(rgba, "PNG"),
        "P": encoded(palette, "PNG"),
        "P-transparent": encoded(transparent_palette, "PNG", transparency=3),
        "CMYK-jpeg": encoded(cmyk, "JPEG", quality=92),
        "I;16": encoded(deep, "PNG"),
        "1": encoded(rgb.convert("1"), "PNG"),
        "RGB-jpeg": encoded(rgb, "JPEG", quality=85),
    }


@pytest.mark.parametrize("mode", list(_modes()))
def test_modes_match_processor(mode, processors):
    data = _modes()[mode]
    if mode.startswith("P"):
        assert Image.open(io.BytesIO(data)).mode == "P"
    assert_matches_processor(data, DEFAULT, processors)


def test_transparency_composites_on_white():
    rgba = Image.new("RGBA", (60, 40), (10, 20, 30, 0))
    assert load_image(encoded(rgba, "PNG")).getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_rotation_is_applied(orientation, processors):
    pixels = photo(90, 150, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(Image.fromarray(pixels), "JPEG", quality=95, exif=exif)
    loaded = load_image(data)
    assert loaded.size == ((150, 90) if orientation < 5 else (90, 150))
    assert_matches_processor(data, DEFAULT, processors)


def test_smart_resize_equals_processor_on_many_sizes():
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 6000, size=(3000, 2))] + [(1, 200), (7, 1400)]
    for settings in (DEFAULT, SMALL, ImageSettings(min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28)):
        for height, width in sizes:
            if max(height, width) / min(height, width) > 200:
                continue
            expected = hf_smart_resize(height, width, 28, settings.min_pixels, settings.max_pixels)
            assert smart_resize(height, width, settings) == expected, (height, width, settings)


def test_aspect_ratio_past_200_is_a_clear_error():
    assert smart_resize(28, 5600, DEFAULT)[1] % 28 == 0
    with pytest.raises(ValueError, match="aspect ratio 200.0.*limit 200"):
        smart_resize(28, 5601, DEFAULT)
    with pytest.raises(ValueError, match="aspect ratio"):
        resize_image(Image.new("RGB", (3000, 10)), DEFAULT)


def test_num_vision_tokens_counts_merged_patches(processors):
    processor = processors[DEFAULT]
    for height, width in [(56, 56), (300, 417), (1080, 1920), (5, 700)]:
        resized = smart_resize(height, width, DEFAULT)
        expected = processor.get_number_of_image_patches(height, width) // 4
        assert num_vision_tokens(*resized, DEFAULT) == expected
    with pytest.raises(ValueError, match="multiple of 28"):
        num_vision_tokens(30, 56, DEFAULT)


def test_patchify_rejects_wrong_input():
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        patchify(np.zeros((56, 56, 3), dtype=np.float32), DEFAULT)
    with pytest.raises(ValueError, match="multiple of 28"):
        patchify(np.zeros((56, 50, 3), dtype=np.uint8), DEFAULT)


def test_settings_validate_themselves():
    assert DEFAULT.factor == 28 and DEFAULT.patch_dim == 1176
    assert ImageSettings.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="min_pixels=5000 exceeds max_pixels=4000"):
        ImageSettings(min_pixels=5000, max_pixels=4000)
    with pytest.raises(ValueError, match="positive integer"):
        ImageSettings(patch_size=0)
    with pytest.raises(ValueError, match="unknown image settings"):
        ImageSettings.from_dict({"max_pixel": 5})
