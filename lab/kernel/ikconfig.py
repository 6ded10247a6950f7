"""The config a kernel image carries inside itself (CONFIG_IKCONFIG), found as
scripts/extract-ikconfig finds it.

A kernel built with CONFIG_IKCONFIG holds its .config, gzipped, between the
markers ``IKCFG_ST`` and ``IKCFG_ED`` in the kernel proper.  In a bzImage the
kernel proper is itself compressed, so like extract-ikconfig we try the image
as it is, then every place where a compressed stream starts (gzip, xz, lzma,
bzip2, zstd), decompress from there and look for the markers in the result.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from lab import proc

START, END = b"IKCFG_ST", b"IKCFG_ED"
# Decompressed kernels are tens of MB; stop reading a stream there.
_MAX_OUT = 256 << 20


def _gunzip(data: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return d.decompress(data, _MAX_OUT)


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data, _MAX_OUT)


def _unlzma(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data, _MAX_OUT)


def _bunzip2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data, _MAX_OUT)


def _unzstd(data: bytes) -> bytes:
    # No zstd in Python 3.11's standard library: the zstd tool (a build dependency).
    if shutil.which("zstd") is None:
        return b""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lab-ikconfig-") as tmp:
        src = Path(tmp) / "in.zst"
        src.write_bytes(data)
        out = Path(tmp) / "out"
        res = proc.run(["zstd", "-d", "-q", "-f", str(src), "-o", str(out)],
                       phase="ikconfig", timeout=120, check=False)
        return out.read_bytes() if res.returncode == 0 or out.exists() else b""


# Magic numbers, as in scripts/extract-ikconfig (and extract-vmlinux).
_FORMATS: tuple[tuple[bytes, Callable[[bytes], bytes]], ...] = (
    (b"\x1f\x8b\x08", _gunzip),
    (b"\xfd7zXZ\x00", _unxz),
    (b"\x5d\x00\x00\x00", _unlzma),
    (b"BZh", _bunzip2),
    (b"\x28\xb5\x2f\xfd", _unzstd),
)


def _offsets(data: bytes, magic: bytes) -> Iterator[int]:
    at = data.find(magic)
    while at != -1:
        yield at
        at = data.find(magic, at + 1)


def _between_markers(data: bytes) -> str | None:
    start = data.find(START)
    if start == -1:
        return None
    end = data.find(END, start)
    if end == -1:
        return None
    try:
        return gzip.decompress(data[start + len(START):end]).decode("utf-8", "replace")
    except (OSError, EOFError, zlib.error):
        return None


def extract(image: Path) -> str | None:
    """The .config embedded in ``image``, or None when it carries none."""
    data = image.read_bytes()
    found = _between_markers(data)
    if found is not None:
        return found
    for magic, decompress in _FORMATS:
        for at in _offsets(data, magic):
            try:
                inner = decompress(data[at:])
            except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):
                continue
            found = _between_markers(inner)
            if found is not None:
                return found
    return None
