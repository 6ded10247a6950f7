"""Debian's prebuilt kernels: resolve a series or version, download, verify, extract, cache.

Everything apt does here goes through a private configuration under
``<cache>/apt/`` (own sources list, lists, caches and an empty dpkg status),
so the machine's apt sources and state are never touched.  Resolution follows
the ``Depends:`` of the image package because the layout differs by release
(see kernels/debian.toml): 6.x image packages hold the kernel and modules,
7.x split them into linux-binary-*, linux-modules-* and linux-base-*.

A cache entry ``<cache>/kernels/debian/<version>-<flavour>/`` is built in a
``.tmp-*`` sibling and published by one rename (lab.atomic), so it is either
whole (it has ``kernel.json``) or absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import atomic
from lab.errors import InfraError, IntegrityError, UserError
from lab.kernel import apt as aptlib
from lab.kernel import cache as kernel_cache
from lab.kernel import versions
from lab.kernel.apt import Apt
from lab.kernel.artifact import METADATA, Kernel
from lab.kernel.catalogue import Catalogue, load_catalogue
from lab.kernel.deb822 import (
    compare_versions,
    in_series,
    parse_depends,
    version_key,
)

log = logging.getLogger("lab.kernel.resolve")

SHA256SUMS = "SHA256SUMS"
_DOC_DIRS = ("usr/share/doc", "usr/share/bug", "usr/share/lintian", "usr/share/man")


# --- resolution ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One .deb to fetch, with what the (signed) index says about it."""

    name: str
    version: str
    filename: str  # pool path
    size: int
    sha256: str

    @classmethod
    def from_stanza(cls, s: dict[str, str]) -> Package:
        return cls(s["Package"], s["Version"], s.get("Filename", ""),
                   int(s.get("Size", "0") or 0), s.get("SHA256", ""))


@dataclass(frozen=True)
class Plan:
    """What a Debian spec resolves to: the metapackage version and the .debs behind it."""

    version: str  # of the metapackage, e.g. "7.2.13-1"
    image_package: str  # e.g. "linux-image-7.2.13+deb14-amd64"
    packages: tuple[Package, ...]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.packages)


def metapackage_stanzas(apt: Apt) -> list[dict[str, str]]:
    """Every stanza of the metapackage in the lists (one per version and suite).

    Memoised in ``<cache>/apt/metapackage.json`` per lists update, so a cache
    hit on a series spec starts no process at all.
    """
    meta = apt.catalogue.metapackage
    memo = apt.root / "metapackage.json"
    key = f"{meta} {apt.stamp.stat().st_mtime_ns}" if apt.stamp.exists() else None
    if key is not None and memo.is_file():
        try:
            data = json.loads(memo.read_text())
            if data.get("key") == key:
                return [dict(s) for s in data["stanzas"]]
        except (ValueError, KeyError, TypeError):
            pass  # a damaged memo is rebuilt below
    stanzas = [s for s in apt.show(meta) if s.get("Package") == meta and "Version" in s]
    if key is not None and stanzas:
        atomic.write_text(memo, json.dumps({"key": key, "stanzas": stanzas}))
    return stanzas


def available_versions(apt: Apt, stanzas: list[dict[str, str]] | None = None) -> list[str]:
    """Every version of the metapackage in the lists, newest first."""
    versions = {s["Version"] for s in (metapackage_stanzas(apt) if stanzas is None else stanzas)}
    return sorted(versions, key=version_key, reverse=True)


def pick_version(versions: Iterable[str], *, series: str | None, exact: str | None) -> str | None:
    """The exact version if listed, else the newest version of the series."""
    versions = list(versions)
    if exact is not None:
        return next((v for v in versions if compare_versions(v, exact) == 0), None)
    assert series is not None
    matching = [v for v in versions if in_series(v, series)]
    return max(matching, key=version_key) if matching else None


def _pinned(stanza: dict[str, str], version: str, *, prefix: str = "linux-") -> list[str]:
    """Depends entries of the form ``NAME (= version)`` with NAME starting with ``prefix``."""
    names: list[str] = []
    for alts in parse_depends(stanza.get("Depends", "")):
        for rel in alts:
            if rel.op == "=" and rel.version == version and rel.name.startswith(prefix):
                names.append(rel.name)
    return names


def resolve_version(
    apt: Apt, *, series: str | None, exact: str | None, label: str
) -> dict[str, str]:
    """The metapackage stanza a spec means: the exact version, or the series' newest."""
    cat = apt.catalogue
    stanzas = metapackage_stanzas(apt)
    versions = available_versions(apt, stanzas)
    version = pick_version(versions, series=series, exact=exact)
    if version is None:
        what = f"no version {exact}" if exact else f"no version of series {series}"
        raise UserError(
            f"{label}: {cat.metapackage} has {what} in the apt lists "
            f"({', '.join(cat.suites)}); available: {', '.join(versions) or 'none'}"
        )
    return next(s for s in stanzas if s["Version"] == version)


