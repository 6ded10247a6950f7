"""A run's options are declared once (lab.run.config): every front's options are the
table's, each front has every option the table gives it, and a check runs in one place."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import cli
from lab.errors import UserError
from lab.options import ACCELS, FRONTS, GuestOptions, OptionError
from lab.run import config

REPO = Path(__file__).resolve().parents[1]
ENTRIES = list(config.table())


def _subparser(command: str) -> argparse.ArgumentParser:
    for action in cli._parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise AssertionError("no subcommands")


def _options(command: str) -> dict[str, argparse.Action]:
    """A subcommand's arguments by spelling ("--" for what follows --)."""
    out = {}
    for action in _subparser(command)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for spelling in action.option_strings or ["--"]:
            out[spelling] = action
    return out


# Each command's own options, which are not a run's (a bisection's search, a rerun's choice).
OWN = {
    "run": set(),
    "rerun": {"--", "--failed"},  # "--": RUN_DIR
    "bisect": {"--repo", "--good", "--bad", "--runs", "--bad-if", "--state", "--resume",
               "--versions", "--from", "--to", "--verify-revert", "--no-reuse", "--exec",
               "--timeout"},
}


def _by_spelling(front: str) -> dict[str, config.Entry]:
    out: dict[str, config.Entry] = {}
    for e in ENTRIES:
        spelling = e.option.spelling(front)
        if spelling is not None and not (spelling == "--" and e.name != config.REST):
            out[spelling] = e
    return out


@pytest.mark.parametrize("front", ["run", "rerun", "bisect"])
def test_every_option_of_a_command_is_a_field_of_the_configuration(front: str) -> None:
    stray = set(_options(front)) - set(_by_spelling(front)) - OWN[front]
    assert not stray, f"`lab {front}` options that are no field of RunConfig: {sorted(stray)}"


@pytest.mark.parametrize("front", ["run", "rerun", "bisect"])
def test_a_command_has_every_option_the_table_gives_it_as_the_table_says(front: str) -> None:
    """Missing, or declared by hand beside the table (another help, metavar, check)."""
    have = _options(front)
    for spelling, e in _by_spelling(front).items():
        assert spelling in have, f"`lab {front}` lacks {spelling} (RunConfig.{e.name})"
        action = have[spelling]
        o = e.option
        # A check is the table's: argparse's type= only as the table says (Option.argtype).
        assert action.dest == e.name and action.type is o.argtype, (front, spelling)
        assert action.help == o.help_for(front).format(default=e.default_text), spelling
        if spelling != "--":
            assert action.metavar == o.metavar, spelling
            many = o.many and front not in o.one_in
            assert isinstance(action, argparse._AppendAction) == many, spelling


def test_a_lab_fetch_option_that_is_a_run_option_comes_from_the_table() -> None:
    """`lab fetch --shard 1/2 --kconfig-add ...` fetches what `lab run` of the same options
    needs: the same spelling, metavar, repetition and value as the table's (its help may
    say it the fetch's way)."""
    have = _options("fetch")
    run_options = _by_spelling("run")
    shared = {spelling for spelling in have if spelling in run_options and spelling != "--"}
    assert shared == {"--kernel", "--variant", "--kconfig-add", "--shard", "--cache"}
    assert {run_options[s].name for s in shared} == set(config.FETCH)
    for spelling in shared:
        action, e = have[spelling], run_options[spelling]
        o = e.option
        assert (action.dest, action.type, action.default) == (e.name, o.argtype, None), spelling
        assert action.help == o.help_for("fetch").format(default=e.default_text), spelling
        assert action.metavar == o.metavar, spelling
        assert isinstance(action, argparse._AppendAction) == o.many, spelling
    args = cli._parser().parse_args(["fetch", "debian:7.2", "--kernel", "debian:6.1",
                                     "--variant", "debug", "--kconfig-add", "CONFIG_X=y",
                                     "--shard", "1/2:cell", "--cache", "/tmp/c"])
    made = config.make({n: getattr(args, n) for n in config.FETCH})
    assert (made.kernels, made.variants, made.kconfig_add, str(made.shard), made.cache) == (
        ("debian:6.1",), ("debug",), ("CONFIG_X=y",), "1/2:cell", Path("/tmp/c"))


