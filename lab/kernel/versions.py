"""Debian's versioned kernels: every linux-image-VERSION-amd64 the lists hold, usable or not.

The metapackage names one kernel per suite; the suites (backports above all)
keep older ABIs as their own packages: ``linux-image-6.12.43+deb12-amd64``
(6.12.43-1~bpo12+1), ``linux-image-7.2.6+deb13-amd64`` (7.2.6-1~bpo13+1)…  Each
is fetched as ``debian:PACKAGE-VERSION`` (lab.kernel.debian follows its
``Depends:``) and ``lab bisect --versions`` walks them in version order.

A kernel is usable when everything it needs to boot under virtme-ng is still
in the index.  Before 6.19 one package holds the image, the modules and the
config.  From 6.19 the image package depends on ``linux-binary-*`` (vmlinuz),
``linux-modules-*`` and ``linux-base-*`` (config, System.map); for 6.19-7.1 the
backports index dropped the modules, so those are listed as unusable, with the
missing package named.  A one-package kernel whose ``linux-base-*`` is gone
(6.18.x) still boots: it carries its own config.

Three ``apt-cache`` calls (pkgnames, show, madison) answer from the local
lists, memoised per lists update like the metapackage's stanzas.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from lab import atomic, proc
from lab.kernel import apt as aptlib
from lab.kernel.apt import Apt
from lab.kernel.deb822 import parse_depends, parse_stanzas, split_version, version_key

# The generic flavour's image packages: ABI "6.1.0-50", "6.12.43+deb12", "6.12.90+deb12.1", "7.3".
_ABI = r"\d+\.\d+(?:\.\d+)*(?:-\d+)?(?:\+deb[0-9.]+)?"
NEEDED = ("linux-binary-", "linux-modules-")  # without one of these there is nothing to boot


@dataclass(frozen=True)
class Versioned:
    """One versioned image package and whether the lab can boot it."""

    package_version: str  # "6.12.43-1~bpo12+1": what `debian:VERSION` names
    image_package: str  # "linux-image-6.12.43+deb12-amd64"
    suite: str  # "bookworm-backports"
    missing: tuple[str, ...] = ()  # pinned linux-* Depends the index no longer has

    @property
    def upstream(self) -> str:
        """The kernel version: "6.12.43", "7.3~rc7"."""
        return split_version(self.package_version)[1]

    @property
    def usable(self) -> bool:
        return not self.missing

    @property
    def spec(self) -> str:
        return f"debian:{self.package_version}"

    @property
    def why_unusable(self) -> str:
        return "" if self.usable else (f"{', '.join(self.missing)} not in the index "
                                       "(image without modules)")


def image_re(flavour: str) -> re.Pattern[str]:
    return re.compile(rf"^linux-image-({_ABI})-{re.escape(flavour)}$")


def pinned(stanza: dict[str, str]) -> list[str]:
    """The ``linux-* (= this version)`` names a package depends on."""
    version = stanza.get("Version", "")
    return [rel.name for alts in parse_depends(stanza.get("Depends", "")) for rel in alts
            if rel.op == "=" and rel.version == version and rel.name.startswith("linux-")]


def missing_needed(stanza: dict[str, str], listed: set[str]) -> tuple[str, ...]:
    """The pinned dependencies a boot needs that ``listed`` lacks.

    ``linux-base-*`` holds the config only in the split layout (with linux-binary);
    a one-package kernel carries its own, so its missing linux-base is no loss.
    """
    deps = pinned(stanza)
    split = any(d.startswith("linux-binary-") for d in deps)
    return tuple(d for d in deps if d not in listed
                 and (d.startswith(NEEDED) or (split and d.startswith("linux-base-"))))


def tolerated(stanza: dict[str, str], name: str) -> bool:
    """Whether a pinned dependency that is not listed may be left out of the fetch."""
    deps = pinned(stanza)
    return name.startswith("linux-base-") and not any(d.startswith("linux-binary-")
                                                      for d in deps)


def _madison_suites(text: str) -> dict[tuple[str, str], str]:
    """(package, version) -> suite, from `apt-cache madison` lines."""
    out: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3:
            where = parts[2].split()
            suite = where[1].split("/", 1)[0] if len(where) >= 2 else "?"
            out[(parts[0], parts[1])] = suite
    return out


def parse(pkgnames: str, show: str, madison: str, *, flavour: str) -> list[Versioned]:
    """The versioned kernels in apt's answers, oldest first (pure: tests feed golden text)."""
    listed = set(pkgnames.split())
    suites = _madison_suites(madison)
    pattern = image_re(flavour)
    found: dict[tuple[str, str], Versioned] = {}
    for s in parse_stanzas(show):
        name, version = s.get("Package", ""), s.get("Version", "")
        if not pattern.match(name) or not version:
            continue
        found[(name, version)] = Versioned(
            package_version=version, image_package=name,
            suite=suites.get((name, version), "?"), missing=missing_needed(s, listed))
    return sorted(found.values(), key=lambda v: version_key(v.package_version))


def _memo_key(apt: Apt) -> str | None:
    return f"versioned {apt.stamp.stat().st_mtime_ns}" if apt.stamp.exists() else None


def versioned_kernels(apt: Apt) -> list[Versioned]:
    """Every versioned image package of the catalogue's flavour in the lists, oldest first."""
    memo = apt.root / "versioned.json"
    key = _memo_key(apt)
    if key is not None and memo.is_file():
        try:
            data = json.loads(memo.read_text())
            if data.get("key") == key:
                return [Versioned(**{**v, "missing": tuple(v["missing"])})
                        for v in data["kernels"]]
        except (ValueError, KeyError, TypeError):
            pass  # a damaged memo is rebuilt below
    flavour = apt.catalogue.flavour
    names_text = _apt_cache(apt, "pkgnames", "linux-")
    images = sorted(n for n in names_text.split() if image_re(flavour).match(n))
    if not images:
        return []
    show = _apt_cache(apt, "show", *images)
    madison = _apt_cache(apt, "madison", *images)
    kernels = parse(names_text, show, madison, flavour=flavour)
    if key is not None:
        atomic.write_text(memo, json.dumps({"key": key,
                                            "kernels": [_as_json(v) for v in kernels]}))
    return kernels


def _as_json(v: Versioned) -> dict[str, Any]:
    data = asdict(v)
    data["missing"] = list(v.missing)
    return data


def _apt_cache(apt: Apt, *args: str) -> str:
    try:
        return aptlib.run_tool(apt.argv("apt-cache", *args), phase="fetch:resolve",
                               log_path=apt.logs / "resolve.log", env=apt.env, timeout=120)
    except proc.ProcessError as exc:
        if exc.returncode == 100:  # a name the lists do not know: nothing to list
            return ""
        raise
