"""A claim of an API text, in the lab's words, with where it comes from; read from data.

Each suite lists its claims in ``scenarios/<suite>/claims.toml``, one ``[[claim]]`` each:
its stable ``id`` (what a test cites: ``@pytest.mark.claim("io_submit.bad_ctx")``, and
what its record keeps), the claim in our own words (``text``: data, reworded freely),
its ``source`` (a text of ``scenarios/specs/specs.toml``, the section in it, the error it
names), and either the ``deviation`` the kernel shows from the source (recorded by the
test with the ``deviation`` fixture) or, for a claim no test can check from userspace,
``not_checkable``: the reason.  lab/results/claims.py audits a run's records against
this data (plain dicts: ``Claim.as_dict``, written into the run directory as claims.json).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPECS_DIR = Path(__file__).resolve().parent / "specs"
# An id: lowercase dotted words, the first naming the API (io_submit, io_uring, ...).
ID = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
FIELDS = {"id", "text", "source", "deviation", "not_checkable"}
SOURCE_FIELDS = {"spec", "section", "error"}


class CatalogueError(ValueError):
    """A claims file that does not say what the catalogue needs, naming file and claim."""


@dataclass(frozen=True)
class Spec:
    """A text claims cite: its file in scenarios/specs/, its title, the APIs it covers."""

    name: str
    file: str
    title: str
    apis: tuple[str, ...]

    @property
    def path(self) -> Path:
        return SPECS_DIR / self.file

    def covers(self, claim_id: str) -> bool:
        return "*" in self.apis or claim_id.split(".", 1)[0] in self.apis


def load_specs(path: Path = SPECS_DIR / "specs.toml") -> dict[str, Spec]:
    """The texts claims may cite, by name."""
    data = tomllib.loads(path.read_text())
    return {name: Spec(name, str(d["file"]), str(d["title"]), tuple(d["apis"]))
            for name, d in data.items()}


SPECS = load_specs()


@dataclass(frozen=True)
class Source:
    """Where a claim comes from: a text of SPECS, the section in it, the error it names."""

    spec: str
    section: str
    error: str = ""

    def __post_init__(self) -> None:
        if self.spec not in SPECS:
            raise ValueError(f"unknown source text {self.spec!r} (known: {', '.join(SPECS)})")


@dataclass(frozen=True)
class Claim:
    """One claim: ``deviation`` says where the kernel disagrees with the source (the test
    asserts the kernel's behaviour and records this); ``not_checkable`` why no test can
    check it from userspace (such a claim is listed, never cited by a test)."""

    id: str
    text: str
    source: Source
    deviation: str = ""
    not_checkable: str = ""
    suite: str = ""

    @property
    def checkable(self) -> bool:
        return not self.not_checkable

    def as_dict(self) -> dict[str, Any]:
        """What claims.json holds for this claim (read by lab/results/claims.py)."""
        return {"id": self.id, "text": self.text, "suite": self.suite,
                "source": {"spec": self.source.spec, "section": self.source.section,
                           "error": self.source.error,
                           "file": f"scenarios/specs/{SPECS[self.source.spec].file}"},
                "deviation": self.deviation, "not_checkable": self.not_checkable}


def _claim(entry: Any, suite: str, where: str) -> Claim:
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: a [[claim]] table, not {entry!r}")
    cid = entry.get("id")
    where = f"{where} ({cid!r})"
    if not isinstance(cid, str) or not ID.fullmatch(cid):
        raise CatalogueError(f"{where}: id must be lowercase dotted words, the first naming "
                             "the API (io_submit.bad_ctx)")
    unknown = set(entry) - FIELDS
    source = entry.get("source")
    if unknown or not isinstance(source, dict) or set(source) - SOURCE_FIELDS:
        raise CatalogueError(f"{where}: fields are {sorted(FIELDS)}, source's "
                             f"{sorted(SOURCE_FIELDS)}")
    if not entry.get("text") or not source.get("section"):
        raise CatalogueError(f"{where}: text and source.section must be given")
    spec = SPECS.get(str(source.get("spec")))
    if spec is None:
        raise CatalogueError(f"{where}: source.spec must be one of {', '.join(SPECS)}")
    if not spec.covers(cid):
        raise CatalogueError(f"{where}: {spec.name} is about {', '.join(spec.apis)}, not "
                             f"{cid.split('.', 1)[0]}: cite the text the claim comes from")
    if entry.get("not_checkable") and entry.get("deviation"):
        raise CatalogueError(f"{where}: a claim no test checks has no observed deviation")
    return Claim(cid, str(entry["text"]),
                 Source(spec.name, str(source["section"]), str(source.get("error", ""))),
                 str(entry.get("deviation", "")), str(entry.get("not_checkable", "")), suite)


def load(path: Path) -> tuple[Claim, ...]:
    """The claims of one suite's claims.toml (the suite: its folder's name), checked."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise CatalogueError(f"{path}: not TOML ({e})") from None
    entries = data.get("claim", [])
    if set(data) - {"claim"} or not isinstance(entries, list):
        raise CatalogueError(f"{path}: holds [[claim]] tables only")
    claims = tuple(_claim(e, path.parent.name, f"{path}: claim {i + 1}")
                   for i, e in enumerate(entries))
    seen: set[str] = set()
    for c in claims:
        if c.id in seen:
            raise CatalogueError(f"{path}: id {c.id!r} listed twice")
        seen.add(c.id)
    return claims
