"""The `lab` command: parse arguments and dispatch; no logic lives here."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from lab.errors import EXIT_USER_ERROR, LabError
from lab.vm.accel import ACCELS

log = logging.getLogger("lab")


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (no usage block) and exit 2, like the lab's own."""

    def error(self, message: str) -> NoReturn:
        print(f"lab: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


class _Version(argparse.Action):
    """--version, worked out only when asked (from a checkout it asks git for the commit)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from lab.version import describe

        print(describe())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lab", description="Test Linux async-I/O syscalls in QEMU.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", nargs=0, action=_Version,
                   help="the version (and the commit, from a git checkout)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="boot kernels and run the scenario suites")
    r.add_argument("--kernel", action="append", default=[], metavar="SPEC",
                   help="debian:6.1|6.12|7.2|7.3, debian:VERSION, or a bzImage path "
                        "[,modules=DIR] (repeatable; default debian:7.2)")
    r.add_argument("--variant", action="append", default=[], metavar="NAME[+NAME]",
                   help="config variant for built kernels (debian-src:, git:, tree:): "
                        "base, aio-off, io_uring-off, debug, combined with '+' (repeatable: "
                        "each built kernel x each variant is a cell)")
    r.add_argument("--shard", metavar="I/N", help="run shard I of N of the cells x tests")
    r.add_argument("--known-issues", type=Path, metavar="FILE",
                   help="known issues (default: ./known-issues.toml, else the lab's own)")
    r.add_argument("-k", dest="keyword", help="only scenarios matching this pytest expression")
    r.add_argument("--results", type=Path, help="parent of the run directory (./results)")
    r.add_argument("--cache", type=Path, help="cache root (default $KERNEL_LAB_CACHE or "
                   "$XDG_CACHE_HOME/kernel-lab)")
    r.add_argument("--accel", default="auto", choices=ACCELS,
                   help="auto: KVM if a real probe boot works, else TCG")
    r.add_argument("--ssh-port", type=int, help="fixed SSH port on 127.0.0.1 (default: free one)")
    r.add_argument("--suite", type=Path, help="scenario directory or file (default: scenarios/)")
    r.add_argument("--workers", type=int, default=1,
                   help="pytest-xdist workers, each booting its own VM per cell (boots and "
                   "vCPU-saturating races take turns on the host's cores: "
                   "KERNEL_LAB_CPU_SLOTS, see README)")
    r.add_argument("pytest_args", nargs=argparse.REMAINDER,
                   help="after --: extra pytest arguments")

    b = sub.add_parser("bisect", help="find the commit (or Debian release) that broke a scenario",
                       description="lab bisect --repo PATH --good REV --bad REV -k EXPR | "
                       "lab bisect --resume DIR | lab bisect --versions -k EXPR")
    b.add_argument("--repo", type=Path, help="your kernel git tree (only read)")
    b.add_argument("--good", metavar="REV", help="a revision where the scenarios pass")
    b.add_argument("--bad", metavar="REV", help="a later revision where they fail")
    b.add_argument("-k", dest="keyword", help="the scenarios to bisect (pytest expression)")
    b.add_argument("--variant", metavar="NAME[+NAME]", help="config variant (default base)")
    b.add_argument("--runs", metavar="N|auto",
                   help="runs per commit; auto: statistical, as many as needed (default: 1, "
                        "auto when the bad endpoint is flaky or a scenario is marked flaky)")
    b.add_argument("--bad-if", metavar="fail|crash|splat:GLOB",
                   help="what makes a run bad (default: what the bad endpoint shows)")
    b.add_argument("--state", type=Path, help="state directory (default results/<time>-bisect-*)")
    b.add_argument("--resume", type=Path, metavar="DIR", help="go on with the bisection in DIR")
    b.add_argument("--versions", action="store_true",
                   help="bisect Debian's prebuilt kernels in version order (no builds)")
    b.add_argument("--from", dest="from_version", metavar="V", help="--versions: oldest")
    b.add_argument("--to", dest="to_version", metavar="V", help="--versions: newest")
    b.add_argument("--verify-revert", action="store_true",
                   help="build the bad endpoint with the culprit reverted and test it")
    b.add_argument("--no-reuse", action="store_true",
                   help="do not reuse runs from earlier bisections of the same tree and config")
    b.add_argument("--cache", type=Path)
    b.add_argument("--suite", type=Path, help="scenario directory (default: scenarios/)")
    b.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))

    d = sub.add_parser("doctor", help="check the host's prerequisites")
    d.add_argument("--cache", type=Path)

    k = sub.add_parser("kernels", help="list cached kernels and what can be fetched")
    k.add_argument("--cache", type=Path)

    f = sub.add_parser("fetch", help="fetch (or build) kernels into the cache")
    f.add_argument("spec", nargs="*", help="kernel specs (as --kernel)")
    f.add_argument("--kernel", action="append", default=[], metavar="SPEC",
                   help="a kernel spec (repeatable, as for `lab run`)")
    f.add_argument("--variant", action="append", default=[], metavar="NAME[+NAME]",
                   help="config variant for built kernels (repeatable)")
    f.add_argument("--cache", type=Path)

    m = sub.add_parser("merge", help="combine shard run directories into one run")
    m.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    m.add_argument("--into", type=Path, required=True, metavar="DIR",
                   help="the merged run directory (new)")

    rp = sub.add_parser("report", help="write RUN_DIR/report.html (or a bisection's, "
                        "given its state directory)")
    rp.add_argument("run", type=Path, metavar="RUN_DIR",
                    help="a run directory, or a `lab bisect` state directory")
    rp.add_argument("--baseline", type=Path, metavar="RUN_DIR",
                    help="compare with this run (regressions, fixes, new splats)")
    rp.add_argument("--history", type=Path, action="append", default=[], metavar="RUN_DIR",
                    help="an older run, oldest first (repeatable), to find unstable tests")
    rp.add_argument("--known-issues", type=Path, metavar="FILE")

    c = sub.add_parser("compare", help="print what changed from BASE to NEW; exit 1 on a "
                       "regression")
    c.add_argument("base", type=Path, metavar="BASE")
    c.add_argument("new", type=Path, metavar="NEW")
    c.add_argument("--history", type=Path, action="append", default=[], metavar="RUN_DIR")
    c.add_argument("--known-issues", type=Path, metavar="FILE")

    e = sub.add_parser("export", help="export a run for other systems")
    e.add_argument("--kcidb", action="store_true", required=True,
                   help="KernelCI's KCIDB JSON (schema v5.3)")
    e.add_argument("run", type=Path, metavar="RUN_DIR")
    e.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: standard output")
    e.add_argument("--origin", default="kernel_lab", help="the KCIDB origin (CI system name)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    try:
        return _dispatch(args, argv)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return EXIT_USER_ERROR


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    from lab import commands

    if args.command == "run":
        from lab.run.runner import RunOptions, run

        extra = [a for a in args.pytest_args if a != "--"]
        opts = RunOptions(kernels=args.kernel, keyword=args.keyword, results=args.results,
                          cache=args.cache, accel=args.accel, ssh_port=args.ssh_port,
                          workers=args.workers, variants=args.variant, shard=args.shard,
                          known_issues=args.known_issues, pytest_args=extra,
                          **({"suite": args.suite.resolve()} if args.suite else {}))
        return run(opts, argv=["lab", *argv])
    if args.command == "bisect":
        from lab.bisect.command import BisectOptions, bisect

        bopts = BisectOptions(
            keyword=args.keyword, repo=args.repo, good=args.good, bad=args.bad,
            variant=args.variant, runs=args.runs, bad_if=args.bad_if, state=args.state,
            resume=args.resume, versions=args.versions, from_version=args.from_version,
            to_version=args.to_version, verify_revert=args.verify_revert, cache=args.cache,
            accel=args.accel, reuse=not args.no_reuse,
            **({"suite": args.suite.resolve()} if args.suite else {}))
        return bisect(bopts, argv=["lab", *argv])
    if args.command == "doctor":
        return commands.doctor(args.cache)
    if args.command == "kernels":
        return commands.kernels(args.cache)
    if args.command == "fetch":
        return commands.fetch([*args.spec, *args.kernel], args.cache, variants=args.variant)
    if args.command == "merge":
        return commands.merge(args.runs, args.into, argv=["lab", *argv])
    if args.command == "report":
        return commands.report(args.run, baseline=args.baseline, history=args.history,
                               known_issues=args.known_issues)
    if args.command == "compare":
        return commands.compare(args.base, args.new, history=args.history,
                                known_issues=args.known_issues)
    if args.command == "export":
        return commands.export_kcidb(args.run, args.output, origin=args.origin)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
