"""The small `lab` subcommands: doctor, kernels, fetch."""

from __future__ import annotations

from pathlib import Path

from lab.errors import EXIT_OK, EXIT_USER_ERROR
from lab.paths import cache_root


def doctor(cache_opt: Path | None) -> int:
    from lab.host.doctor import checks
    from lab.kernel.resolve import list_kernels

    cache = cache_root(cache_opt)
    cached, _ = list_kernels(cache)
    image = cached[0].image if cached else None
    bad = 0
    for check in checks(cache, image=image):
        mark = "ok " if check.ok else "MISSING"
        print(f"{mark:8} {check.name}: {check.detail}")
        if not check.ok:
            bad += 1
            print(f"         fix: {check.fix}")
    return EXIT_OK if bad == 0 else EXIT_USER_ERROR


def kernels(cache_opt: Path | None) -> int:
    from lab.kernel.resolve import list_kernels, list_versioned

    cache = cache_root(cache_opt)
    cached, available = list_kernels(cache)
    print(f"cached ({cache}):")
    for k in cached:
        # Built kernels show their variant where Debian's show their package version.
        detail = k.package_version if k.source == "debian" else f"--variant {k.variant}"
        print(f"  {k.spec:22} {k.release:28} {detail or '':24} {k.image}")
    if not cached:
        print("  (none)")
    print("available from Debian (newest per series; `lab fetch debian:SERIES`):")
    for series, version, suite in available:
        print(f"  debian:{series:16} {version:28} {suite}")
    if not available:
        print("  (unknown until the first fetch updates the package lists)")
    versioned = list_versioned(cache)
    if versioned:
        usable = [v for v in versioned if v.usable]
        print(f"versioned kernels ({len(usable)} bootable; `lab fetch debian:VERSION`, "
              "`lab bisect --versions` walks them in this order):")
        for v in usable:
            print(f"  {v.upstream:16} debian:{v.package_version:26} {v.suite}")
        unusable = [v for v in versioned if not v.usable]
        if unusable:
            print(f"listed but not bootable here ({len(unusable)}: the image without its "
                  "modules in the index):")
            for v in unusable:
                print(f"  {v.upstream:16} debian:{v.package_version:26} {v.suite}: "
                      f"{v.why_unusable}")
    return EXIT_OK


def fetch(spec: str, cache_opt: Path | None, *, variant: str | None = None) -> int:
    from lab.kernel.resolve import resolve_kernel

    k = resolve_kernel(spec, cache=cache_root(cache_opt), variant=variant)
    print(f"{spec} -> {k.release} ({k.image})")
    return EXIT_OK