def resolve(apt: Apt, *, series: str | None, exact: str | None, label: str) -> Plan:
    """Follow metapackage → image package → its pinned linux-* Depends, from the lists.

    An exact version the metapackage never had may name a versioned kernel
    (lab.kernel.versions: backports keep older ABIs as their own packages).
    """
    cat = apt.catalogue
    try:
        meta = resolve_version(apt, series=series, exact=exact, label=label)
    except UserError:
        if exact is None:
            raise
        found = [v for v in versions.versioned_kernels(apt)
                 if compare_versions(v.package_version, exact) == 0]
        if not found:
            raise
        if not found[0].usable:
            raise UserError(f"{label}: {found[0].image_package} {found[0].package_version} "
                            f"cannot boot here: {found[0].why_unusable}") from None
        return follow(apt, found[0].image_package, found[0].package_version)
    version = meta["Version"]
    image_re = re.compile(rf"^linux-image-.+-{re.escape(cat.flavour)}$")
    images = [n for n in _pinned(meta, version, prefix="linux-image-") if image_re.match(n)]
    if len(images) != 1:
        raise InfraError(
            f"{cat.metapackage} {version}: expected one linux-image-*-{cat.flavour} "
            f"in Depends, found {images or 'none'} ({meta.get('Depends', '')})",
            phase="fetch:resolve", log=apt.logs / "resolve.log",
        )
    return follow(apt, images[0], version)


def follow(apt: Apt, image: str, version: str) -> Plan:
    """The .debs behind an image package: it and its ``(= version)`` linux-* Depends."""
    # Breadth-first over "(= version)" linux-* dependencies: 6.x stops at the
    # image package, 7.x adds linux-binary-*, linux-modules-*, linux-base-*.
    found: dict[str, Package] = {}
    todo = [image]
    image_stanza: dict[str, str] = {}
    while todo:
        stanzas = apt.show(*(f"{n}={version}" for n in todo))
        by_name = {s["Package"]: s for s in stanzas if s.get("Version") == version}
        image_stanza = image_stanza or by_name.get(image, {})
        missing = [n for n in todo if n not in by_name
                   and not (image_stanza and versions.tolerated(image_stanza, n))]
        if missing:
            raise InfraError(f"{', '.join(missing)} {version} named by Depends but not listed",
                             phase="fetch:resolve", log=apt.logs / "resolve.log")
        for name in todo:
            if name in by_name:
                found[name] = Package.from_stanza(by_name[name])
            else:
                log.info("resolve: %s %s is not listed; %s carries its own config", name,
                         version, image)
        todo = sorted({d for n in todo if n in by_name for d in _pinned(by_name[n], version)}
                      - set(found) - set(todo))
    return Plan(version=version, image_package=image, packages=tuple(found.values()))


# --- the cache ----------------------------------------------------------------------------


def kernels_dir(cache: Path) -> Path:
    return cache / "kernels" / "debian"


def entry_name(version: str, flavour: str) -> str:
    return f"{version}-{flavour}".replace(":", "%3a").replace("/", "_")


def cached_kernels(cache: Path) -> list[Kernel]:
    """Published Debian entries, newest package version first."""
    found = [k for _, k in kernel_cache.entries(kernels_dir(cache))]
    return sorted(found, key=lambda k: version_key(k.package_version or "0"), reverse=True)


def available_series(cache: Path, catalogue: Catalogue | None = None) -> list[tuple[str, str, str]]:
    """(series, newest version, suite) from the apt lists if present; never uses the network."""
    cat = catalogue or load_catalogue()
    apt = Apt(cache, cat)
    if not apt.lists_present():
        return []
    versions = available_versions(apt)
    rows: list[tuple[str, str, str]] = []
    for series, suite in cat.series.items():
        v = pick_version(versions, series=series, exact=None)
        if v is not None:
            rows.append((series, v, suite))
    return rows


# --- fetching -----------------------------------------------------------------------------


def _check_tools() -> str:
    """Validate host tools before any download; returns depmod's path."""
    missing = [t for t in ("apt-get", "apt-cache", "dpkg-deb") if shutil.which(t) is None]
    depmod = next((p for p in ("/usr/sbin/depmod", "/sbin/depmod") if os.access(p, os.X_OK)),
                  None) or shutil.which("depmod")
    if depmod is None:
        missing.append("depmod (package kmod)")
    if missing or depmod is None:
        raise UserError(f"fetching Debian kernels needs {', '.join(missing)}; install them")
    return depmod


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _find_one(root: Path, patterns: Sequence[str], what: str) -> Path:
    """The single file matching ``patterns`` (the first path of it, as lib may link to usr/lib)."""
    hits: dict[Path, Path] = {}
    for pat in patterns:
        for p in sorted(root.glob(pat)):
            if p.is_file():
                hits.setdefault(p.resolve(), p)
    if len(hits) != 1:
        raise InfraError(f"expected one {what} in the packages, found "
                         f"{[str(h.relative_to(root)) for h in hits.values()] or 'none'}",
                         phase="fetch:extract")
    return next(iter(hits.values()))


