"""What the lab knows of a kernel's config: files, the image's own IKCONFIG, the guest."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path
from typing import Any

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


# -- which config belongs to an image given as a path (lab.kernel.imageconfig) ------------

RELEASE = "7.2.99-labtest"


def _config(version: str = "7.2.99", local: str = "-labtest", extra: str = "") -> str:
    return (f"#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 {version} Kernel "
            f"Configuration\n#\nCONFIG_LOCALVERSION=\"{local}\"\n{CONFIG}{extra}")


def _bzimage(path: Path, *, release: str = RELEASE, config: str | None = None) -> Path:
    """An x86 boot header naming ``release`` (Documentation/arch/x86/boot.rst), then a
    gzipped kernel proper carrying ``config`` as CONFIG_IKCONFIG does."""
    head = bytearray(0x1000)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x400).to_bytes(2, "little")  # version string at 0x400 + 0x200
    version = f"{release} (lab@test) #1 SMP".encode() + b"\0"
    head[0x600:0x600 + len(version)] = version
    inner = b"\0" * 4096 + (_ikconfig_blob(config) if config else b"") + b"\x90" * 4096
    path.write_bytes(bytes(head) + gzip.compress(inner))
    return path


def _resolved(image: Path, cache: Path) -> tuple[str, str]:
    from lab.kernel.resolve import resolve_kernel

    k = resolve_kernel(str(image), cache=cache)
    assert k.release == RELEASE
    return (k.config.read_text() if k.config else ""), k.config_source


def test_the_image_s_own_config_comes_before_a_file_beside_it(tmp_path: Path) -> None:
    inside = _config(extra="CONFIG_IKCONFIG=y\n")
    image = _bzimage(tmp_path / "bzImage", config=inside)
    (tmp_path / f"config-{RELEASE}").write_text(_config(extra="CONFIG_BESIDE=y\n"))
    assert _resolved(image, tmp_path / "cache") == (inside, "ikconfig")


def test_a_file_beside_the_image_counts_only_when_its_release_matches(tmp_path: Path) -> None:
    image = _bzimage(tmp_path / "bzImage")
    beside = tmp_path / f"config-{RELEASE}"
    for wrong in (_config(version="7.2.9"), _config(version="7.2.999"),
                  _config(local="-other"), CONFIG):  # the last: no header, no release
        beside.write_text(wrong)
        assert _resolved(image, tmp_path / "cache") == ("", ""), wrong
    beside.write_text(_config())
    assert _resolved(image, tmp_path / "cache") == (_config(), f"file:{beside}")


def test_the_host_s_boot_config_only_for_the_host_s_own_image(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    from lab.kernel import imageconfig

    boot = tmp_path / "boot"
    boot.mkdir()
    monkeypatch.setattr(imageconfig, "HOST_BOOT", boot)
    (boot / f"config-{RELEASE}").write_text(_config(extra="CONFIG_HOST=y\n"))
    host_image = _bzimage(boot / f"vmlinuz-{RELEASE}")
    # Same release, another build (its own bytes): the host's config says nothing of it.
    other = _bzimage(tmp_path / "bzImage", config=None)
    other.write_bytes(other.read_bytes() + b"\0other build")
    assert _resolved(other, tmp_path / "cache") == ("", "")
    # The host's image itself, copied anywhere: its config is the host's.
    copy = tmp_path / "copy" / "vmlinuz"
    copy.parent.mkdir()
    copy.write_bytes(host_image.read_bytes())
    assert _resolved(copy, tmp_path / "cache") == (
        _config(extra="CONFIG_HOST=y\n"), f"file:{boot / f'config-{RELEASE}'}")
