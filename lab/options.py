"""The options a run gives its guests: accelerator, vCPUs, memory, kernel parameters,
timeouts and the reboot limit, checked once wherever they come from.

`lab run` and `lab bisect` take them as ``--cpus``, ``--memory``..., plain pytest as
``--lab-cpus``, ``--lab-memory``...; both go through the parsers here, so a value
`lab run` refuses is refused under plain pytest too.  The checks are strict because
of where the values go: virtme-ng hands ``--memory`` to a shell as it is (``--memory
"2G; rm -rf ~"`` would run the command on the host), and splits each ``--append`` on
spaces, so a kernel parameter is one word without quotes.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from lab.errors import UserError

# "auto": KVM if a real probe boot works, else TCG (lab.vm.accel).
ACCELS = ("auto", "kvm", "tcg", "tcg-single")

_MEMORY = re.compile(r"^([1-9][0-9]{0,6})([MG])$")
# The guest's kernel, virtme-ng's initramfs and the host root's page cache: a guest
# with less does not reach the agent (QEMU's own minimum is far lower).
MIN_MEMORY_MB = 256
# One kernel parameter as virtme-ng passes it: printable, no space, no quote, no
# backslash (it shlex-splits each --append; a space would make two parameters).
_PARAM = re.compile(r"^[!#-&(-\[\]-~]+$")


def parse_memory(text: str) -> str:
    """A guest memory size as virtme-ng and QEMU take it: digits and M or G ("2G", "2048M")."""
    m = _MEMORY.match(text.strip())
    if m is None:
        raise UserError(f"--memory {text!r}: give a size in MiB or GiB such as 2G or 2048M "
                        "(digits, then M or G)")
    mb = int(m.group(1)) * (1024 if m.group(2) == "G" else 1)
    if mb < MIN_MEMORY_MB:
        raise UserError(f"--memory {text}: the guest needs at least {MIN_MEMORY_MB}M")
    return f"{m.group(1)}{m.group(2)}"


def parse_cpus(text: str | int) -> int:
    """A guest's vCPUs: 1 or more (the race suites need 2 to race at all)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1 or n > 64:
        raise UserError(f"--cpus {text}: give the guest's vCPUs, 1-64 (default 2; the race "
                        "suites need at least 2)")
    return n


def parse_param(text: str) -> str:
    """One kernel command-line parameter ("nokaslr", "slub_debug=FZ")."""
    if not _PARAM.match(text):
        raise UserError(f"--append {text!r}: give one kernel parameter per --append, "
                        "without spaces or quotes (e.g. --append nokaslr --append "
                        "slub_debug=FZ)")
    return text


def _seconds(flag: str) -> Callable[[str | float], float]:
    def parse(text: str | float) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value <= 86400:
            raise UserError(f"{flag} {text}: give seconds, more than 0 (at most 86400)")
        return value
    return parse


parse_boot_timeout = _seconds("--boot-timeout")
parse_call_timeout = _seconds("--call-timeout")


def parse_max_reboots(text: str | int) -> int:
    """Guest replacements allowed per cell and worker before the run stops (0: none)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise UserError(f"--max-reboots {text}: give 0 or more guest replacements")
    return n


def parse_repeat(text: str | int) -> int:
    """How many times each selected test runs (1: once)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 1000:
        raise UserError(f"--repeat {text}: give how many times to run each test, 1-1000")
    return n


def parse_accel(text: str) -> str:
    if text not in ACCELS:
        raise UserError(f"--accel {text!r}: use {', '.join(ACCELS)}")
    return text


T = TypeVar("T")


def argtype(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse ``type=`` (pytest's options too): its UserError becomes
    argparse's one-line "argument --x: ..." error (which names the option itself)."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(re.sub(r"^--[a-z-]+ ", "", str(exc))) from None
    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


@dataclass(frozen=True)
class GuestOptions:
    """How a run's guests boot and how long they are given: one value for the CLI, plain
    pytest, bisection, reproducers and `lab rerun` (matrix.json keeps it)."""

    accel: str = "auto"
    cpus: int = 2
    memory: str = "2G"
    append: tuple[str, ...] = ()  # kernel parameters after the lab's own
    boot_timeout: float = 180.0
    call_timeout: float = 120.0  # an agent call longer than this is a HANG
    max_reboots: int = 3  # guest replacements per cell and worker before the run stops

    def checked(self) -> GuestOptions:
        """The same options, each checked (a UserError names the option and a right value)."""
        return GuestOptions(
            accel=parse_accel(self.accel), cpus=parse_cpus(self.cpus),
            memory=parse_memory(self.memory),
            append=tuple(parse_param(p) for p in self.append),
            boot_timeout=parse_boot_timeout(self.boot_timeout),
            call_timeout=parse_call_timeout(self.call_timeout),
            max_reboots=parse_max_reboots(self.max_reboots))

    def lab_args(self, *, always: tuple[str, ...] = ()) -> list[str]:
        """`lab run` options for what differs from the defaults, and the fields in
        ``always`` whatever their value (a reproducer names accel, cpus and memory)."""
        default = GuestOptions()
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "append":
                for param in value:
                    out += ["--append", param]
            elif value != getattr(default, f.name) or f.name in always:
                out += [f"--{f.name.replace('_', '-')}", _text(value)]
        return out

    def pytest_args(self) -> list[str]:
        """The plugin's options (``--lab-cpus``...) for every field."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            flag = f"--lab-{f.name.replace('_', '-')}"
            if f.name == "append":
                out += [f"{flag}={param}" for param in value]
            else:
                out.append(f"{flag}={_text(value)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["append"] = list(self.append)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuestOptions:
        """Options read back (matrix.json, a journal); unknown keys are left out and the
        values checked, so a hand-edited file is refused like a command line."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        if "append" in kept:
            kept["append"] = tuple(str(p) for p in kept["append"])
        return cls(**kept).checked()


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
