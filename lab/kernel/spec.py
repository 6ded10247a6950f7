"""Kernel specs: what the user writes after ``--kernel``, parsed into frozen dataclasses.

One registry maps a spec's ``KIND:`` prefix to its parser.  Anything without a
known prefix is a path to a kernel image, which may carry its SHA-256
(``PATH,sha256=HEX``: a reproducer names the image that ran, and the lab refuses
a file that changed since).  ``debian-src:``, ``git:``, ``worktree:`` and
``tree:`` name sources that lab.kernel.build turns into kernels (with a config
variant, given separately: ``--variant``, ``--kconfig-add``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UserError
from lab.kernel.catalogue import load_catalogue


@dataclass(frozen=True)
class DebianSpec:
    """A Debian package kernel: newest of a ``series`` ("7.2") or an ``exact`` version."""

    series: str | None = None
    exact: str | None = None  # a linux-image-amd64 version: "7.2.13-1", "7.3~rc7-1~exp1"


@dataclass(frozen=True)
class PathSpec:
    """A kernel image on disk (bzImage/vmlinuz), with an optional modules directory and the
    image's SHA-256 the file must have (lab.kernel.resolve checks it)."""

    image: Path
    modules: Path | None = None
    sha256: str | None = None  # 64 lower-case hex digits


@dataclass(frozen=True)
class DebianSrcSpec:
    """Debian's linux-source-SERIES package, built by the lab: the newest of the series,
    or an ``exact`` version of it (what a reproducer names)."""

    series: str
    exact: str | None = None  # a linux-source-SERIES version: "7.2.13-1"


@dataclass(frozen=True)
class GitSpec:
    """A local kernel git repository at a revision, built by the lab.

    No revision means HEAD, and then the working tree must hold no uncommitted
    change (lab.kernel.source refuses one: it would be silently left out).
    """

    repo: Path
    rev: str | None = None


@dataclass(frozen=True)
class WorktreeSpec:
    """A git working tree as it is: HEAD plus its uncommitted and untracked files, built.

    ``pin`` (``worktree:PATH@<commit>+<digest>``, what a reproducer writes) names the
    build of one state of the tree: the cached kernel, or the tree if it still holds
    exactly that, else a UserError.
    """

    repo: Path
    pin: str | None = None  # "<commit>+<digest>"


@dataclass(frozen=True)
class TreeSpec:
    """A plain kernel source directory, built out of tree by the lab.

    ``pin`` (``tree:PATH@<fingerprint>``, what a reproducer writes) names the build of
    one content of the tree: the cached kernel, or the tree if it still holds exactly
    that, else a UserError.
    """

    path: Path
    pin: str | None = None  # the fingerprint of its files' content (lab.kernel.mirror)


KernelSpec = DebianSpec | PathSpec | DebianSrcSpec | GitSpec | WorktreeSpec | TreeSpec
# The kinds the lab builds (they take a variant and added options).
BUILT_KINDS = (DebianSrcSpec, GitSpec, WorktreeSpec, TreeSpec)

# A working tree's state as lab.kernel.source names it: its commit and its changes' digest.
WORKTREE_PIN = re.compile(r"[0-9a-f]{40}\+[0-9a-f]{16}")
# A plain tree's content as lab.kernel.mirror names it.
TREE_PIN = re.compile(r"[0-9a-f]{16}")
# A Debian version with a revision ("UPSTREAM-REVISION"), optional epoch: the
# metapackage's versions always carry a Debian revision, a series never does.
_DEBIAN_VERSION = re.compile(r"^(?:\d+:)?\d+(?:\.\d+)+[0-9A-Za-z.+~]*-[0-9A-Za-z.+~]+$")


def _series_names() -> list[str]:
    return list(load_catalogue().series)


def valid_forms() -> str:
    """The accepted spec forms, for error messages and --help."""
    return (
        f"debian:SERIES ({', '.join(_series_names())}), "
        "debian:VERSION (a linux-image-amd64 version, e.g. 7.2.13-1), "
        "IMAGE[,modules=DIR][,sha256=HEX] (a bzImage/vmlinuz path; with its SHA-256, "
        "refused if the file changed), "
        f"debian-src:SERIES ({', '.join(_series_names())}, built), "
        "debian-src:VERSION (a linux-source version, e.g. 7.2.13-1, built), "
        "git:PATH[@REV] (a commit, built), worktree:PATH (HEAD and the uncommitted "
        "changes, built), tree:PATH (built)"
    )


def _parse_debian(text: str, rest: str) -> KernelSpec:
    series = _series_names()
    if rest in series:
        return DebianSpec(series=rest)
    if _DEBIAN_VERSION.match(rest):
        return DebianSpec(exact=rest)
    raise UserError(
        f"unknown Debian kernel {text!r}: known series {', '.join(series)}, "
        "or an exact linux-image-amd64 version such as 7.2.13-1"
    )


def _parse_debian_src(text: str, rest: str) -> KernelSpec:
    series = _series_names()
    if rest in series:
        return DebianSrcSpec(series=rest)
    of = load_catalogue().series_of(rest) if _DEBIAN_VERSION.match(rest) else None
    if of is None:
        raise UserError(f"unknown Debian source {text!r}: known series {', '.join(series)}, "
                        "or an exact linux-source version of one, such as 7.2.13-1")
    return DebianSrcSpec(series=of, exact=rest)


