"""Smaller PNGs for the notebook: the chart images kaleido draws, re-encoded losslessly.

Chromium writes each row with the "up" filter and fast deflate, as 8-bit RGBA even where
every pixel is opaque. Charts compress better without a filter (long runs of one colour
along a row) and at deflate level 9, and an opaque image needs no alpha channel: together
about 40% fewer bytes (docs/design-notes.md, "Charts that travel"), which is what keeps an
executed notebook with the live chart under its 6 MB. Pixels are unchanged. A PNG in any
other form (another bit depth or colour type, interlaced, a row filter other than none or
up) is returned as it came.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_RGBA, _RGB = 6, 2  # PNG colour types
_NONE, _UP = 0, 2  # PNG row filters
#: the ancillary chunks copied over: colour space, pixel size, text; none that depends on
#: the colour type, which may change (sBIT, bKGD, tRNS are dropped)
_KEPT = (b"sRGB", b"gAMA", b"cHRM", b"iCCP", b"pHYs", b"tEXt", b"zTXt", b"iTXt", b"tIME")


def _chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = len(_SIGNATURE)
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        yield png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        pos += 12 + length


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pixels(png: bytes) -> np.ndarray | None:
    """The 8-bit RGB or RGBA pixels of a non-interlaced ``png`` whose rows are filtered with
    none or up (an array of height x width x channels); None for any other PNG."""
    if not png.startswith(_SIGNATURE):
        return None
    chunks = list(_chunks(png))
    if not chunks or chunks[0][0] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if depth != 8 or colour not in (_RGB, _RGBA) or interlace:
        return None
    channels = 4 if colour == _RGBA else 3
    try:
        raw = zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    except zlib.error:
        return None
    if len(raw) != height * (width * channels + 1):
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width * channels + 1)
    filters, data = rows[:, 0], rows[:, 1:]
    if not np.isin(filters, (_NONE, _UP)).all():
        return None
    # "up" adds the row above (already decoded) modulo 256: a running sum down each column
    # of the rows since the last unfiltered one
    out = np.empty_like(data)
    above = np.zeros(data.shape[1], dtype=np.uint8)
    for y in range(height):
        above = data[y] + above if filters[y] == _UP else data[y].copy()
        out[y] = above
    return out.reshape(height, width, channels)


def compact_png(png: bytes) -> bytes:
    """``png`` losslessly re-encoded smaller (see the module's docstring), or as it came
    where it cannot be read here or would not get smaller."""
    image = pixels(png)
    if image is None:
        return png
    height, width, channels = image.shape
    if channels == 4 and (image[:, :, 3] == 255).all():
        image, channels = image[:, :, :3], 3
    rows = np.zeros((height, width * channels + 1), dtype=np.uint8)  # filter byte 0: none
    rows[:, 1:] = image.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _RGBA if channels == 4 else _RGB, 0, 0, 0)
    kept = b"".join(_chunk(kind, data) for kind, data in _chunks(png) if kind in _KEPT)
    smaller = (_SIGNATURE + _chunk(b"IHDR", header) + kept
               + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + _chunk(b"IEND", b""))
    return smaller if len(smaller) < len(png) else png
