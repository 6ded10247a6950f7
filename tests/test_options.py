"""The guests' options: strict parsers (memory reaches a shell), and the one value the
CLI, plain pytest, bisection and reproducers share."""

from __future__ import annotations

import pytest

from lab.errors import UserError
from lab.options import (
    GuestOptions,
    OptionError,
    parse_cpus,
    parse_max_reboots,
    parse_memory,
    parse_param,
)
from lab.run.config import RunConfig, pytest_options


@pytest.mark.parametrize("text, want", [("2G", "2G"), ("2048M", "2048M"), (" 4G ", "4G"),
                                        ("256M", "256M")])
def test_memory_sizes_virtme_ng_takes(text: str, want: str) -> None:
    assert parse_memory(text) == want


@pytest.mark.parametrize("text", [
    "2G; touch /tmp/pwned",  # virtme-ng hands --memory to a shell: never a command
    "$(reboot)", "2G 3G", "2g", "2", "2GB", "1.5G", "0G", "02G", "-1G", "", "128M", "2T",
])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(UserError, match=r"--memory"):
        parse_memory(text)


@pytest.mark.parametrize("text", ["nokaslr", "slub_debug=FZ", "dyndbg=+p", "a.b=1,2",
                                  "console=ttyS0,115200n8", "crashkernel=256M@16M",
                                  "trace_event=sched:*", "kasan.fault=report", "a-b_c%d/e"])
def test_one_kernel_parameter(text: str) -> None:
    assert parse_param(text) == text


@pytest.mark.parametrize("text", ["a b", "x='1'", 'x="1 2"', "", "a\\b", "a\tb", "é"])
def test_a_parameter_is_one_word_without_quotes(text: str) -> None:
    with pytest.raises(UserError, match="one kernel parameter"):
        parse_param(text)


@pytest.mark.parametrize("text", [
    "quiet;id", "a$(id)", "a${IFS}", "a`id`", "a|id", "a&id", "a>b", "a<b", "(a)", "a!b",
    "#a", "a~", "a?", "a[1]", "a{b}", "a^b", "a\nb", "a\n", "a\x01", "a\x7f", "-a",
    "--exec=id",
])
def test_a_parameter_holds_nothing_a_shell_reads(text: str) -> None:
    """Letters, digits and _-.,:=/+@%* only, whatever passes the value on (a shell or not):
    one line that says which character is not one of them."""
    with pytest.raises(UserError, match="one kernel parameter per --append") as exc:
        parse_param(text)
    assert "\n" not in str(exc.value) and str(exc.value).startswith(f"--append {text!r}: ")


def test_numbers_are_checked() -> None:
    assert parse_cpus("3") == 3
    for bad in ("0", "-1", "x", "65"):
        with pytest.raises(UserError, match="--cpus"):
            parse_cpus(bad)
    assert parse_max_reboots("0") == 0
    with pytest.raises(UserError, match="--max-reboots"):
        parse_max_reboots("-1")
    for bad in (0, -1.0, "x"):
        with pytest.raises(UserError, match="--boot-timeout"):
            GuestOptions(boot_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="--accel"):
        GuestOptions(accel="qemu")


def test_argparse_form_names_the_option_once() -> None:
    with pytest.raises(OptionError) as exc:
        GuestOptions(memory="2G;x")
    assert str(exc.value).startswith("--memory '2G;x': give a size")
    assert exc.value.for_front("pytest").startswith("argument --lab-memory: '2G;x': give a size")
    assert GuestOptions(memory="4G").memory == "4G"


def test_one_value_for_lab_run_pytest_and_matrix_json() -> None:
    g = GuestOptions(accel="tcg", cpus=4, memory="4G", append=("nokaslr", "quiet"),
                     call_timeout=300.0)
    # `lab run` options: what differs from the defaults, and what is always named.
    assert g.lab_args() == ["--accel", "tcg", "--cpus", "4", "--memory", "4G",
                            "--append", "nokaslr", "--append", "quiet",
                            "--call-timeout", "300"]
    assert GuestOptions().lab_args(always=("accel", "cpus", "memory")) == [
        "--accel", "auto", "--cpus", "2", "--memory", "2G"]
    handed = pytest_options(RunConfig(guest=g))
    assert "--lab-memory=4G" in handed and "--lab-append=quiet" in handed
    assert GuestOptions.from_dict(g.to_dict()) == g
    with pytest.raises(UserError, match="--memory"):  # a hand-edited matrix.json
        GuestOptions.from_dict({**g.to_dict(), "memory": "4G; id"})
