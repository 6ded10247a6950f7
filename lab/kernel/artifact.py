"""A resolved kernel: the artifact every later phase (boot, results) works from.

Kernel identity is a value: every result record carries ``Kernel.identity()``
(spec, release, config hash, variant), and the matrix and bisection compare
runs by those keys.  It also carries the spec pinned to what ran (``pinned``),
which reproducers and `lab rerun` name instead of what the user wrote.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.kernel.spec import TREE_PIN, GitSpec, PathSpec, WorktreeSpec, parse_spec, path_text

METADATA = "kernel.json"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, hex; read once per version of the file (its inode, size,
    mtime and ctime: a rewrite or a replacement changes the ctime, which no one can set)."""
    st = os.stat(path)
    return _sha256(str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel image, its modules and its config, as found in the cache."""

    spec: str  # as the user wrote it: "debian:7.2", "/path/to/bzImage"
    release: str  # `uname -r` of the image: "7.2.13+deb14-amd64"
    image: Path
    modules: Path | None = None  # .../lib/modules/<release>, with modules.dep
    config: Path | None = None
    # Where ``config`` came from: "package" (Debian's), "build" (the lab built it),
    # "file:PATH" (found beside a given image), "ikconfig" (embedded in the image),
    # or "" when unknown until the guest boots (lab.vm.session learns it there).
    config_source: str = ""
    source: str = "path"  # "debian", "path", "debian-src", "git", "worktree", "tree"
    variant: str = "prebuilt"
    package_version: str | None = None  # Debian's version, "7.2.13-1"
    # Debian's packages; for a built kernel, the identity of the source it was built from:
    # "git:<sha>", "worktree:<sha>+<digest of the uncommitted changes>", "tree:<path>#<hash>".
    packages: tuple[str, ...] = field(default_factory=tuple)
    # Set when this is not what the spec asked for: the fetch failed and an older
    # cached kernel serves the run instead.  Every record and the summary say so.
    note: str = ""
    # An image path's SHA-256 when it was resolved: what the records and reproducers name,
    # and what every boot checks the file against (lab.vm.session).  None for the lab's
    # own cache entries, which nothing rewrites.
    image_sha256: str | None = None
    # The kernel's ELF with its symbols (a build's own, kept at publish): what gdb, the
    # trace decoder and a dump reader read.  None for an entry without one (Debian's
    # package, an image path, a build published before it was kept).
    vmlinux: Path | None = None

    @property
    def config_hash(self) -> str | None:
        if self.config is None or not self.config.exists():
            return None
        return hashlib.sha256(self.config.read_bytes()).hexdigest()[:16]

    def config_option(self, name: str) -> str | None:
        """The value of CONFIG_<name> ("y", "m", a string) or None when unset/unknown."""
        if self.config is None or not self.config.exists():
            return None
        key = name if name.startswith("CONFIG_") else f"CONFIG_{name}"
        for line in self.config.read_text(errors="replace").splitlines():
            if line.startswith(key + "="):
                return line.split("=", 1)[1].strip('"')
        return None

    def version_tuple(self) -> tuple[int, ...]:
        """(major, minor, patch) parsed from the release; (0,) when unparsable."""
        head = self.release.split("-", 1)[0].split("+", 1)[0]
        parts: list[int] = []
        for piece in head.split("."):
            digits = "".join(ch for ch in piece if ch.isdigit())
            if not digits:
                break
            parts.append(int(digits))
        return tuple(parts) or (0,)

    def pinned_spec(self) -> str:
        """The spec that names exactly this kernel, for reproducers and `lab rerun`.

        An image path is named with the SHA-256 it had when it was resolved, not when
        this is asked: a record written after a rebuild still names what booted.

        One entry per kind of source: a Debian package or source by its version, a
        commit by its id, a working tree by its commit and the digest of its changes
        (``worktree:PATH@<commit>+<digest>``), a plain tree by its content's fingerprint
        (``tree:PATH@<fingerprint>``); anything else keeps its spec.
        """
        if self.source == "debian" and self.package_version:
            return f"debian:{self.package_version}"  # the package that ran, not the series
        if self.source in ("git", "worktree") and self.packages:
            parsed = parse_spec(self.spec)
            built = self.packages[0]
            if isinstance(parsed, GitSpec | WorktreeSpec) and built.startswith("git:"):
                # A full commit id, not a branch or HEAD (a clean working tree is its commit).
                return f"git:{parsed.repo.expanduser().resolve()}@{built.removeprefix('git:')}"
            if isinstance(parsed, WorktreeSpec) and built.startswith("worktree:"):
                # The commit and the changes' digest: the cached kernel, or the same state.
                pin = built.removeprefix("worktree:")
                return f"worktree:{parsed.repo.expanduser().resolve()}@{pin}"
        if self.source == "tree" and self.packages:
            # "tree:<path>#<fingerprint>": the cached kernel of that content, or the same
            path, _, fingerprint = self.packages[0].removeprefix("tree:").rpartition("#")
            if TREE_PIN.fullmatch(fingerprint):
                return f"tree:{path}@{fingerprint}"
        if self.source == "debian-src" and self.packages and "=" in self.packages[0]:
            # "debian-src:linux-source-7.2=7.2.13-1": the version, not the series' newest
            return f"debian-src:{self.packages[0].rpartition('=')[2]}"
        if self.source == "path":
            return path_text(PathSpec(self.image, self.modules, self.image_sha256))
        return self.spec

    def identity(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "pinned": self.pinned_spec(),
            "release": self.release,
            "package_version": self.package_version,
            "config_hash": self.config_hash,
            "config_source": self.config_source,
            "variant": self.variant,
            "source": self.source,
            **({"source_id": self.packages[0]} if self.packages and self.source not in
               ("debian", "path") else {}),
            **({"image_sha256": self.image_sha256} if self.image_sha256 else {}),
            **({"note": self.note} if self.note else {}),
        }

    def to_json(self, base: Path) -> str:
        """Metadata for the cache entry, with paths relative to ``base``."""
        data = asdict(self)
        for key in ("image", "modules", "config", "vmlinux"):
            if data[key] is not None:
                data[key] = str(Path(data[key]).relative_to(base))
        data["packages"] = list(self.packages)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, base: Path, *, spec: str | None = None) -> Kernel:
        data = json.loads(text)
        for key in ("image", "modules", "config", "vmlinux"):
            if data.get(key) is not None:
                data[key] = base / data[key]
        data["packages"] = tuple(data.get("packages", ()))
        if data.get("config") is not None and not data.get("config_source"):
            # Entries published before the field existed: their config is the entry's own.
            data["config_source"] = "package" if data.get("source") == "debian" else "build"
        if spec is not None:
            data["spec"] = spec
        # A field a later lab wrote (a shared cache): this lab does without it.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
