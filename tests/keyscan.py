"""Finding private key material on disk: what the per-guest key tests look for."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from lab.vm.ssh import KeyPair

# OpenSSH's, PKCS#8's and the old PEM headers all end so.
PRIVATE_MARKER = b"PRIVATE KEY-----"


def raw_private(key: KeyPair) -> bytes:
    """The 32-byte seed the key is made from: in any file, the key is on disk."""
    return key._key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())


def files_with_private_keys(root: Path, *, secrets: tuple[bytes, ...]) -> list[Path]:
    """Files under ``root`` (links not followed) that hold a private key in any PEM form,
    or one of ``secrets`` as raw bytes."""
    needles = (PRIVATE_MARKER, *secrets)
    return [path for path in sorted(root.rglob("*"))
            if not path.is_symlink() and path.is_file() and _holds(path, needles)]


def _holds(path: Path, needles: tuple[bytes, ...]) -> bool:
    """Whether the file's data holds one of ``needles``, read in chunks and only where it
    has data (the guests' NVMe images are sparse files of a GiB: holes read as zeros)."""
    overlap = max(len(n) for n in needles)
    with open(path, "rb") as f:
        fd, pos, tail = f.fileno(), 0, b""
        while True:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                return False
            if start != pos:
                tail = b""
            end = os.lseek(fd, start, os.SEEK_HOLE)
            f.seek(start)
            while start < end:
                chunk = f.read(min(1 << 22, end - start))
                if not chunk:
                    return False
                data = tail + chunk
                if any(n in data for n in needles):
                    return True
                tail, start = data[-overlap:], start + len(chunk)
            pos = end
