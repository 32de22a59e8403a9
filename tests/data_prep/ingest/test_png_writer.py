"""The fast PNG encoder writes PNGs that decode to exactly the pixels given."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from data_prep.ingest.png_writer import encode_png


@pytest.mark.parametrize("height, width", [(1, 1), (28, 56), (113, 57)])
@pytest.mark.parametrize("compression", [0, 1, 9])
def test_decodes_to_the_same_pixels(height, width, compression):
    pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[height // 2:] = pixels[: height - height // 2]  # repeated rows: the Up filter gives zeros
    image = Image.open(io.BytesIO(encode_png(pixels, compression)))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (width, height))
    np.testing.assert_array_equal(np.asarray(image), pixels)


def test_compresses_smooth_images():
    gradient = np.broadcast_to(np.arange(200, dtype=np.uint8)[None, :, None], (150, 200, 3)).copy()
    assert len(encode_png(gradient)) < gradient.nbytes / 20
