"""Turn a kernel spec into a bootable ``Kernel``: fetch it into the cache or validate a path.

``resolve_kernel`` is the one entry point the rest of the lab uses; it
dispatches on the spec's kind (lab.kernel.spec): Debian packages are fetched,
sources (debian-src, git, worktree, tree) are prepared (lab.kernel.source) and built
with the requested config variant (lab.kernel.build).  Path specs are checked before any
expensive work: the file must carry an x86 boot header whose version string
names the release, and a modules directory must be named after that release.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import InfraError, UserError
from lab.kernel import debian, imageconfig
from lab.kernel.artifact import Kernel, file_sha256
from lab.kernel.spec import (
    BUILT_KINDS,
    DebianSpec,
    DebianSrcSpec,
    GitSpec,
    PathSpec,
    TreeSpec,
    WorktreeSpec,
    parse_spec,
    path_text,
)
from lab.kernel.versions import Versioned

if TYPE_CHECKING:
    from lab.kernel.source import GitCommit

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


def _image_digest(image: Path, want: str | None) -> str:
    """The image's SHA-256, which must be ``want`` when the spec names one."""
    found = file_sha256(image)
    if want is not None and found != want:
        raise UserError(f"{image} has SHA-256 {found}, not the {want} the spec names: the "
                        "file changed since; rebuild that kernel, or drop ,sha256= to test "
                        "the file as it is")
    return found


def _check_path(spec: PathSpec) -> tuple[Path, str, Path | None]:
    """(image, release, modules) of a path spec, checked; a UserError says what is wrong."""
    image = spec.image
    if not image.is_file():
        where = "" if image.is_absolute() else f" (looked in {Path.cwd()})"
        comma = (" (its commas are part of the path: the options are ,modules=DIR and "
                 ",sha256=HEX)" if "," in str(image) else "")
        raise UserError(f"{image} does not exist (or is not a file){where}{comma}; give a "
                        "bzImage or vmlinuz")
    if spec.sha256 is not None:
        _image_digest(image, spec.sha256)
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
    return image, release, modules


def _resolve_path(spec: PathSpec, text: str, *, cache: Path) -> Kernel:
    image, release, modules = _check_path(spec)
    image = image.resolve()
    # Once, here: every record and reproducer of the run names this digest, and every
    # boot checks the file still has it (lab.vm.session).
    digest = _image_digest(image, spec.sha256)
    # The pin names the resolved files: a link may lead to a path the form cannot carry.
    named = PathSpec(image, modules, digest)
    if parse_spec(path_text(named)) != named:
        raise UserError(f"{image} (from {spec.image}) cannot be named in a reproducer "
                        "(IMAGE[,modules=DIR][,sha256=HEX] reads its ',modules=' or "
                        "',sha256=' as an option); give the image from another directory")
    config, origin = imageconfig.config_of(image, release, modules, cache)
    return Kernel(spec=text, release=release, image=image, modules=modules,
                  config=config, config_source=origin, source="path", image_sha256=digest)


def _resolve_built(parsed: DebianSrcSpec | GitSpec | WorktreeSpec | TreeSpec, spec: str, *,
                   cache: Path, variant: str | None) -> Kernel:
    from lab.kernel import build, kconfig, source

    kconfig.compose(variant)  # an unknown variant or a bad fragment: before any download
    if isinstance(parsed, GitSpec | WorktreeSpec):
        # Read, not checked out yet: a cached build needs no checkout.
        if isinstance(parsed, GitSpec):
            found = source.git_commit(parsed.repo, parsed.rev, cache=cache)
        else:
            if parsed.pin:  # the build of that state, whatever the tree holds now
                pinned = build.cached(f"worktree:{parsed.pin}", variant, cache=cache,
                                      spec_text=spec)
                if pinned is not None:
                    return pinned
            found = _working_tree(parsed, cache=cache)
        hit = build.cached(found.identity, variant, cache=cache, spec_text=spec)
        if hit is not None:  # no checkout: another commit's build may be under way
            return hit
        with source.git_checkout(found) as checked_out:
            return build.build(checked_out, variant, cache=cache, spec_text=spec)
    if isinstance(parsed, TreeSpec):
        pinned_id = _tree_pin(parsed)
        if pinned_id is not None:  # the build of that content, whatever the tree holds now
            hit = build.cached(pinned_id, variant, cache=cache, spec_text=spec)
            if hit is not None:
                return hit
        with source.plain_tree(parsed.path, cache=cache) as copy:
            if pinned_id is not None and copy.identity != pinned_id:
                path = parsed.path.expanduser().resolve()
                raise UserError(f"tree:{path}@{parsed.pin}: the kernel of that content is "
                                f"not cached, and the tree holds another now "
                                f"({copy.identity.rpartition('#')[2]}); test what it holds "
                                f"with tree:{path}")
            return build.build(copy, variant, cache=cache, spec_text=spec)
    tree = source.debian_source(parsed.series, exact=parsed.exact, cache=cache)
    kernel = build.build(tree, variant, cache=cache, spec_text=spec)
    return dataclasses.replace(kernel, note=tree.note) if tree.note else kernel


