"""Which config belongs to a kernel image given as a path, and how sure that is.

In order: the config the image carries itself (CONFIG_IKCONFIG, lab.kernel.ikconfig),
then a config file beside it (``config-<release>`` in its directory, the modules
directory's ``config``, the tree's ``.config`` for ``arch/x86/boot/bzImage``) whose own
header names the image's release, and the host's ``/boot/config-<release>`` only when
the image is the host's own ``/boot/vmlinuz-<release>`` (the same SHA-256): a release
string alone says nothing about how a kernel was configured, and a bzImage built from
another tree can carry the host's release.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from lab import atomic
from lab.kernel import ikconfig
from lab.kernel.artifact import file_sha256

log = logging.getLogger("lab.kernel.imageconfig")

HOST_BOOT = Path("/boot")  # the host's kernels and their configs
# The first lines `make` writes into every .config (scripts/kconfig/confdata.c):
# "# Linux/x86 7.2.13 Kernel Configuration".
_HEADER = re.compile(r"^# Linux/\S+ (\S+) Kernel Configuration$", re.MULTILINE)
_LOCALVERSION = re.compile(r'^CONFIG_LOCALVERSION="([^"]*)"$', re.MULTILINE)


def release_matches(text: str, release: str) -> bool:
    """Whether the .config ``text`` can be the one a kernel of ``release`` was built with.

    The release is the config's kernel version, then any localversion files'
    text, CONFIG_LOCALVERSION and the "+" or git suffix (the kernel's Makefile):
    so it starts with the version (not followed by a digit: 7.2.1 is not 7.2.13)
    and holds CONFIG_LOCALVERSION.  A config without the header names no release.
    """
    header = _HEADER.search(text[:4096])
    if header is None:
        return False
    version = header.group(1)
    rest = release.removeprefix(version)
    if rest == release or rest[:1].isdigit():
        return False
    local = _LOCALVERSION.search(text)
    return local is None or local.group(1) in rest


def _beside(image: Path, release: str, modules: Path | None) -> list[Path]:
    """Config files in the places a kernel developer keeps one beside the image."""
    candidates = [image.parent / f"config-{release}"]
    if modules is not None:
        candidates.append(modules / "config")  # Debian 7.x: lib/modules/REL/config
    if image.parent.name == "boot" and image.parent.parent.name == "x86":
        candidates.append(image.parents[3] / ".config")  # <tree or O=>/arch/x86/boot/bzImage
    # The host's /boot is judged by the image's digest below, not by being beside it.
    return [c for c in candidates if c.parent.resolve() != HOST_BOOT.resolve()]


def _host_config(image: Path, release: str) -> Path | None:
    """/boot/config-<release>, when the image is the host's /boot/vmlinuz-<release>."""
    config = HOST_BOOT / f"config-{release}"
    host_image = HOST_BOOT / f"vmlinuz-{release}"
    if not config.is_file() or not host_image.is_file():
        return None
    try:
        same = file_sha256(host_image) == file_sha256(image)
    except OSError:
        return None
    return config if same else None


def embedded(image: Path, cache: Path) -> Path | None:
    """The config the image carries (CONFIG_IKCONFIG), kept in the cache by image digest."""
    digest = file_sha256(image)[:20]
    found = cache / "configs" / f"{digest}.config"
    none = found.with_suffix(".none")  # looked before: this image carries no config
    if found.is_file():
        return found
    if none.is_file():
        return None
    text = ikconfig.extract(image)
    if text is None:
        atomic.write_text(none, f"{image}\n")
        return None
    atomic.write_text(found, text)
    return found


def config_of(image: Path, release: str, modules: Path | None,
              cache: Path) -> tuple[Path | None, str]:
    """The image's config and where it came from ("" when unknown before boot)."""
    inside = embedded(image, cache)
    if inside is not None:
        return inside, "ikconfig"
    for candidate in _beside(image, release, modules):
        if not candidate.is_file():
            continue
        if release_matches(candidate.read_text(errors="replace"), release):
            return candidate, f"file:{candidate}"
        log.info("%s is not the config of %s (release %s): not used", candidate, image,
                 release)
    host = _host_config(image, release)
    if host is not None:
        return host, f"file:{host}"
    return None, ""