def _parse_git(text: str, rest: str) -> KernelSpec:
    # The last "@" splits: paths rarely hold one, revisions ("v7.2", "HEAD~3") never end in one.
    path, sep, rev = rest.rpartition("@")
    if not sep:
        path, rev = rest, ""
    if not path or (sep and not rev):
        raise UserError(f"bad git kernel spec {text!r}; write git:PATH or git:PATH@REV")
    return GitSpec(repo=Path(path).expanduser(), rev=rev or None)


def _parse_worktree(text: str, rest: str) -> KernelSpec:
    path, sep, rev = rest.rpartition("@")
    if sep and path and WORKTREE_PIN.fullmatch(rev):
        return WorktreeSpec(repo=Path(path).expanduser(), pin=rev)
    if sep and path and rev and not Path(rest).expanduser().exists():
        raise UserError(f"{text!r}: worktree:PATH builds the working tree as it is (its HEAD "
                        f"and uncommitted changes); for a commit write git:{path}@{rev}")
    return WorktreeSpec(repo=Path(rest).expanduser())


def _parse_tree(text: str, rest: str) -> KernelSpec:
    path, sep, pin = rest.rpartition("@")
    if sep and path and TREE_PIN.fullmatch(pin):
        return TreeSpec(path=Path(path).expanduser(), pin=pin)
    return TreeSpec(path=Path(rest).expanduser())


# Kind → parser(whole text, text after "KIND:").
_KINDS: dict[str, Callable[[str, str], KernelSpec]] = {
    "debian": _parse_debian,
    "debian-src": _parse_debian_src,
    "git": _parse_git,
    "worktree": _parse_worktree,
    "tree": _parse_tree,
}


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The options an image path may carry, peeled off its end only: a comma elsewhere is the
# path's ("/data/linux,kasan/bzImage").  A digest holds no "/", so ",sha256=" inside a
# directory name stays the path's too.
_MODULES_OPTION = ",modules="
_SHA256_OPTION = re.compile(r",sha256=([^,/]*)\Z")


def _split_path(text: str) -> tuple[str, str | None, str | None]:
    """(image, modules, sha256) of ``IMAGE[,modules=DIR][,sha256=HEX]``, options in
    either order; UserError when the text cannot be told apart from its options."""
    image, modules, digest = text, None, None
    while True:
        found = _SHA256_OPTION.search(image)
        head, sep, tail = image.rpartition(_MODULES_OPTION)
        if found is not None:
            key, value, image = "sha256", found.group(1), image[:found.start()]
        elif sep:
            key, value, image = "modules", tail, head
        else:
            return image, modules, digest
        if (key == "sha256" and digest is not None) or (key == "modules" and modules is not None):
            raise UserError(f"{text!r}: ',{key}=' more than once; a path holding ',{key}=' "
                            f"cannot be named in IMAGE[,modules=DIR][,sha256=HEX]")
        if not value:
            raise UserError(f"bad kernel spec {text!r}: ',{key}=' with nothing after it; "
                            f"valid forms: {valid_forms()}")
        if key == "sha256":
            digest = value
        else:
            modules = value


def _parse_path(text: str) -> PathSpec:
    image_text, modules_text, digest = _split_path(text)
    if not image_text:
        raise UserError(f"bad kernel spec {text!r}: no image path; valid forms: {valid_forms()}")
    if digest is not None and not _SHA256.match(digest.lower()):
        raise UserError(f"{text!r}: sha256={digest} is not a SHA-256 (64 hex digits)")
    modules = Path(modules_text).expanduser() if modules_text is not None else None
    return PathSpec(image=Path(image_text).expanduser(), modules=modules,
                    sha256=digest.lower() if digest else None)


def path_text(spec: PathSpec) -> str:
    """The text that names ``spec`` (what ``parse_spec`` reads back as it)."""
    modules = f"{_MODULES_OPTION}{spec.modules}" if spec.modules is not None else ""
    digest = f",sha256={spec.sha256}" if spec.sha256 is not None else ""
    return f"{spec.image}{modules}{digest}"


def parse_spec(text: str) -> KernelSpec:
    """Parse a kernel spec; a form that is not one of ``valid_forms()`` is a UserError."""
    text = text.strip()
    if not text:  # `--kernel ''`, or an unset shell variable
        raise UserError(f"an empty kernel spec; give one such as debian:7.2 (valid forms: "
                        f"{valid_forms()})")
    kind, sep, rest = text.partition(":")
    if sep and re.fullmatch(r"[a-z][a-z0-9-]*", kind) and kind in _KINDS:
        if not rest:
            raise UserError(f"kernel spec {text!r} is incomplete; valid forms: {valid_forms()}")
        return _KINDS[kind](text, rest)
    # A path must look like one: a bare word ("6.1", "bzimage") is more likely a
    # mistyped spec than a file in the current directory, unless it exists.
    image = _split_path(text)[0]
    if (text and not image) or "/" in image or image.startswith(("~", ".")) or \
            Path(image).exists():
        return _parse_path(text)  # (options without an image: _parse_path says so)
    raise UserError(f"unknown kernel spec {text!r}; valid forms: {valid_forms()}")