def _tree_pin(parsed: TreeSpec) -> str | None:
    """The source identity a pinned tree spec names (lab.kernel.source.plain_tree's)."""
    if parsed.pin is None:
        return None
    return f"tree:{parsed.path.expanduser().resolve()}#{parsed.pin}"


def _working_tree(parsed: WorktreeSpec, *, cache: Path) -> GitCommit:
    """The working tree's state; with a pin, it must be the pinned one."""
    from lab.kernel import source

    wt = source.working_tree(parsed.repo, cache=cache)
    if parsed.pin and wt.identity != f"worktree:{parsed.pin}":
        raise UserError(f"worktree:{parsed.repo}@{parsed.pin}: the kernel of that state is not "
                        f"cached, and the working tree holds another now ({wt.identity}); "
                        f"test what it holds with worktree:{parsed.repo}")
    return wt


def _check_variant(spec: str, parsed: object, variant: str | None) -> None:
    if not isinstance(parsed, BUILT_KINDS) and variant not in (None, "", "base"):
        added = "=" in (variant or "")
        raise UserError(f"{'--kconfig-add' if added else '--variant'} ({variant}) needs a "
                        "kernel built by the lab (debian-src:SERIES, git:PATH[@REV], "
                        f"worktree:PATH, tree:PATH), not {spec!r}")


def check(spec: str, *, cache: Path, variant: str | None = None) -> None:
    """Every check of ``spec`` and ``variant`` that costs no download and no build, so that
    a mistake is reported before a run directory exists (``resolve_kernel`` repeats them)."""
    from lab.kernel import build, kconfig, source

    parsed = parse_spec(spec)
    _check_variant(spec, parsed, variant)
    if isinstance(parsed, BUILT_KINDS):
        kconfig.compose(variant)
    if isinstance(parsed, GitSpec):
        source.git_commit(parsed.repo, parsed.rev, cache=cache)
    elif isinstance(parsed, WorktreeSpec):
        if not (parsed.pin and build.cached(f"worktree:{parsed.pin}", variant, cache=cache,
                                            spec_text=spec)):
            _working_tree(parsed, cache=cache)
    elif isinstance(parsed, TreeSpec):
        pinned_id = _tree_pin(parsed)
        if not (pinned_id and build.cached(pinned_id, variant, cache=cache, spec_text=spec)):
            source.check_tree(parsed.path.expanduser().resolve())
    elif isinstance(parsed, PathSpec):
        _check_path(parsed)


def resolve_kernel(spec: str, *, cache: Path, variant: str | None = None) -> Kernel:
    """The Kernel a spec names: a Debian package (fetched), a source (built) or an image path.

    ``variant`` ("aio-off", "debug+aio-off") applies to built kernels only.
    """
    parsed = parse_spec(spec)
    if isinstance(parsed, BUILT_KINDS):
        return _resolve_built(parsed, spec, cache=cache, variant=variant)
    _check_variant(spec, parsed, variant)
    if isinstance(parsed, PathSpec):
        return _resolve_path(parsed, spec, cache=cache)
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
