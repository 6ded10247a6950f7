"""What an option of a run is (``Option``, one table entry), and the options a run gives
its guests: accelerator, vCPUs, memory, kernel parameters, timeouts and the reboot
limit, checked once wherever they come from.

`lab run` and `lab bisect` take them as ``--cpus``, ``--memory``..., plain pytest as
``--lab-cpus``, ``--lab-memory``... (lab.run.config derives both from the table); the
value is checked as it is made, so a value `lab run` refuses is refused under plain
pytest, in a journal and in matrix.json too.  The same checks guard every value a
boot puts on QEMU's command line: lab.vm.vmconfig.VmConfig runs them as it is made, so a
configuration built in code is held to them too.  The checks are strict because of
where the values went (virtme-ng handed ``--memory`` to a shell as it is: ``--memory
"2G; rm -rf ~"`` ran the command on the host), and they stay strict with no shell on
the way: a value is digits, or one word of characters no shell gives a meaning to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any

from lab.errors import UserError

# "auto": KVM if a real probe boot works, else TCG (lab.vm.accel).
ACCELS = ("auto", "kvm", "tcg", "tcg-single")

_MEMORY = re.compile(r"([1-9][0-9]{0,6})([MG])")
# The guest's kernel, virtme-ng's initramfs and the host root's page cache: a guest
# with less does not reach the agent (QEMU's own minimum is far lower).
MIN_MEMORY_MB = 256
MAX_CPUS = 64
# What one kernel parameter may hold: letters, digits and the punctuation parameters use
# ("slub_debug=FZ", "console=ttyS0,115200", "dyndbg=+p", "crashkernel=256M@16M",
# "trace_event=sched:*").  Nothing a shell reads as syntax (no ; & | $ ` ( ) < > ! #,
# no quote, backslash or space: virtme-ng splits each --append on spaces), but ``*``,
# which a shell would only ever expand to file names.
PARAM_CHARS = "_-.,:=/+@%*"
_NOT_PARAM = re.compile(r"[^A-Za-z0-9" + re.escape(PARAM_CHARS) + r"]")


def parse_memory(text: str) -> str:
    """A guest memory size as virtme-ng and QEMU take it: digits and M or G ("2G", "2048M")."""
    m = _MEMORY.fullmatch(text.strip()) if isinstance(text, str) else None
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
        # A whole number only: int() would take 2.7 (as 2) or True (as 1).
        n = int(text) if isinstance(text, str) or type(text) is int else 0
    except ValueError:
        n = 0
    if n < 1 or n > MAX_CPUS:
        raise UserError(f"--cpus {text}: give the guest's vCPUs, 1-{MAX_CPUS} (default 2; the "
                        "race suites need at least 2)")
    return n


def parse_param(text: str) -> str:
    """One kernel command-line parameter ("nokaslr", "slub_debug=FZ"): PARAM_CHARS."""
    if not isinstance(text, str) or not text or re.search(r"[\s'\"\\]", text):
        raise UserError(f"--append {text!r}: give one kernel parameter per --append, "
                        "without spaces or quotes (e.g. --append nokaslr --append "
                        "slub_debug=FZ)")
    bad = _NOT_PARAM.search(text)
    if bad is not None or text.startswith("-"):
        # A leading "-" would read as an option to whichever program passes it on.
        why = f"{bad.group()!r} is not one of them" if bad else "not first"
        raise UserError(f"--append {text!r}: give one kernel parameter per --append, of "
                        f"letters, digits and {PARAM_CHARS} ({why})")
    return text


# The console log's smallest head: a boot prints about 40 KB and a test a few lines, so a
# head of a few boots is the least that does not call every test a flood (a FAIL).
MIN_CONSOLE_HEAD = 256 << 10


def parse_console_cap(cap: tuple[int, int], *, what: str = "console_cap") -> tuple[int, int]:
    """The console log's (head, tail) bytes kept (lab.proc.spawn's log_cap): the head at
    least MIN_CONSOLE_HEAD, the tail 0 (the head and the line saying what was cut) or more."""
    ok = (isinstance(cap, tuple) and len(cap) == 2 and all(type(n) is int for n in cap))
    if not ok or cap[0] < MIN_CONSOLE_HEAD or cap[1] < 0:
        raise UserError(f"{what} {cap!r}: give the console log's HEAD,TAIL bytes kept, HEAD "
                        f"at least {MIN_CONSOLE_HEAD} (a boot prints about 40 KB), TAIL 0 or "
                        "more")
    return cap


def parse_port(value: str | int) -> int:
    """A fixed TCP port on 127.0.0.1 for a guest's SSH."""
    try:
        port = int(value) if isinstance(value, str) or type(value) is int else 0
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise UserError(f"--ssh-port {value} is not a TCP port; give 1-65535, or omit it to "
                        "pick a free one")
    return port


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