def _link_lib_modules(root: Path) -> None:
    """Make ``root/lib/modules`` resolve when the packages use ``/usr/lib/modules``.

    virtme-ng looks for modules at ``<rootfs>/lib/modules/<kver>`` where rootfs
    is found from the image path (get_rootfs_from_kernel_path); with
    ``lib -> usr/lib`` (merged /usr, as on the host) it takes ``root`` itself,
    and ``depmod -b root`` (kmod 30 reads ``lib/modules``) sees the same tree.
    """
    usr_modules = root / "usr" / "lib" / "modules"
    if not usr_modules.is_dir():
        return
    lib = root / "lib"
    if not lib.exists() and not lib.is_symlink():
        lib.symlink_to("usr/lib")
    elif lib.is_dir() and not (lib / "modules").exists():
        (lib / "modules").symlink_to("../usr/lib/modules")


def _download(apt: Apt, plan: Plan, debs: Path, *, logname: str) -> list[Path]:
    debs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    aptlib.run_tool(
        apt.argv("apt-get", "download", *(f"{p.name}={p.version}" for p in plan.packages)),
        phase="fetch:download", log_path=apt.logs / f"download-{logname}.log",
        env=apt.env, cwd=debs, timeout=3600,
    )
    dt = time.monotonic() - t0
    files: list[Path] = []
    for p in plan.packages:
        hits = sorted(debs.glob(f"{p.name}_*.deb"))
        if len(hits) != 1:
            raise InfraError(f"apt-get download left {len(hits)} files for {p.name}",
                             phase="fetch:download", log=apt.logs / f"download-{logname}.log")
        files.append(hits[0])
    mb = sum(f.stat().st_size for f in files) / 1e6
    log.info("download: %d packages, %.1f MB in %.1f s", len(files), mb, dt)
    return files


def _verify(plan: Plan, files: Sequence[Path], entry: Path) -> None:
    """Check each .deb against the index's SHA256 (apt checks too; we record it)."""
    lines: list[str] = []
    for p, f in zip(plan.packages, files, strict=True):
        digest = _sha256(f)
        if not p.sha256 or digest != p.sha256 or (p.size and f.stat().st_size != p.size):
            raise IntegrityError(f"{f.name}: SHA256 {digest} (size {f.stat().st_size}) does not "
                             f"match the index ({p.sha256 or 'no SHA256'}, size {p.size})",
                             phase="fetch:verify")
        lines.append(f"{digest}  {f.name}\n")
    (entry / SHA256SUMS).write_text("".join(lines))
    log.info("verify: %d .debs match the SHA256 of the signed index", len(files))


def _extract(apt: Apt, files: Sequence[Path], root: Path, *, logname: str) -> None:
    t0 = time.monotonic()
    for f in files:
        aptlib.run_tool(["dpkg-deb", "-x", str(f), str(root)], phase="fetch:extract",
                 log_path=apt.logs / f"extract-{logname}.log", timeout=900)
    for d in _DOC_DIRS:
        shutil.rmtree(root / d, ignore_errors=True)
    _link_lib_modules(root)
    log.info("extract: %d packages in %.1f s", len(files), time.monotonic() - t0)


