"""The small `lab` subcommands: doctor, kernels, fetch, and merge/report/compare/export."""

from __future__ import annotations

from pathlib import Path

from lab.errors import EXIT_OK, EXIT_USER_ERROR
from lab.paths import CACHE_ENV, cache_root


def doctor(cache_opt: Path | None) -> int:
    from lab.host.doctor import apt_command, checks, packages_to_install
    from lab.kernel.resolve import list_kernels

    cache = cache_root(cache_opt)
    try:  # the KVM probe boots a cached kernel, if there is one
        cached, _ = list_kernels(cache)
    except OSError:  # a cache this user may not read: its check says so
        cached = []
    image = cached[0].image if cached else None
    found = checks(cache, image=image)
    for check in found:
        mark = "MISSING" if not check.ok else "note" if check.note else "ok"
        print(f"{mark:8} {check.name}: {check.detail}")
        if not check.ok or check.note:
            print(f"         fix: {check.fix}")
    packages = packages_to_install(found)
    if len(packages) > 1:
        print(f"all the missing Debian packages at once: {apt_command(packages)}")
    return EXIT_OK if all(c.ok for c in found) else EXIT_USER_ERROR


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


def fetch(specs: list[str], cache_opt: Path | None, *, variants: list[str],
          kconfig_add: list[str] | None = None, shard: str | None = None,
          dbg: bool = False) -> int:
    """`lab fetch`: every cell's kernel into the cache (as `lab run` would resolve them);
    with ``shard``, the kernels that `lab run --shard` of the same arguments needs; with
    ``dbg``, each Debian kernel's -dbg vmlinux too (lab.kernel.dbg)."""
    from lab import atomic
    from lab.errors import UserError
    from lab.kernel.resolve import resolve_kernel
    from lab.run.cells import matrix
    from lab.run.shard import parse_shard

    if not specs:
        raise UserError("give a kernel to fetch: lab fetch SPEC (or --kernel SPEC, repeatable)")
    cells = matrix(specs, variants, kconfig_add or [])
    part = parse_shard(shard) if shard is not None else None
    labels = [c.label for c in cells]
    cache = cache_root(cache_opt)
    why = atomic.cannot_publish(cache / "kernels", directory=True)
    if why:  # before a download: it would fail at its first write, with a traceback
        raise UserError(f"the cache {cache}: {why}; give a directory you may write to: "
                        f"--cache DIR or {CACHE_ENV}=DIR")
    if dbg:
        from lab.kernel.spec import DebianSpec, parse_spec

        other = [c.spec for c in cells if not isinstance(parse_spec(c.spec), DebianSpec)]
        if other:  # before any download or build
            raise UserError(f"--dbg: {other[0]} is not a Debian package kernel; only "
                            "debian:SERIES or debian:VERSION kernels have -dbg packages")
    for cell in cells:
        if part is not None and not part.takes_cell(cell.label, cells=labels):
            continue
        k = resolve_kernel(cell.spec, cache=cache, variant=cell.variant)
        print(f"{cell.label} -> {k.release} ({k.image})")
        if dbg:
            from lab.kernel.dbg import fetch_dbg

            print(f"{cell.label} debug symbols -> {fetch_dbg(k, cache)}")
    return EXIT_OK


def _publishable(path: Path, option: str, *, directory: bool = False, example: str) -> None:
    """A UserError when ``path`` cannot be written: something in its way, or no write access."""
    from lab import atomic
    from lab.errors import UserError

    why = atomic.cannot_publish(path, directory=directory)
    if why:
        raise UserError(f"{option} {path}: {why}; give {example} where you may write")


def merge(runs: list[Path], into: Path, *, argv: list[str],
          known_issues: Path | None = None) -> int:
    """`lab merge`: the shards combined; exits as `lab run` would for the merged run."""
    import shlex

    from lab.results import known, report, summary
    from lab.results import merge as merge_mod
    from lab.results.verdict import exit_line

    def verdicts(path: Path) -> list[str]:
        from lab.results.record import read_records
        return [r.verdict for r in read_records(path)]

    # Every check before anything is written: the known issues the report applies, and
    # whether --into can be made at all (merge checks the inputs, then writes).
    issues = known.load(known.path_for(known_issues))
    _publishable(into, "--into", directory=True, example="a new directory")
    done = merge_mod.merge(runs, into, command=f"cd {shlex.quote(str(Path.cwd()))} && "
                                              f"{shlex.join(argv)}")
    for dup in done.duplicates:
        print(f"lab merge: skipped {dup}: the same records as another input")
    for shard in done.missing_shards:
        print(f"lab merge: shard {shard} is missing: its tests are MISS")
    for torn in done.torn:
        print(f"lab merge: {torn}: its test is MISS")
    result = summary.summarize(done.path, issues=issues)
    report.write(done.path, issues=issues)
    print(f"lab merge: {len(done.inputs)} run(s) -> {done.path}: {done.records} records, "
          f"{done.miss} MISS")
    for line in summary.summary_lines(result):
        print(line)
    code = int(result["exit_code"])
    print(f"lab merge: {exit_line(code, verdicts(done.path))}")
    return code


def report(run: Path, *, baseline: Path | None, history: list[Path],
           known_issues: Path | None) -> int:
    from lab.errors import UserError
    from lab.results import known
    from lab.results import report as report_mod

    if report_mod.is_bisection(run):  # a `lab bisect` state directory
        if baseline is not None or history or known_issues is not None:
            raise UserError(f"{run} is a bisection: --baseline, --history and "
                            "--known-issues are for run directories")
        print(report_mod.write_bisection(run))
        return EXIT_OK
    issues = known.load(known.path_for(known_issues))
    path = report_mod.write(run, baseline=baseline, history=history, issues=issues)
    print(path)
    return EXIT_OK


def compare(base: Path, new: Path, *, history: list[Path], known_issues: Path | None) -> int:
    """`lab compare`: the difference as text; non-zero when a regression or a lost check
    gates it (lab.errors.COMPARE_EXIT_CODES)."""
    from lab.results import known
    from lab.results import report as report_mod

    issues = known.load(known.path_for(known_issues))
    new_run = report_mod.load_run(new, what="NEW")
    base_run = report_mod.load_run(base, what="BASE")
    older = [report_mod.load_run(h, what="--history") for h in history]
    ctx = report_mod.context(new_run, baseline=base_run, history=older, issues=issues)
    print(report_mod.render_text(ctx), end="")
    return int(ctx["comparison"]["exit_code"])


def export_kcidb(run: Path, output: Path | None, *, origin: str) -> int:
    """`lab export --kcidb`: the run as KCIDB JSON, to standard output or FILE."""
    import json
    import re

    from lab import atomic
    from lab.errors import UserError
    from lab.results import kcidb
    from lab.results import report as report_mod

    if not re.fullmatch(r"[a-z0-9_]+", origin):
        raise UserError(f"--origin {origin!r}: KCIDB origins are lowercase letters, digits "
                        "and '_' (e.g. kernel_lab)")
    loaded = report_mod.load_run(run)
    if output is not None:
        _publishable(output, "-o", example="a file such as kcidb.json")
    text = json.dumps(kcidb.export(loaded.records, run=run.resolve().name, origin=origin,
                                   catalogue=loaded.claims or ()), indent=1) + "\n"
    if output is None:
        print(text, end="")
    else:
        atomic.write_text(output, text)
    return EXIT_OK
