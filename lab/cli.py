"""The `lab` command: parse arguments and dispatch; no logic lives here."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import NoReturn

from lab.errors import (
    COMPARE_EXIT_CODES,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    RUN_EXIT_CODES,
    LabError,
    UserError,
)
from lab.options import OptionError
from lab.results.text import printable
from lab.run import config as run_config

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


RUN_EXAMPLES = """\
  lab run                                    debian:7.2, every suite
  lab run --kernel debian:6.1 --kernel debian:7.2 -k cancel
  lab run --kernel ./arch/x86/boot/bzImage --memory 4G --append nokaslr
  lab run --kernel git:$HOME/linux@v7.2 --variant debug --suite scenarios/aio
  lab run --kernel worktree:. --kconfig-add CONFIG_DEBUG_LIST=y -k destroy
  lab run -- scenarios/aio/test_io_cancel.py::test_cancel_completed_is_einval
  lab run --kernel debian:7.2.13-1 --accel tcg --cpus 2 --memory 2G -- -x"""


def _run_epilog() -> str:
    """`lab run --help`'s tail: every kernel form, every exit status, examples."""
    from lab.kernel.spec import valid_forms

    # One form per line: a form starts with "kind:" or an upper-case word (IMAGE).
    forms = re.split(r", (?=[a-z][a-z0-9-]*:|[A-Z]+\b)", valid_forms())
    wrap = textwrap.TextWrapper(width=88, initial_indent="  ", subsequent_indent="      ")
    lines = ["kernel specs (--kernel; default debian:7.2):"]
    lines += [wrap.fill(form) for form in forms]
    lines += ["", "exit status:"]
    codes = textwrap.TextWrapper(width=88, initial_indent="  ", subsequent_indent=" " * 7)
    lines += [codes.fill(f"{code:>3}  {meaning}") for code, meaning in RUN_EXIT_CODES.items()]
    lines += ["", "examples:", RUN_EXAMPLES]
    return "\n".join(lines)


