"""A resolved kernel: the artifact every later phase (boot, results) works from.

Kernel identity is a value: every result record carries ``Kernel.identity()``
(spec, release, config hash, variant), and the matrix and bisection compare
runs by those keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METADATA = "kernel.json"


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
    source: str = "path"  # "debian", "path", later "debian-src", "git", "tree"
    variant: str = "prebuilt"
    package_version: str | None = None  # Debian's version, "7.2.13-1"
    packages: tuple[str, ...] = field(default_factory=tuple)
    # Set when this is not what the spec asked for: the fetch failed and an older
    # cached kernel serves the run instead.  Every record and the summary say so.
    note: str = ""

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

    def identity(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "release": self.release,
            "package_version": self.package_version,
            "config_hash": self.config_hash,
            "config_source": self.config_source,
            "variant": self.variant,
            "source": self.source,
            **({"note": self.note} if self.note else {}),
        }

    def to_json(self, base: Path) -> str:
        """Metadata for the cache entry, with paths relative to ``base``."""
        data = asdict(self)
        for key in ("image", "modules", "config"):
            if data[key] is not None:
                data[key] = str(Path(data[key]).relative_to(base))
        data["packages"] = list(self.packages)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, base: Path, *, spec: str | None = None) -> Kernel:
        data = json.loads(text)
        for key in ("image", "modules", "config"):
            if data.get(key) is not None:
                data[key] = base / data[key]
        data["packages"] = tuple(data.get("packages", ()))
        if data.get("config") is not None and not data.get("config_source"):
            # Entries published before the field existed: their config is the entry's own.
            data["config_source"] = "package" if data.get("source") == "debian" else "build"
        if spec is not None:
            data["spec"] = spec
        return cls(**data)
