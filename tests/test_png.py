"""The chart images' lossless re-encoding (ui/_png.py) on PNGs made here: the same
pixels, fewer bytes, and anything it cannot read left as it came."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from analyzer_widgets.ui._png import _chunk, compact_png, pixels

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(image: np.ndarray, filters: list[int], colour: int = 6, extra: bytes = b"") -> bytes:
    """A PNG of ``image`` (height x width x channels) with the given row filters (0 or 2),
    written the way Chromium does: filtered rows, fast deflate."""
    height, width, channels = image.shape
    flat = image.reshape(height, width * channels).astype(np.int16)
    rows = []
    for y, kind in enumerate(filters):
        line = flat[y] - (flat[y - 1] if kind == 2 and y > 0 else 0)
        rows.append(bytes([kind]) + (line & 255).astype(np.uint8).tobytes())
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + extra + _chunk(b"IDAT", zlib.compress(b"".join(rows), 1))
            + _chunk(b"IEND", b""))


def _chart(height: int = 120, width: int = 200, alpha: bool = True) -> np.ndarray:
    """Something like a chart: a white ground, grid lines, a curve."""
    image = np.full((height, width, 4 if alpha else 3), 255, dtype=np.uint8)
    image[::20, :, :3] = 220
    xs = np.arange(width)
    image[(height / 2 + 40 * np.sin(xs / 15)).astype(int), xs, :3] = (31, 119, 180)
    return image


@pytest.mark.parametrize("filters", ["up", "none", "mixed"])
def test_the_same_pixels_in_fewer_bytes(filters: str) -> None:
    image = _chart()
    kinds = {"up": [2] * 120, "none": [0] * 120, "mixed": [0, 2] * 60}[filters]
    original = _png(image, kinds, extra=_chunk(b"pHYs", struct.pack(">IIB", 3780, 3780, 1)))
    smaller = compact_png(original)
    assert len(smaller) < len(original)
    decoded = pixels(smaller)
    assert decoded is not None and decoded.shape == (120, 200, 3)  # opaque: the alpha channel dropped
    assert np.array_equal(decoded, image[:, :, :3])
    assert b"pHYs" in smaller  # the pixel size is kept


def test_a_translucent_image_keeps_its_alpha() -> None:
    image = _chart()
    image[:10, :10, 3] = 128
    smaller = compact_png(_png(image, [2] * 120))
    decoded = pixels(smaller)
    assert decoded is not None and np.array_equal(decoded, image)


def test_what_it_cannot_read_is_left_as_it_came() -> None:
    paeth = _png(_chart(), [2] * 120)
    rows = zlib.decompress(b"".join(d for k, d in _chunks_of(paeth) if k == b"IDAT"))
    other = bytearray(rows)
    other[0] = 4  # the Paeth filter on the first row: not one this reads
    header = next(d for k, d in _chunks_of(paeth) if k == b"IHDR")
    weird = SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(other))) + _chunk(b"IEND", b"")
    assert compact_png(weird) == weird
    assert compact_png(b"not a png") == b"not a png"
    sixteen = SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 16, 2, 0, 0, 0)) + _chunk(b"IEND", b"")
    assert compact_png(sixteen) == sixteen


def _chunks_of(png: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        out.append((png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out