def _compare_epilog() -> str:
    """`lab compare --help`'s tail: what each exit status means."""
    codes = textwrap.TextWrapper(width=88, initial_indent="  ", subsequent_indent=" " * 7)
    return "\n".join(["exit status:", *(codes.fill(f"{code:>3}  {meaning}")
                                        for code, meaning in COMPARE_EXIT_CODES.items())])


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lab", description="Test Linux async-I/O syscalls in QEMU.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", nargs=0, action=_Version,
                   help="the version (and the commit, from a git checkout)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="boot kernels and run the scenario suites",
                       description="Boot each kernel (x variant) under QEMU and run the "
                       "scenario suites in it.",
                       epilog=_run_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    run_config.add_arguments(r, "run")

    rr = sub.add_parser("rerun", help="run a run again: the same pinned kernels, options and "
                        "selection, or only what failed",
                        description="Run RUN_DIR's tests again from its records and "
                        "matrix.json: its kernels pinned to what ran (debian:7.2 as the "
                        "package version that ran, git: as the commit), its variants, guest "
                        "options and accelerator, and its selection.",
                        epilog="--failed runs FAIL, CRASH, HANG and INFRA again, and the "
                        "tests that got no verdict (NOTRUN, MISS); not XFAIL (a known issue "
                        "expects it) nor INCONCLUSIVE. Exit status as for `lab run`.")
    rr.add_argument("run", type=Path, metavar="RUN_DIR")
    rr.add_argument("--failed", action="store_true",
                    help="only the tests that failed or got no verdict")
    run_config.add_arguments(rr, "rerun")

    b = sub.add_parser("bisect", help="find the commit (or Debian release) that broke a scenario",
                       description="lab bisect --repo PATH --good REV --bad REV -k EXPR | "
                       "lab bisect --repo PATH --good REV --bad REV --exec PROGRAM [ARGS] | "
                       "lab bisect --resume DIR | lab bisect --versions -k EXPR")
    b.add_argument("--repo", type=Path, help="your kernel git tree (only read)")
    b.add_argument("--good", metavar="REV", help="a revision where the scenarios pass")
    b.add_argument("--bad", metavar="REV", help="a later revision where they fail")
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
                   help="do not reuse runs from earlier bisections of the same tree and config "
                        "(reused only when the lab's code, the accelerator and the known "
                        "issues are the same too)")
    # The options its runs share with `lab run` (lab.run.config says which and why not).
    run_config.add_arguments(b, "bisect")
    b.add_argument("--timeout", metavar="S",
                   help="--exec: seconds the program may run before it is HANG (default 300)")
    b.add_argument("--exec", dest="exec_", nargs=argparse.REMAINDER,
                   metavar="PROGRAM [ARGS...]",
                   help="bisect your own program instead of -k's scenarios (last: the rest "
                        "of the line is its arguments): each run is `lab exec` of it")

    x = sub.add_parser("exec", help="run your own program (a reproducer) in each kernel's "
                       "guest, as one test with the lab's verdicts",
                       description="lab exec --kernel SPEC [--kernel SPEC ...] [--timeout S] "
                       "-- PROGRAM [ARGS...]: PROGRAM (an ELF binary, a #! script, or a .c "
                       "file built with cc -O2 -pthread) runs as root in the guest `lab run` "
                       "boots. Exit 0 and no splat: PASS; a non-zero exit: FAIL; a splat: "
                       "FAIL, or CRASH when fatal (as is the guest dying); past --timeout: "
                       "HANG. Exit status as for `lab run`.",
                       epilog=_run_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("--timeout", metavar="S",
                   help="seconds the program may run before it is HANG (default 300)")
    run_config.add_guest_command_arguments(x)
    x.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS...]",
                   help="the program to run and its arguments")

    d = sub.add_parser("doctor", help="check the host's prerequisites")
    d.add_argument("--cache", type=Path)

    k = sub.add_parser("kernels", help="list cached kernels and what can be fetched")
    k.add_argument("--cache", type=Path)

    f = sub.add_parser("fetch", help="fetch (or build) kernels into the cache")
    f.add_argument("spec", nargs="*", help="kernel specs (as --kernel)")
    run_config.add_fetch_arguments(f)  # --kernel, --variant, --kconfig-add, --shard, --cache
    f.add_argument("--dbg", action="store_true",
                   help="also Debian's debug symbols: the vmlinux of each Debian kernel's "
                        "-dbg package (a 1.2 GB download for 7.2; lab.kernel.dbg)")

    sh = sub.add_parser("shell", help="boot the guest a run boots and open a root shell in "
                        "it, or run one command there",
                        description="Boot one kernel's guest as `lab run` boots it (NVMe, "
                        "agent, accelerator) and, on a terminal, open a root shell in it; "
                        "with `-- CMD ARGS` run that command as root and exit with its "
                        "status. Kernel splats are printed as they appear and listed at "
                        "the end.")
    sh.add_argument("--raw", action="store_true",
                    help="the command's output to a terminal as it comes (default: its "
                    "control characters spelled out, as the guest's kernel is under test)")
    sh.add_argument("--attach", type=Path, metavar="RUN_DIR",
                    help="get into the guest a `lab run --keep-on-failure` keeps (it waits "
                    "after its first failure) instead of booting one; no run options")
    run_config.add_guest_command_arguments(sh)
    sh.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                    help="the command to run in the guest (an argv: for shell syntax, "
                    "-- sh -c '...')")

    m = sub.add_parser("merge", help="combine shard run directories into one run")
    m.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    m.add_argument("--into", type=Path, required=True, metavar="DIR",
                   help="the merged run directory (new)")
    m.add_argument("--known-issues", type=Path, metavar="FILE",
                   help="known issues the report lists (default: ./known-issues.toml, else "
                   "the lab's own)")

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
                       "regression, 5 on a lost check", epilog=_compare_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
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
        print(printable(f"lab: error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`lab kernels | head`): nothing more can be said to it
        # (stdout to /dev/null, or Python complains again at exit).  The status is a
        # shell's for a command that SIGPIPE ended, never 0: whatever the command was
        # doing (a run, its verdicts) did not finish.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except PermissionError as exc:
        if exc.filename is None:
            raise
        # Another user's files: a cache or run directory a run as root left behind.
        print(f"lab: error: {exc.strerror}: {exc.filename}; make it yours (sudo chown -R "
              f"$USER: ...) or give another directory (--cache, --results)", file=sys.stderr)
        return EXIT_USER_ERROR


def _config(values: dict[str, object], front: str) -> run_config.RunConfig:
    """``front``'s RunConfig; a refusal the check made as argparse's type= before the
    table (Option.argparse_form) said as argparse says it, as it always was."""
    try:
        return run_config.make(values)
    except OptionError as exc:
        if not exc.option.argparse_form:
            raise
        _Parser(prog=f"lab {front}").error(exc.for_front(front))


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    from lab import commands

    if args.command == "run":
        from lab.run.runner import run

        return run(_config(run_config.given(args, "run"), "run"), argv=["lab", *argv])
    if args.command == "rerun":
        from lab.run import rerun
        from lab.run.runner import run

        given = run_config.given(args, "rerun")
        _config(given, "rerun")  # the command line's own mistakes, before the run's
        return run(rerun.options(args.run, failed=args.failed, given=given),
                   argv=["lab", *argv])
    if args.command == "bisect":
        from lab.bisect.command import BisectOptions, bisect

        bopts = BisectOptions(
            run=_config(run_config.given(args, "bisect"), "bisect"), repo=args.repo,
            good=args.good,
            bad=args.bad, runs=args.runs, bad_if=args.bad_if, state=args.state,
            resume=args.resume, versions=args.versions, from_version=args.from_version,
            to_version=args.to_version, verify_revert=args.verify_revert,
            reuse=not args.no_reuse, exec_=tuple(args.exec_ or ()), timeout=args.timeout)
        return bisect(bopts, argv=["lab", *argv])
    if args.command == "exec":
        from lab.inside.exec import exec_

        return exec_(_config(run_config.guest_command_given(args), "run"), args.program,
                     timeout=args.timeout, argv=["lab", *argv])
    if args.command == "doctor":
        return commands.doctor(args.cache)
    if args.command == "kernels":
        return commands.kernels(args.cache)
    if args.command == "fetch":
        return commands.fetch([*args.spec, *(args.kernels or ())],
                              None if args.cache is None else Path(args.cache),
                              variants=args.variants or [], kconfig_add=args.kconfig_add or [],
                              shard=args.shard, dbg=args.dbg)
    if args.command == "shell":
        from lab.inside.shell import shell

        command = args.command_argv[1:] if args.command_argv[:1] == ["--"] \
            else args.command_argv
        if args.attach is not None:
            from lab.inside.attach import attach

            given = run_config.guest_command_given(args)
            if given:
                flag = next(e.option.flag for e in run_config.table() if e.name in given)
                raise UserError(f"lab shell --attach takes no run options (the kept guest "
                                f"has its own), and {flag} was given")
            return attach(args.attach, command, raw=args.raw)
        return shell(_config(run_config.guest_command_given(args), "run"), command,
                     raw=args.raw, argv=["lab", *argv])
    if args.command == "merge":
        return commands.merge(args.runs, args.into, argv=["lab", *argv],
                              known_issues=args.known_issues)
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
