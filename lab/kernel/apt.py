"""A private apt configuration for Debian's kernel packages (the catalogue says what it serves).

Everything apt does for the lab goes through ``<cache>/apt/`` (own sources list,
lists, caches and an empty dpkg status), so the machine's apt sources and state are
never touched.  ``run_tool`` is the one seam through which apt, dpkg-deb and depmod
run (tests replace it).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from lab import proc
from lab.errors import InfraError
from lab.kernel.catalogue import Catalogue
from lab.kernel.deb822 import parse_stanzas

log = logging.getLogger("lab.kernel.resolve")

LISTS_MAX_AGE = 24 * 3600.0  # seconds; older lists are refreshed when a fetch needs them


# --- the private apt configuration --------------------------------------------------------


def run_tool(
    argv: Sequence[str],
    *,
    phase: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600.0,
) -> str:
    """Run apt-get/apt-cache/dpkg-deb/depmod; the seam tests replace. Returns the output."""
    return proc.run(argv, phase=phase, log_path=log_path, env=env, cwd=cwd, timeout=timeout).stdout


class Apt:
    """apt-get/apt-cache confined to ``<cache>/apt/`` (sources, lists, caches, status)."""

    def __init__(self, cache: Path, catalogue: Catalogue) -> None:
        self.root = cache / "apt"
        self.catalogue = catalogue
        self.lists = self.root / "lists"
        self.logs = self.root / "logs"
        self.conf = self.root / "apt.conf"
        self.stamp = self.root / "updated"  # touched after each successful update

    def _write_config(self) -> None:
        cat = self.catalogue
        for d in ("lists/partial", "cache/archives/partial", "sources.list.d",
                  "preferences.d", "logs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        status = self.root / "status"
        if not status.exists():
            status.write_text("")
        sources = self.sources_text()
        r = self.root
        conf = "\n".join([
            "// Written by lab/kernel/apt.py: a private apt for kernel packages only.",
            f'Dir::Etc::SourceList "{r}/sources.list";',
            f'Dir::Etc::SourceParts "{r}/sources.list.d";',  # empty: ignore the system's
            'Dir::Etc::Preferences "/dev/null";',
            f'Dir::Etc::PreferencesParts "{r}/preferences.d";',
            f'Dir::State::Lists "{r}/lists";',
            f'Dir::State::status "{r}/status";',  # empty: nothing counts as installed
            f'Dir::Cache "{r}/cache";',
            f'Dir::Cache::archives "{r}/cache/archives";',
            # A binary cache of the ~60 MB of lists makes each apt-cache call
            # 0.05 s instead of 1.7 s (a cache hit resolves with one call); the
            # source cache would only double its 90 MB on disk.
            'Dir::Cache::pkgcache "pkgcache.bin";',
            'Dir::Cache::srcpkgcache "";',
            f'APT::Architecture "{cat.architecture}";',
            f'APT::Architectures {{ "{cat.architecture}"; }};',
            'Acquire::Languages "none";',
            # The cache usually lives under a home directory the _apt user cannot
            # enter; apt would fall back to root anyway, with a warning each time.
            'APT::Sandbox::User "root";',
            "",
        ])
        # Given with -c, read after /etc/apt/apt.conf.d, so these settings win over
        # the system's; the rest of apt.conf.d (proxies, mirror settings) applies.
        for path, text in ((r / "sources.list", sources), (self.conf, conf)):
            if not path.exists() or path.read_text() != text:
                path.write_text(text)

    def sources_text(self) -> str:
        cat = self.catalogue
        return "".join(
            f"deb [signed-by={cat.keyring}] {cat.archive} {suite} {' '.join(cat.components)}\n"
            for suite in cat.suites
        )

    def _sources_digest(self) -> str:
        return hashlib.sha256(self.sources_text().encode()).hexdigest()[:16]

    def sources_changed(self) -> bool:
        """Whether the lists were fetched for other suites than the catalogue names now.

        The stamp holds a digest of the sources list it was updated from; a
        catalogue that gained a suite (backports) refreshes lists younger than a day.
        """
        return self.stamp.exists() and self.stamp.read_text().strip() != self._sources_digest()

    @property
    def env(self) -> dict[str, str]:
        return {"LC_ALL": "C.UTF-8"}  # untranslated messages in logs and errors

    def argv(self, tool: str, *args: str) -> list[str]:
        """``tool -c <private apt.conf> args…`` for apt-get and apt-cache."""
        return [tool, "-c", str(self.conf), *args]

    def lists_present(self) -> bool:
        return self.stamp.exists() and any(self.lists.glob("*_Packages*"))

    def lists_age(self) -> float | None:
        """Seconds since the last successful update, None when never updated."""
        if not self.lists_present():
            return None
        return time.time() - self.stamp.stat().st_mtime

    def update(self) -> None:
        """`apt-get update` on the private sources (~5 s); raises InfraError on any failure."""
        self._write_config()
        t0 = time.monotonic()
        run_tool(
            self.argv("apt-get", "update", "--error-on=any"),
            phase="fetch:update", log_path=self.logs / "update.log", env=self.env, timeout=600,
        )
        self.stamp.write_text(self._sources_digest() + "\n")
        log.info("update: apt lists for %s in %.1f s",
                 ", ".join(self.catalogue.suites), time.monotonic() - t0)

    def ensure_lists(self, *, refresh: bool = False) -> bool:
        """Update when lists are missing, older than a day or ``refresh``; True if updated.

        A failed update with older lists present is a warning, not an error: the
        old lists still resolve, only without the newest uploads.
        """
        self._write_config()
        age = self.lists_age()
        if age is not None and age < LISTS_MAX_AGE and not refresh and not self.sources_changed():
            return False
        try:
            self.update()
        except InfraError as exc:
            if age is None:
                raise
            log.warning("update failed (%s); using apt lists from %.1f h ago", exc, age / 3600)
            return False
        return True

    def show(self, *names: str) -> list[dict[str, str]]:
        """`apt-cache show NAME[=VERSION]…` from the local lists (no network)."""
        self._write_config()
        try:
            out = run_tool(
                self.argv("apt-cache", "show", *names),
                phase="fetch:resolve", log_path=self.logs / "resolve.log", env=self.env,
                timeout=120,
            )
        except proc.ProcessError as exc:
            if exc.returncode == 100:  # "Unable to locate package"
                return []
            raise
        return parse_stanzas(out)
