"""What the lab knows of a kernel's config: files, the image's own IKCONFIG, the guest."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

from lab.kernel import ikconfig
from lab.kernel.facts import ConfigFacts, mismatch, unknown

CONFIG = "CONFIG_AIO=y\n# CONFIG_IO_URING is not set\nCONFIG_BLK_DEV_NVME=m\n"


def test_a_whole_config_decides_everything() -> None:
    f = ConfigFacts.from_text(CONFIG, source="file:/x/.config")
    assert mismatch(f, ["AIO"], label="k") is None
    assert mismatch(f, ["IO_URING"], label="k") == \
        "k lacks CONFIG_IO_URING (config from file:/x/.config)"
    assert mismatch(f, ["!AIO"], label="k") == "not applicable: CONFIG_AIO=y"
    assert mismatch(f, ["!IO_URING"], label="k") is None
    assert mismatch(f, ["BLK_DEV_UBLK"], label="k") is not None  # absent from a whole config
    assert unknown(f, ["AIO", "!KASAN"]) == []


def test_unknown_is_never_a_reason_to_skip() -> None:
    assert mismatch(None, ["AIO"], label="k") is None
    assert mismatch(None, ["!AIO"], label="k") is None
    assert unknown(None, ["AIO", "!IO_URING"]) == ["AIO", "IO_URING"]
    probed = ConfigFacts.from_probe({"AIO": False, "IO_URING": True})
    assert mismatch(probed, ["AIO"], label="k") == "k lacks CONFIG_AIO (config from probe)"
    assert mismatch(probed, ["!IO_URING"], label="k") == "not applicable: CONFIG_IO_URING=y"
    # What the probe did not ask stays unknown: the test runs.
    assert mismatch(probed, ["KASAN"], label="k") is None
    assert unknown(probed, ["AIO", "KASAN"]) == ["KASAN"]


def _ikconfig_blob(text: str) -> bytes:
    return b"IKCFG_ST" + gzip.compress(text.encode()) + b"IKCFG_ED"


def test_config_embedded_in_an_uncompressed_kernel(tmp_path: Path) -> None:
    image = tmp_path / "vmlinux"
    image.write_bytes(b"\x7fELF" + b"\0" * 1000 + _ikconfig_blob(CONFIG) + b"\0" * 100)
    assert ikconfig.extract(image) == CONFIG


def test_config_embedded_in_a_compressed_payload(tmp_path: Path) -> None:
    # As in a bzImage: setup code, then the kernel proper compressed (here gzip and xz).
    inner = b"\0" * 5000 + _ikconfig_blob(CONFIG) + b"\x90" * 5000
    for name, payload in (("gz", gzip.compress(inner)), ("xz", lzma.compress(inner))):
        image = tmp_path / f"bzImage-{name}"
        image.write_bytes(b"MZ" + b"\xaa" * 4096 + payload + b"\0" * 64)
        assert ikconfig.extract(image) == CONFIG, name


def test_no_config_in_an_image_without_one(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(b"MZ" + gzip.compress(b"\0" * 10000))
    assert ikconfig.extract(image) is None
