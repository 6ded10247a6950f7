"""One run's configuration: every option of a run, declared once, checked once.

``RunConfig`` is the one value a run is made from, whichever front made it: `lab
run` and `lab bisect` (argparse), `lab rerun` (its RUN_DIR's records and
matrix.json, and the few options it takes), and plain pytest (the plugin's
``--lab-*`` options).  Each option is one field whose metadata (lab.options.Option)
says its flag, help, check and the fronts it cannot apply to (and why); the
argparse arguments, the pytest options and the pytest arguments `lab run` hands
its pytest are all derived from that table, so a new option is one entry.  The
guest's options are the table's too, in the GuestOptions the config holds.

A field's check runs as the value is made (``__post_init__``), once: the fronts
give text, a value read back from a file is checked the same way, and a mistake
names the option (OptionError; plain pytest says it as argparse says its own, and so
does `lab` for the checks that were argparse's type= before the table, whose messages
stay: Option.argparse_form, Option.argtype).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.errors import UserError
from lab.options import (
    FRONTS,
    GuestOptions,
    Option,
    check_fields,
    opt,
    option_of,
    parse_keep_on_failure,
    parse_port,
    parse_repeat,
    text_of,
)
from lab.paths import SCENARIOS_DIR
from lab.run.shard import Shard, parse_shard

DEFAULT_KERNEL = "debian:7.2"

KCONFIG_ADD = ("one config option for built kernels, composed onto the variant: "
               'CONFIG_X=y|m|n, CONFIG_X=NUMBER or CONFIG_X="TEXT" (repeatable)')


def _text(value: Any) -> str:
    return str(value)


def _path(value: Any) -> Path:
    return Path(value)


def _suite(value: Any) -> Path:
    return Path(value).resolve()


def _keyword(value: Any) -> str:
    if not str(value).strip():
        raise UserError("-k '': give an expression (e.g. -k cancel), or leave -k out to run "
                        "every scenario")
    return str(value)


def _kconfig_addition(value: Any) -> str:
    from lab.kernel.kconfig import parse_addition

    parse_addition(str(value))
    return str(value)


def _shard(value: Any) -> Shard:
    return value if isinstance(value, Shard) else parse_shard(str(value))


def _workers(value: Any) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"--workers {value!r}: invalid int value; give 1 or more (one VM per "
                        "worker)") from None
    if n < 1:
        raise UserError(f"--workers {value}: give 1 or more (one VM per worker)")
    return n


def _interval(value: Any) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise UserError(f"--progress-interval {value}: give seconds, 0 (after every test) "
                        "to 86400")
    return seconds


_BISECT_KERNELS = "--repo with --good/--bad, or --versions, name a bisection's kernels"
_BISECT_ONE_RUN = "a bisection's runs are one `lab run` each, one boot at a time"


@dataclass(frozen=True)
class RunConfig:
    """Every option of a run (see the module's docstring), each checked as it is made."""

    kernels: tuple[str, ...] = opt(
        (), "--kernel", "the kernel to test (repeatable: each is a cell; the forms are "
        "listed below)", parse=_text, metavar="SPEC", many=True,
        helps={"pytest": f"kernel to test (repeatable; default {DEFAULT_KERNEL})",
               "fetch": "a kernel spec (repeatable, as for `lab run`)"},
        absent={"bisect": _BISECT_KERNELS})
    variants: tuple[str, ...] = opt(
        (), "--variant", "config variant for built kernels (debian-src:, git:, worktree:, "
        "tree:): base, aio-off, io_uring-off, debug, debuginfo, combined with '+' "
        "(repeatable: each built kernel x each variant is a cell)", parse=_text,
        metavar="NAME[+NAME]", many=True, one_in=frozenset({"bisect"}),
        helps={"bisect": "config variant (default base)",
               "fetch": "config variant for built kernels (repeatable)"})
    kconfig_add: tuple[str, ...] = opt(
        (), "--kconfig-add", KCONFIG_ADD, parse=_kconfig_addition, metavar="CONFIG_X=V",
        many=True)
    shard: Shard | None = opt(
        None, "--shard", "run shard I of N of the cells x tests (:cell: of the cells, each "
        "shard booting only its own)", parse=_shard, metavar="I/N[:cell]",
        helps={"fetch": "only the kernels `lab run --shard I/N[:cell]` needs (split by cell: "
                        "its own cells')"},
        absent={"bisect": "a bisection runs its target tests whole at every commit"})
    known_issues: Path | None = opt(
        None, "--known-issues", "known issues (default: ./known-issues.toml, else the lab's "
        "own)", parse=_path, metavar="FILE",
        helps={"bisect": "known issues for the runs (default: none, so that no failure "
                         "becomes XFAIL)"})
    keyword: str | None = opt(
        None, "-k", "only scenarios matching this pytest expression", parse=_keyword,
        metavar="EXPR", pytest="-k", pytest_own=True, blank_is_absent=frozenset({"bisect"}),
        helps={"bisect": "the scenarios to bisect (pytest expression)"})
    results: Path | None = opt(
        None, "--results", "parent of the run directory (./results)", parse=_path, metavar="DIR",
        helps={"pytest": "where run directories go (./results)",
               "rerun": "parent of the new run directory (./results)"},
        rerun=True, absent={"bisect": "a bisection's runs go under its state directory "
                                      "(--state)"})
    run_dir: Path | None = opt(
        None, "--run-dir", "use exactly this run directory", parse=_path,
        absent={"run": "`lab run` makes a new one under --results (and hands it to pytest)",
                "bisect": "a bisection's runs go under its state directory (--state)"})
    cache: Path | None = opt(
        None, "--cache", "cache root (default $KERNEL_LAB_CACHE or "
        "$XDG_CACHE_HOME/kernel-lab)", parse=_path, metavar="DIR", rerun=True)
    guest: GuestOptions = field(default_factory=GuestOptions)  # accel, cpus, memory, ...
    ssh_port: int | None = opt(
        None, "--ssh-port", "fixed SSH port on 127.0.0.1 (default: free one)", parse=parse_port,
        argtype=int, metavar="PORT", absent={"bisect": "a bisection's runs each take a free port"})
    suite: Path = opt(
        SCENARIOS_DIR, "--suite", "scenario directory or file (default: scenarios/)",
        parse=_suite, pytest="PATH", pytest_own=True, metavar="DIR")
    workers: int = opt(
        1, "--workers", "pytest-xdist workers, each booting its own VM per cell (boots and "
        "vCPU-saturating races take turns on the host's cores: KERNEL_LAB_CPU_SLOTS, see "
        "README)", parse=_workers, pytest="-n", pytest_own=True, rerun=True,
        argtype=int, metavar="N", absent={"bisect": _BISECT_ONE_RUN})
    repeat: int = opt(
        1, "--repeat", "run each selected test N times (each repetition its own record; a "
        "race reports its overlap each time)", parse=parse_repeat, metavar="N", rerun=True,
        argparse_form=True, helps={"rerun": "run each test N times (default: as the run did)"},
        absent={"bisect": "--runs says how often a bisection runs each commit"})
    progress_interval: float = opt(
        10.0, "--progress-interval", "seconds between a cell's progress lines (0: after "
        "every test)", parse=_interval, metavar="S",
        absent={"bisect": "a bisection's runs write their progress to a log"})
    # After `--` on a `lab run` line: node ids (select), and the rest for pytest.
    select: tuple[str, ...] = opt(
        (), "--", "run only this test: FILE.py::NAME as records show it, or without the "
        "cell parameter (repeatable; `lab run -- NODEID` passes these)", parse=_text,
        many=True, metavar="NODEID", pytest="--lab-select",
        absent={"bisect": "-k chooses a bisection's tests"})
    pytest_args: tuple[str, ...] = opt(
        (), "--", "after --: node ids (FILE.py::TEST, as records show them or without the "
        "cell) select those tests; the rest goes to pytest", parse=_text, many=True,
        metavar="ARG", pytest="--lab-pytest-arg",
        helps={"pytest": "one of pytest's own arguments of this run, as matrix.json keeps "
                         "them for `lab rerun` and reproducers (`lab run -- ARGS` passes "
                         "these)"},
        absent={"bisect": "a bisection's runs are the lab's own `lab run -k EXPR`"})
    # pytest's rootdir, which test ids are relative to: `lab rerun` of a suite outside the
    # lab gives the run's own (None: the lab's choice, see lab.run.runner._collect).
    rootdir: Path | None = opt(
        None, "--rootdir", "pytest's rootdir", parse=_path, pytest="--rootdir",
        pytest_own=True,
        absent={"run": "`lab rerun` sets it from the run, for a suite outside the lab",
                "bisect": "a bisection's suite is rooted as `lab run` roots it"})

    # At the first FAIL, CRASH or HANG the guest stays up for `lab shell --attach`
    # (lab.run.keep); the kernel gets panic=0 so that a panicked guest stays too.
    keep_on_failure: bool = opt(
        False, "--keep-on-failure", "at the first FAIL, CRASH or HANG keep the guest as it "
        "is (paused after a panic), print how to get in (`lab shell --attach RUN_DIR`, gdb "
        "with --gdb) and wait for Ctrl-C; the rest of the run is not run (needs --workers 1)",
        parse=parse_keep_on_failure, switch=True,
        absent={"bisect": "a bisection's runs are unattended: no one gets in"})

    def __post_init__(self) -> None:
        check_fields(self)
        if self.ssh_port is not None and self.workers > 1:
            raise UserError("--ssh-port needs --workers 1 (each worker boots its own VM)")
        if self.keep_on_failure and self.workers > 1:
            raise UserError(f"--keep-on-failure needs --workers 1, not {self.workers} (the "
                            "run waits with the one guest of its first failure)")

    @property
    def kernel_specs(self) -> tuple[str, ...]:
        """The kernels to test: the ones given, else the default."""
        return self.kernels or (DEFAULT_KERNEL,)


# -- the table -------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One option of the table: where it lives in a RunConfig, and what it is."""

    name: str  # the field's name, unique across RunConfig and GuestOptions
    guest: bool  # a field of RunConfig.guest
    field: Field[Any]
    option: Option

    @property
    def default(self) -> Any:
        return self.field.default if self.field.default is not MISSING else None

    @property
    def default_text(self) -> str:
        """The default as a command line gives it (for the help's "{default}")."""
        return text_of(self.default)

    def value(self, config: RunConfig) -> Any:
        return getattr(config.guest if self.guest else config, self.name)


def table() -> Iterator[Entry]:
    """Every option of a run, in the order fronts list them."""
    for f in fields(RunConfig):
        option = option_of(f)
        if option is not None:
            yield Entry(f.name, False, f, option)
        elif f.name == "guest":
            for g in fields(GuestOptions):
                inner = option_of(g)
                assert inner is not None
                yield Entry(g.name, True, g, inner)
        else:
            raise AssertionError(f"RunConfig.{f.name} is not an option")


def make(values: dict[str, Any]) -> RunConfig:
    """A RunConfig from option values by field name (the guest's among them)."""
    guest_names = {f.name for f in fields(GuestOptions)}
    guest = {k: v for k, v in values.items() if k in guest_names}
    rest = {k: v for k, v in values.items() if k not in guest_names}
    return RunConfig(**rest, guest=GuestOptions(**guest))


# -- argparse (`lab run`, `lab bisect`, `lab rerun`) -----------------------------------

REST = "pytest_args"  # the field that holds what follows `--` (node ids are split out)


def add_arguments(parser: argparse.ArgumentParser, front: str) -> None:
    """``front``'s arguments, from the table; each is left None unless given (the field's
    default then), and checked when the RunConfig is made (``from_args``)."""
    assert front in FRONTS and front != "pytest"
    for entry in table():
        flag = entry.option.spelling(front)
        if flag is None:
            continue
        if flag == "--":
            if entry.name == REST:
                text = entry.option.help_for(front).format(default=entry.default_text)
                parser.add_argument(REST, nargs=argparse.REMAINDER, help=text)
            continue
        _add_argument(parser, entry, flag, front)


# `lab fetch`'s options that are a run's: the kernels `lab run` of the same options needs.
# Their values go to lab.commands.fetch as given, which checks them as it always has.
FETCH = ("kernels", "variants", "kconfig_add", "shard", "cache")


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    """`lab fetch`'s run options (FETCH), from the table as `lab run` spells them, with
    the help said the fetch's way where the table has one (``helps["fetch"]``)."""
    for entry in table():
        if entry.name in FETCH:
            flag = entry.option.spelling("run")
            assert flag is not None and flag != "--"
            _add_argument(parser, entry, flag, "fetch")


# `lab shell`'s and `lab exec`'s options that are a run's: they boot the guest `lab run`
# boots for the same kernel, variant and guest options, and keep a run directory.
GUEST_COMMAND = ("kernels", "variants", "kconfig_add", "cache", "results", "ssh_port",
                 *(f.name for f in fields(GuestOptions)))


def add_guest_command_arguments(parser: argparse.ArgumentParser) -> None:
    """`lab shell`'s and `lab exec`'s run options (GUEST_COMMAND), from the table as
    `lab run` spells them; checked when the RunConfig is made (``make``)."""
    for entry in table():
        if entry.name in GUEST_COMMAND:
            flag = entry.option.spelling("run")
            assert flag is not None and flag != "--"
            _add_argument(parser, entry, flag, "run")


def guest_command_given(args: argparse.Namespace) -> dict[str, Any]:
    """The GUEST_COMMAND values a `lab shell`/`lab exec` command line gave."""
    return {name: value for name in GUEST_COMMAND
            if (value := getattr(args, name, None)) is not None and value != []}


def _add_argument(parser: argparse.ArgumentParser, entry: Entry, flag: str,
                  front: str) -> None:
    o = entry.option
    kwargs: dict[str, Any] = {"dest": entry.name, "default": None, "metavar": o.metavar,
                              "help": o.help_for(front).format(default=entry.default_text)}
    if o.switch:
        del kwargs["metavar"]
        kwargs["action"] = "store_true"
    if o.many and front not in o.one_in:
        kwargs["action"] = "append"
    if o.argtype is not None:
        kwargs["type"] = o.argtype
    parser.add_argument(flag, **kwargs)


def given(args: argparse.Namespace, front: str) -> dict[str, Any]:
    """The option values ``front``'s command line gave (by field name)."""
    out: dict[str, Any] = {}
    for entry in table():
        flag = entry.option.spelling(front)
        if flag is None or (flag == "--" and entry.name != REST):
            continue
        value = getattr(args, entry.name, None)
        if entry.name == REST and value is not None:
            value = [a for a in value if a != "--"]
        if front in entry.option.blank_is_absent and isinstance(value, str) \
                and not value.strip():
            value = None
        if value is not None and value != []:
            out[entry.name] = value
    return out


def from_args(args: argparse.Namespace, front: str) -> RunConfig:
    """The RunConfig of a `lab` command line (an OptionError names the option)."""
    return make(given(args, front))


def lab_args(config: RunConfig, *, always: tuple[str, ...] = ()) -> list[str]:
    """`lab run` options for ``config``'s values that are not the defaults, and the
    options named in ``always`` whatever their value (a bisection's runs name the
    accelerator); not what follows --."""
    out: list[str] = []
    for entry in table():
        flag = entry.option.spelling("run")
        if flag is None or flag == "--":
            continue
        value = entry.value(config)
        if entry.option.many:
            for item in value:
                out += [flag, text_of(item)]
        elif entry.option.switch:
            out += [flag] if value else []
        elif value is not None and (value != entry.default or entry.name in always):
            out += [flag, text_of(value)]
    return out


# -- pytest (plain pytest's --lab-* options, and what `lab run` hands pytest) ----------


def add_pytest_options(group: Any) -> None:
    """The plugin's ``--lab-*`` options, from the table; pytest's own (-k, -n, the paths)
    are pytest's.  Defaults are the fields' (lab.run.records reads a few as they are)."""
    for entry in table():
        o = entry.option
        flag = o.spelling("pytest")
        if flag is None or o.pytest_own:
            continue
        text = o.help_for("pytest").format(default=entry.default_text)
        if o.many:
            group.addoption(flag, action="append", default=[], metavar=o.metavar, help=text)
        elif o.switch:
            group.addoption(flag, action="store_true", default=False, help=text)
        else:
            group.addoption(flag, default=entry.default, metavar=o.metavar, help=text)


def pytest_dest(option: Option) -> str:
    """pytest's name for a ``--lab-*`` option's value ("lab_kernel")."""
    flag = option.spelling("pytest")
    assert flag is not None and flag.startswith("--lab-")
    return flag.removeprefix("--").replace("-", "_")


def from_pytest(getoption: Any, *, keyword: str | None) -> RunConfig:
    """The RunConfig of a plain pytest session (``getoption``: pytest's config.getoption;
    ``keyword``: its -k)."""
    values: dict[str, Any] = {"keyword": keyword or None}
    for entry in table():
        o = entry.option
        if o.spelling("pytest") is None or o.pytest_own:
            continue
        value = getoption(pytest_dest(o))
        if value is not None:
            values[entry.name] = value
    return make(values)


def pytest_options(config: RunConfig) -> list[str]:
    """The ``--lab-*`` options for ``config``'s values that are not the defaults (each as
    --opt=VALUE: pytest takes a bare PATH token for an argument when it picks its rootdir)."""
    out: list[str] = []
    for entry in table():
        o = entry.option
        flag = o.spelling("pytest")
        if flag is None or o.pytest_own:
            continue
        value = entry.value(config)
        if o.many:
            out += [f"{flag}={text_of(v)}" for v in value]
        elif o.switch:
            out += [flag] if value else []
        elif value is not None and value != entry.default:
            out.append(f"{flag}={text_of(value)}")
    return out
