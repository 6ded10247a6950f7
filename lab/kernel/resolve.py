"""Turn a kernel spec into a bootable ``Kernel``: fetch it into the cache or validate a path.

``resolve_kernel`` is the one entry point the rest of the lab uses; it
dispatches on the spec's kind (lab.kernel.spec): Debian packages are fetched,
sources (debian-src, git, tree) are prepared (lab.kernel.source) and built with the
requested config variant (lab.kernel.build).  Path specs are checked before any
expensive work: the file must carry an x86 boot header whose version string
names the release, and a modules directory must be named after that release.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

from lab.errors import InfraError, UserError
from lab.kernel import debian
from lab.kernel.artifact import Kernel
from lab.kernel.spec import DebianSpec, DebianSrcSpec, GitSpec, PathSpec, TreeSpec, parse_spec
from lab.kernel.versions import Versioned

log = logging.getLogger("lab.kernel.resolve")

# x86 boot protocol (Documentation/arch/x86/boot.rst): the setup header's magic
# "HdrS" at 0x202 and, from protocol 2.00, a pointer at 0x20E to the version
# string, relative to the end of the 0x200-byte boot sector.
_HDRS_OFFSET = 0x202
_KERNEL_VERSION_OFFSET = 0x20E
_VERSION_BASE = 0x200
_VERSION_MAX = 256


def image_release(path: Path) -> str | None:
    """The release (`uname -r`) of an x86 bzImage, None when the file is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(_KERNEL_VERSION_OFFSET + 2)
            if head[_HDRS_OFFSET:_HDRS_OFFSET + 4] != b"HdrS":
                return None
            if len(head) < _KERNEL_VERSION_OFFSET + 2:
                return None
            (pointer,) = struct.unpack_from("<H", head, _KERNEL_VERSION_OFFSET)
            if pointer == 0:
                return None
            f.seek(pointer + _VERSION_BASE)
            raw = f.read(_VERSION_MAX)
    except OSError:
        return None
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace").split()
    return text[0] if text else None


def _path_config(image: Path, release: str) -> Path | None:
    """A config that plausibly belongs to the image: /boot/config-REL or a tree's .config."""
    candidates = [image.parent / f"config-{release}"]
    if image.parent.name == "boot" and image.parent.parent.name == "x86":
        candidates.append(image.parents[3] / ".config")  # <tree>/arch/x86/boot/bzImage
    return next((c for c in candidates if c.is_file()), None)


def _resolve_path(spec: PathSpec, text: str) -> Kernel:
    image = spec.image
    if not image.is_file():
        raise UserError(f"{image} does not exist (or is not a file); give a bzImage or vmlinuz")
    release = image_release(image)
    if release is None:
        raise UserError(
            f"{image} is not a Linux kernel image (no bzImage header); give a bzImage or vmlinuz"
        )
    modules = spec.modules
    if modules is not None:
        if not modules.is_dir():
            raise UserError(f"modules directory {modules} does not exist")
        if modules.resolve().name != release:
            raise UserError(
                f"modules directory {modules} is for {modules.resolve().name!r} but "
                f"{image} is release {release!r}; give lib/modules/{release}"
            )
        modules = modules.resolve()
    image = image.resolve()
    return Kernel(spec=text, release=release, image=image, modules=modules,
                  config=_path_config(image, release), source="path")


def _resolve_built(parsed: DebianSrcSpec | GitSpec | TreeSpec, spec: str, *, cache: Path,
                   variant: str | None) -> Kernel:
    from lab.kernel import build, kconfig, source

    kconfig.compose(variant)  # an unknown variant or a bad fragment: before any download
    if isinstance(parsed, GitSpec):
        found = source.git_commit(parsed.repo, parsed.rev, cache=cache)
        hit = build.cached(found.identity, variant, cache=cache, spec_text=spec)
        if hit is not None:  # no checkout: another commit's build may be under way
            return hit
        with source.git_checkout(found) as checked_out:
            return build.build(checked_out, variant, cache=cache, spec_text=spec)
    if isinstance(parsed, DebianSrcSpec):
        tree = source.debian_source(parsed.series, cache=cache)
    else:
        tree = source.plain_tree(parsed.path)
    return build.build(tree, variant, cache=cache, spec_text=spec)


def resolve_kernel(spec: str, *, cache: Path, variant: str | None = None) -> Kernel:
    """The Kernel a spec names: a Debian package (fetched), a source (built) or an image path.

    ``variant`` ("aio-off", "debug+aio-off") applies to built kernels only.
    """
    parsed = parse_spec(spec)
    if isinstance(parsed, DebianSrcSpec | GitSpec | TreeSpec):
        return _resolve_built(parsed, spec, cache=cache, variant=variant)
    if variant not in (None, "", "base"):
        raise UserError(f"--variant {variant} needs a kernel built by the lab "
                        f"(debian-src:SERIES, git:PATH[@REV], tree:PATH), not {spec!r}")
    if isinstance(parsed, PathSpec):
        return _resolve_path(parsed, spec)
    assert isinstance(parsed, DebianSpec)
    kernel = debian.fetch(series=parsed.series, exact=parsed.exact, spec_text=spec,
                          cache=cache)
    # virtme-ng reads the release from the image and looks for lib/modules/<it>:
    # a package whose directory name differs would boot without its modules.
    found = image_release(kernel.image)
    if found != kernel.release:
        raise InfraError(f"{kernel.image} says release {found!r}, its package {kernel.release!r}",
                         phase="fetch:verify")
    return kernel


def list_versioned(cache: Path) -> list[Versioned]:
    """Debian's versioned kernels in the local apt lists (none until a fetch updated them)."""
    from lab.kernel.apt import Apt
    from lab.kernel.catalogue import load_catalogue
    from lab.kernel.versions import versioned_kernels

    apt = Apt(cache, load_catalogue())
    return versioned_kernels(apt) if apt.lists_present() else []


def list_kernels(cache: Path) -> tuple[list[Kernel], list[tuple[str, str, str]]]:
    """Cached kernels (Debian's, then built ones), and (series, newest version, suite)
    from the local apt lists.

    Uses no network: the second list is empty until a fetch has updated the lists.
    """
    from lab.kernel import build

    return (debian.cached_kernels(cache) + build.cached_builds(cache),
            debian.available_series(cache))