# --dump's values: a format of QEMU's dump-guest-memory (lab.vm.qmp), "off", or "auto":
# kdump-zlib for the debug variant's kernels, off for the rest.
DUMPS = ("auto", "off", "kdump-zlib", "elf")


def parse_dump(text: str) -> str:
    if text not in DUMPS:
        raise UserError(f"--dump {text!r}: use {', '.join(DUMPS)} (auto: kdump-zlib for the "
                        "debug variant's kernels, off for the rest)")
    return text


def _switch(flag: str) -> Callable[[bool | str], bool]:
    """An option given or not (``--gdb``): True or False, as a command line or a file says."""
    def parse(value: bool | str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise UserError(f"{flag} {value!r}: a switch is given or not (true or false)")
    return parse


parse_gdb = _switch("--gdb")
parse_keep_on_failure = _switch("--keep-on-failure")


def parse_accel(text: str) -> str:
    if text not in ACCELS:
        raise UserError(f"--accel {text!r}: use {', '.join(ACCELS)}")
    return text


# The fronts a run's options come through: `lab run`, plain pytest (``--lab-*``), `lab
# bisect` (its runs are `lab run`s) and `lab rerun` (which takes the rest from the run).
FRONTS = ("run", "pytest", "bisect", "rerun")
# Why most options are not `lab rerun`'s: the run directory says them.
FROM_THE_RUN = "lab rerun takes it from the run (its records and matrix.json)"


@dataclass(frozen=True)
class Option:
    """One option of a run, as each front spells it: the one entry a new option needs.

    It is the metadata of a field of lab.run.config.RunConfig (or of GuestOptions, which
    that holds): the field gives the name, type and default; this gives the rest.
    ``parse`` is the option's only check: text (or a value read back) to the value, a
    UserError naming ``flag`` and a right value otherwise.
    """

    flag: str  # `lab run`'s spelling ("--cpus", "-k"); "--": the arguments after --
    help: str
    parse: Callable[[Any], Any] | None = None
    metavar: str | None = None
    many: bool = False  # repeatable: the field is a tuple of parsed values
    # Plain pytest's spelling: "--lab-" + the flag unless given; one of pytest's own
    # options ("-k") or arguments is said here too, and the plugin does not declare it.
    pytest: str | None = None
    pytest_own: bool = False
    # A front the option cannot apply to, and why ("rerun": FROM_THE_RUN unless offered).
    absent: Mapping[str, str] = field(default_factory=dict)
    rerun: bool = False  # `lab rerun` offers it (default: as the run had it)
    helps: Mapping[str, str] = field(default_factory=dict)  # a front's own wording
    one_in: frozenset[str] = frozenset()  # fronts that take one value of a repeatable one
    # `lab` says a refusal as argparse says a bad argument ("argument --cpus: 0: ... (see
    # `lab run --help`)"): the check was argparse's type= before the table, and users and
    # scripts read its messages (OptionError.for_front).
    argparse_form: bool = False
    # argparse's type= on `lab`'s command lines, ahead of the check: int keeps argparse's
    # own "invalid int value: 'x'" for a word where a number goes (--workers, --ssh-port).
    argtype: Callable[[str], Any] | None = None
    # Fronts where an empty value is as if not given (`lab bisect -k ''`: bisect says
    # itself that it needs -k, and a resumed bisection takes the journal's).
    blank_is_absent: frozenset[str] = frozenset()
    # Given or not, with no value (``--gdb``): argparse's store_true; the field is a bool.
    switch: bool = False

    def spelling(self, front: str) -> str | None:
        """How ``front`` spells the option, None where it cannot apply."""
        if front not in FRONTS:
            raise ValueError(front)
        if front in self.absent or (front == "rerun" and not self.rerun):
            return None
        if front == "pytest":
            return self.pytest or f"--lab-{self.flag.lstrip('-')}"
        return self.flag

    def why_absent(self, front: str) -> str | None:
        if front == "rerun" and not self.rerun:
            return FROM_THE_RUN
        return self.absent.get(front)

    def help_for(self, front: str) -> str:
        return self.helps.get(front, self.help)

    def check(self, value: Any) -> Any:
        """The value checked (each one of a repeatable option): a UserError when wrong."""
        if self.many:
            items = (value,) if isinstance(value, str) else tuple(value)
            return tuple(self.parse(v) for v in items) if self.parse else tuple(items)
        if value is None or self.parse is None:
            return value
        return self.parse(value)


def opt(default: Any, flag: str, help: str, **more: Any) -> Any:
    """A dataclass field that is an option of a run (see Option)."""
    return field(default=default, metadata={"option": Option(flag, help, **more)})


def option_of(f: Field[Any]) -> Option | None:
    found = f.metadata.get("option")
    return found if isinstance(found, Option) else None


class OptionError(UserError):
    """A value an option's check refused: the message names the option as `lab` spells
    it; ``option`` lets plain pytest name it its own way (``for_front``)."""

    def __init__(self, option: Option, message: str) -> None:
        super().__init__(message)
        self.option = option

    def for_front(self, front: str) -> str:
        """"argument --lab-memory: '2G;x': give ...", argparse's own form of the error."""
        return f"argument {self.option.spelling(front)}: {unflagged(str(self))}"


def check_fields(obj: Any) -> None:
    """Check (and normalise) every option field of the frozen dataclass ``obj``: the one
    place each option's check runs, whichever front made the value."""
    for f in fields(obj):
        option = option_of(f)
        if option is None:
            continue
        try:
            object.__setattr__(obj, f.name, option.check(getattr(obj, f.name)))
        except UserError as exc:
            raise OptionError(option, str(exc)) from None


def unflagged(message: str) -> str:
    """A check's message without its leading option name (argparse names it itself)."""
    return re.sub(r"^--[a-z-]+ ", "", message)


@dataclass(frozen=True)
class GuestOptions:
    """How a run's guests boot and how long they are given: one value for the CLI, plain
    pytest, bisection, reproducers and `lab rerun` (matrix.json keeps it).  Each field is
    checked as it is made (lab.options.check_fields)."""

    accel: str = opt("auto", "--accel", "auto (default): KVM if a real probe boot works, "
                     "else TCG with a host thread per vCPU; tcg-single: the vCPUs take "
                     "turns on one", parse=parse_accel, metavar="|".join(ACCELS),
                     argparse_form=True)
    cpus: int = opt(2, "--cpus", "the guest's vCPUs (default {default})", parse=parse_cpus,
                    metavar="N", argparse_form=True)
    memory: str = opt("2G", "--memory", "the guest's memory: 2G, 2048M (default {default})",
                      parse=parse_memory, argparse_form=True, metavar="SIZE")
    # Kernel parameters after the lab's own.
    append: tuple[str, ...] = opt((), "--append", "a kernel command-line parameter "
                                  "(repeatable)", parse=parse_param, metavar="PARAM",
                                  many=True, argparse_form=True)
    boot_timeout: float = opt(180.0, "--boot-timeout", "seconds a boot may take (default "
                              "{default})", parse=parse_boot_timeout, metavar="S",
                              argparse_form=True)
    # An agent call longer than this is a HANG.
    call_timeout: float = opt(120.0, "--call-timeout", "seconds an agent call may take "
                              "before the test is a HANG (default {default})",
                              parse=parse_call_timeout, argparse_form=True, metavar="S")
    max_reboots: int = opt(3, "--max-reboots", "guest replacements (after a crash or hang) "
                           "per cell before the run stops (default {default})",
                           parse=parse_max_reboots, argparse_form=True, metavar="N",
                           absent={"bisect": "a run at one commit runs only the target "
                                   "scenarios, and a crash there is evidence the default "
                                   "limit keeps"})
    # After a CRASH or HANG, the guest's memory to RUN_DIR/vmcore-*.kdump (lab.vm.session).
    dump: str = opt("auto", "--dump", "after a CRASH or HANG, write the guest's memory to the "
                    "run directory (vmcore-VM-N.kdump) in this format; auto (default): "
                    "kdump-zlib for the debug variant, off otherwise; the kernel then gets "
                    "panic=0 (a panic no longer ends QEMU)", parse=parse_dump,
                    metavar="|".join(DUMPS), argparse_form=True)
    # QEMU's gdbstub on a free 127.0.0.1 port, the kernel without KASLR (lab.vm.gdbstub).
    gdb: bool = opt(False, "--gdb", "start QEMU's gdbstub on a free 127.0.0.1 port (the "
                    "kernel booted with nokaslr) and print the gdb command that attaches",
                    parse=parse_gdb, switch=True,
                    absent={"bisect": "a bisection's runs are unattended: no one attaches"})

    def __post_init__(self) -> None:
        check_fields(self)

    def lab_args(self, *, always: tuple[str, ...] = ()) -> list[str]:
        """`lab run` options for what differs from the defaults, and the fields in
        ``always`` whatever their value (a reproducer names accel, cpus and memory)."""
        default = GuestOptions()
        out: list[str] = []
        for f in fields(self):
            option = option_of(f)
            assert option is not None
            value = getattr(self, f.name)
            if option.many:
                for item in value:
                    out += [option.flag, item]
            elif option.switch:
                out += [option.flag] if value else []
            elif value != getattr(default, f.name) or f.name in always:
                out += [option.flag, text_of(value)]
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
        return cls(**{k: v for k, v in data.items() if k in known})


def text_of(value: object) -> str:
    """A value as a command line gives it (180.0 as 180)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
