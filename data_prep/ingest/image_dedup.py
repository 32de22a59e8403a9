"""Exact (sha256 of the file) and near (perceptual hash) duplicate detection of images.

The perceptual hash is the DCT hash: the image shrunk to 32x32 grey levels, its 2-D DCT, and one
bit per low-frequency coefficient (the top-left 8x8) telling whether it is above their median.
Re-encoding, rescaling and small edits move few bits; different pictures differ in about half.
Lookups stay fast with many hashes by splitting the 64 bits into ``distance + 1`` bands: two hashes
within ``distance`` bits agree exactly on at least one band, so only those candidates are compared.
"""

from __future__ import annotations

import collections

import numpy as np
from PIL import Image

from megatron_vl.config.validation import one_of

HASH_SIZE = 8
THUMBNAIL = 32
HASH_BITS = HASH_SIZE * HASH_SIZE


def _dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``D @ x`` is the DCT of the column vector x."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    matrix = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2 / size)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix(THUMBNAIL)[:HASH_SIZE]


def perceptual_hash(pixels: np.ndarray) -> int:
    """64-bit DCT hash of a uint8 [H, W, 3] image."""
    grey = Image.fromarray(pixels).convert("L").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    low = _DCT @ np.asarray(grey, dtype=np.float64) @ _DCT.T
    bits = (low > np.median(low)).reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


class ImageDeduplicator:
    """Remembers the images of accepted documents and tells whether a new document repeats them."""

    def __init__(self, near_dup_distance: int | None) -> None:
        """``near_dup_distance``: largest Hamming distance of two perceptual hashes counted as the
        same picture, or None to detect exact (byte-identical) duplicates only."""
        if near_dup_distance is not None:
            one_of("--near-dup", "DISTANCE", near_dup_distance, range(HASH_BITS // 2))
        self.near_dup_distance = near_dup_distance
        self._sha256: dict[str, str] = {}
        bands = (near_dup_distance or 0) + 1
        edges = [round(HASH_BITS * band / bands) for band in range(bands + 1)]
        self._band_masks = [((1 << (end - start)) - 1) << start for start, end in zip(edges[:-1], edges[1:])]
        self._bands: list[dict[int, list[tuple[int, str]]]] = [collections.defaultdict(list) for _ in self._band_masks]

    def _near_match(self, phash: int) -> str | None:
        for mask, band in zip(self._band_masks, self._bands):
            for other, key in band.get(phash & mask, ()):
                if (phash ^ other).bit_count() <= self.near_dup_distance:
                    return key
        return None

    def find(self, sha256s: list[str], phashes: list[int]) -> tuple[str, str] | None:
        """``("exact", key)`` if every image was seen byte for byte, ``("near", key)`` if every one
        was seen at least nearly, else None (also for a document without images); ``key`` names the
        document that first had the first image."""
        if not sha256s:
            return None
        if all(sha in self._sha256 for sha in sha256s):
            return "exact", self._sha256[sha256s[0]]
        if self.near_dup_distance is None:
            return None
        matches = [self._sha256.get(sha) or self._near_match(phash) for sha, phash in zip(sha256s, phashes)]
        return ("near", matches[0]) if all(matches) else None

    def add(self, key: str, sha256s: list[str], phashes: list[int]) -> None:
        """Remember the images of the accepted document ``key``."""
        for sha in sha256s:
            self._sha256.setdefault(sha, key)
        if self.near_dup_distance is not None:
            for phash in phashes:
                for mask, band in zip(self._band_masks, self._bands):
                    band[phash & mask].append((phash, key))