def _build_entry(apt: Apt, plan: Plan, *, spec_text: str, depmod: str, cache: Path) -> Kernel:
    cat = apt.catalogue
    final = kernels_dir(cache) / entry_name(plan.version, cat.flavour)
    logname = entry_name(plan.version, cat.flavour)
    with atomic.temp_dir(kernels_dir(cache)) as tmp:
        files = _download(apt, plan, tmp / "debs", logname=logname)
        _verify(plan, files, tmp)
        root = tmp / "root"
        _extract(apt, files, root, logname=logname)
        shutil.rmtree(tmp / "debs")

        image = _find_one(root, ("boot/vmlinuz-*", "usr/lib/modules/*/vmlinuz",
                                 "lib/modules/*/vmlinuz"), "kernel image")
        release = (image.name.removeprefix("vmlinuz-") if image.parent.name == "boot"
                   else image.parent.name)
        modules = root / "lib" / "modules" / release
        if not modules.is_dir():
            raise InfraError(f"no modules directory for {release} in the packages",
                             phase="fetch:extract")
        config = _find_one(root, (f"boot/config-{release}", f"usr/lib/modules/{release}/config",
                                  f"lib/modules/{release}/config"), "kernel config")
        t0 = time.monotonic()
        aptlib.run_tool([depmod, "-a", "-b", str(root), release], phase="fetch:depmod",
                 log_path=apt.logs / f"depmod-{logname}.log", timeout=600)
        if not (modules / "modules.dep").is_file():
            raise InfraError(f"depmod wrote no modules.dep for {release}", phase="fetch:depmod",
                             log=apt.logs / f"depmod-{logname}.log")
        log.info("depmod: %s in %.1f s", release, time.monotonic() - t0)

        # Paths as seen through the final entry, so kernel.json stays relative.
        def final_path(p: Path) -> Path:
            return final / p.relative_to(tmp)

        kernel = Kernel(
            spec=spec_text, release=release, image=final_path(image),
            modules=final_path(modules), config=final_path(config), config_source="package",
            source="debian",
            variant="prebuilt", package_version=plan.version,
            packages=tuple(f"{p.name}={p.version}" for p in plan.packages),
        )
        (tmp / METADATA).write_text(kernel.to_json(final))
        atomic.publish(tmp, final)
    published = kernel_cache.load_entry(final, spec=spec_text)
    if published is None:
        raise InfraError(f"{final} has no {METADATA} after publishing", phase="fetch:publish")
    log.info("cached %s %s (%s) at %s", cat.metapackage, plan.version, release, final)
    return published


def fetch(
    *,
    series: str | None,
    exact: str | None,
    spec_text: str,
    cache: Path,
    catalogue: Catalogue | None = None,
) -> Kernel:
    """The cached Kernel for a Debian series or exact version, fetching it when missing."""
    cat = catalogue or load_catalogue()
    apt = Apt(cache, cat)
    atomic.clean_stale_temps(kernels_dir(cache))

    if exact is not None:
        hit = _cached(cache, exact, cat, spec_text)
        if hit is not None:
            log.info("resolve: %s is cached (%s)", spec_text, hit.release)
            return hit
        tool = _check_tools()  # before any network: a missing tool is the user's to fix
        updated = apt.ensure_lists()
        try:
            plan = resolve(apt, series=None, exact=exact, label=spec_text)
        except UserError:
            if updated:
                raise
            apt.ensure_lists(refresh=True)  # the version may be newer than our lists
            plan = resolve(apt, series=None, exact=exact, label=spec_text)
        return _fetch_plan(apt, plan, spec_text=spec_text, depmod=tool, cache=cache)

    assert series is not None
    cached = [k for k in cached_kernels(cache)
              if k.package_version and in_series(k.package_version, series)]
    newest_cached = dataclasses.replace(cached[0], spec=spec_text) if cached else None

    def fall_back(exc: InfraError) -> Kernel:
        if newest_cached is None or isinstance(exc, IntegrityError):
            raise exc
        note = (f"not the newest {spec_text}: fetching failed ({exc}); the newest cached one, "
                f"{newest_cached.package_version}, was used instead")
        log.warning("%s", note)
        return dataclasses.replace(newest_cached, note=note)

    # Missing tools are the user's to fix, but not worth failing over when a
    # cached entry can serve the run.
    depmod = _check_tools() if newest_cached is None else None
    try:
        # With a cached entry and lists, resolve offline: a run should not wait on
        # the network to learn that the kernel it has is still the newest.
        if not (newest_cached is not None and apt.lists_present()):
            apt.ensure_lists()
        version = resolve_version(apt, series=series, exact=None, label=spec_text)["Version"]
        hit = _cached(cache, version, cat, spec_text)
        if hit is not None:
            log.info("resolve: %s → %s %s, cached (%s)", spec_text, cat.metapackage, version,
                     hit.release)
            return hit
        plan = resolve(apt, series=None, exact=version, label=spec_text)
    except InfraError as exc:
        return fall_back(exc)
    try:
        return _fetch_plan(apt, plan, spec_text=spec_text, depmod=depmod or _check_tools(),
                           cache=cache)
    except InfraError as exc:
        return fall_back(exc)


def _cached(cache: Path, version: str, cat: Catalogue, spec_text: str) -> Kernel | None:
    return kernel_cache.load_entry(kernels_dir(cache) / entry_name(version, cat.flavour),
                                   spec=spec_text)


def _fetch_plan(apt: Apt, plan: Plan, *, spec_text: str, depmod: str, cache: Path) -> Kernel:
    log.info("resolve: %s → %s %s: %s (%.1f MB)", spec_text, apt.catalogue.metapackage,
             plan.version, ", ".join(p.name for p in plan.packages), plan.size / 1e6)
    return _build_entry(apt, plan, spec_text=spec_text, depmod=depmod, cache=cache)