@pytest.mark.parametrize("front", ["run", "bisect"])
@pytest.mark.parametrize("accel", ACCELS)
def test_every_accelerator_is_taken_by_run_and_bisect(front: str, accel: str) -> None:
    """The drift the table ended: `lab bisect --accel` had lost tcg-single."""
    args = cli._parser().parse_args([front, "--accel", accel])
    assert config.from_args(args, front).guest.accel == accel


def test_a_front_without_an_option_says_why() -> None:
    assert {e.name for e in ENTRIES} >= {"kernels", "accel", "max_reboots", "shard", "repeat"}
    for e in ENTRIES:
        assert set(e.option.absent) <= set(FRONTS), e.name
        for front in FRONTS:
            if e.option.spelling(front) is None:
                assert (e.option.why_absent(front) or "").strip(), (e.name, front)
    # The table's word is what the fronts do: not a bisection's option, so not in bisect.
    assert "--max-reboots" not in _options("bisect")
    assert "--max-reboots" in _options("run")


def test_every_lab_pytest_option_is_a_field_of_the_configuration(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--help"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                              "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    declared = set(re.findall(r"(?<![\w-])--lab-[a-z-]+", res.stdout))
    table = {s for s in _by_spelling("pytest") if s.startswith("--lab-")}
    assert declared - table == set(), f"--lab-* options with no field: {declared - table}"
    assert table - declared == set(), f"fields plain pytest lacks: {table - declared}"
    assert {"--lab-kernel", "--lab-cpus", "--lab-repeat", "--lab-select"} <= declared


def test_a_check_runs_where_the_value_is_made_whoever_makes_it() -> None:
    with pytest.raises(OptionError, match=r"^--memory '2G; id'") as exc:
        config.RunConfig(guest=GuestOptions(memory="2G; id"))
    assert exc.value.for_front("pytest").startswith("argument --lab-memory: '2G; id': give")
    with pytest.raises(OptionError, match="--repeat"):
        config.make({"repeat": "0"})
    with pytest.raises(UserError, match="--ssh-port needs --workers 1"):
        config.RunConfig(ssh_port=2222, workers=2)
    made = config.make({"cpus": "3", "kernels": ["debian:7.2"], "shard": "2/4"})
    assert (made.guest.cpus, made.kernels, str(made.shard)) == (3, ("debian:7.2",), "2/4")
    # What `lab run` hands its pytest reads back as the same configuration.
    handed = config.pytest_options(made)
    assert handed == ["--lab-kernel=debian:7.2", "--lab-shard=2/4", "--lab-cpus=3"]


def _main(argv: list[str]) -> int:
    """`lab ARGV`'s exit status, whether main returns it or argparse exits with it."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        assert isinstance(exc.code, int)
        return exc.code


@pytest.mark.parametrize("front", ["run", "bisect"])
def test_a_command_line_mistake_is_one_line_naming_the_option(
        front: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main([front, "--cpus", "0", "--cache", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err == ("lab: error: argument --cpus: 0: give the guest's vCPUs, 1-64 (default 2; "
                   f"the race suites need at least 2) (see `lab {front} --help`)\n")


_VCPUS = "give the guest's vCPUs, 1-64 (default 2; the race suites need at least 2)"
_MEMORY = "give a size in MiB or GiB such as 2G or 2048M (digits, then M or G)"
_PARAM = ("give one kernel parameter per --append, without spaces or quotes (e.g. --append "
          "nokaslr --append slub_debug=FZ)")
_SECONDS = "give seconds, more than 0 (at most 86400)"
# The messages `lab` printed before its options became one table (f684c55's output, word
# for word): a check that ran as argparse's type= says it as argparse does, with the
# command's --help; a check `lab` made after parsing says it its own way.
OLD_MESSAGES = [
    (["--accel", "foo"], "argument --accel: 'foo': use auto, kvm, tcg, tcg-single", True),
    (["--cpus", "0"], f"argument --cpus: 0: {_VCPUS}", True),
    (["--cpus", "x"], f"argument --cpus: x: {_VCPUS}", True),
    (["--memory", "3X"], f"argument --memory: '3X': {_MEMORY}", True),
    (["--memory", "100M"], "argument --memory: 100M: the guest needs at least 256M", True),
    (["--append", "a b"], f"argument --append: 'a b': {_PARAM}", True),
    (["--boot-timeout", "x"], f"argument --boot-timeout: x: {_SECONDS}", True),
    (["--boot-timeout", "0"], f"argument --boot-timeout: 0: {_SECONDS}", True),
    (["--call-timeout", "0"], f"argument --call-timeout: 0: {_SECONDS}", True),
]
OLD_RUN_MESSAGES = [
    (["--repeat", "0"], "argument --repeat: 0: give how many times to run each test, 1-1000",
     True),
    (["--repeat", "x"], "argument --repeat: x: give how many times to run each test, 1-1000",
     True),
    (["--max-reboots", "-1"], "argument --max-reboots: -1: give 0 or more guest replacements",
     True),
    (["--max-reboots", "x"], "argument --max-reboots: x: give 0 or more guest replacements",
     True),
    (["--workers", "x"], "argument --workers: invalid int value: 'x'", True),
    (["--workers", "0"], "--workers 0: give 1 or more (one VM per worker)", False),
    (["--ssh-port", "x"], "argument --ssh-port: invalid int value: 'x'", True),
    (["--ssh-port", "0"], "--ssh-port 0 is not a TCP port; give 1-65535, or omit it to pick a "
     "free one", False),
    (["-k", ""], "-k '': give an expression (e.g. -k cancel), or leave -k out to run every "
     "scenario", False),
]
_NEEDS_K = ("lab bisect needs -k EXPR (the scenarios whose failure is bisected) or --exec "
            "PROGRAM [ARGS...] (your reproducer)")
OLD_LINES = [
    *[("run", *case) for case in OLD_MESSAGES + OLD_RUN_MESSAGES],
    *[("bisect", *case) for case in OLD_MESSAGES],
    ("bisect", ["-k", ""], _NEEDS_K, False),
    ("bisect", ["--versions", "-k", " "], _NEEDS_K, False),
    ("bisect", ["--versions"], _NEEDS_K, False),
    ("rerun", ["--repeat", "0"], "argument --repeat: 0: give how many times to run each test, "
     "1-1000", True),
    ("rerun", ["--workers", "x"], "argument --workers: invalid int value: 'x'", True),
]


@pytest.mark.parametrize(("front", "argv", "message", "argparse_form"), OLD_LINES,
                         ids=[f"{f}{' '.join(a)}" for f, a, _, _ in OLD_LINES])
def test_a_command_line_mistake_says_what_it_said_before_the_table(
        front: str, argv: list[str], message: str, argparse_form: bool, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A refactor changes no message: scripts and users read them."""
    head = [front, str(tmp_path / "no-run")] if front == "rerun" else [front]
    assert _main([*head, *argv, "--cache", str(tmp_path / "cache")]) == 2
    tail = f" (see `lab {front} --help`)" if argparse_form else ""
    assert capsys.readouterr().err == f"lab: error: {message}{tail}\n"


def test_a_lab_run_command_line_made_from_a_configuration_reads_back_as_it() -> None:
    """What a bisection spawns (lab.bisect.ports) is the configuration it meant."""
    made = config.make({"kernels": ["git:/src/linux@v7.2"], "variants": ["debug"],
                        "kconfig_add": ["CONFIG_NR_CPUS=64"], "keyword": "destroy",
                        "known_issues": "/dev/null", "cache": "/tmp/c", "accel": "tcg-single",
                        "cpus": 3, "append": ["nokaslr", "quiet"], "call_timeout": 300,
                        "repeat": 2, "shard": "1/2:cell", "suite": str(REPO / "scenarios")})
    argv = config.lab_args(made, always=("accel", "memory"))
    assert argv[argv.index("--memory") + 1] == "2G" and "--boot-timeout" not in argv
    again = config.from_args(cli._parser().parse_args(["run", *argv]), "run")
    assert again == made
