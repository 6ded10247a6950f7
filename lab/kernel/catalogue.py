"""The catalogue of Debian kernels (kernels/debian.toml) as data: archive, flavour, series."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UserError
from lab.kernel.deb822 import in_series
from lab.paths import KERNELS_DIR

CATALOGUE = KERNELS_DIR / "debian.toml"


@dataclass(frozen=True)
class Catalogue:
    """kernels/debian.toml as data: where to fetch from and which series exist."""

    archive: str
    keyring: Path
    components: tuple[str, ...]
    architecture: str
    flavour: str
    metapackage: str
    series: dict[str, str]  # series -> suite, in catalogue order
    extra_suites: tuple[str, ...] = ()  # listed too: more versioned kernels

    @property
    def suites(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.series.values(), *self.extra_suites]))

    def series_of(self, version: str) -> str | None:
        """The catalogue series a metapackage version belongs to (longest match)."""
        matches = [s for s in self.series if in_series(version, s)]
        return max(matches, key=len) if matches else None


@functools.cache
def load_catalogue(path: Path = CATALOGUE) -> Catalogue:
    """Parse the catalogue (cached: it is data that does not change during a run)."""
    try:
        data = tomllib.loads(path.read_text())
        return Catalogue(
            archive=str(data["archive"]).rstrip("/"),
            keyring=Path(data["keyring"]),
            components=tuple(data.get("components", ["main"])),
            architecture=str(data.get("architecture", "amd64")),
            flavour=str(data["flavour"]),
            metapackage=str(data["metapackage"]),
            series={str(k): str(v["suite"]) for k, v in data["series"].items()},
            extra_suites=tuple(str(x) for x in data.get("suites", {}).get("extra", [])),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: bad Debian kernel catalogue: {exc!r}") from None
