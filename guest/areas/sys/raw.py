"""sys.syscall: call a syscall by name with integer arguments, no wrapper in between.

For the config-variant scenarios (scenarios/enosys/): on a kernel built without
CONFIG_AIO or CONFIG_IO_URING the syscall exists only as sys_ni_syscall, and
the answer to any arguments is ENOSYS.  Names, not numbers, so a scenario
cannot hit the wrong syscall on another architecture; the numbers come from
the guest's <sys/syscall.h> at build time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guest import native

# The syscalls a scenario may call raw: the async-I/O families under test.
SYSCALLS = (
    "io_setup", "io_destroy", "io_getevents", "io_submit", "io_cancel", "io_pgetevents",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)
MAX_ARGS = 6


def syscall_number(name: str) -> int:
    if name not in SYSCALLS:
        raise ValueError(f"sys.syscall: {name!r} is not one of {', '.join(SYSCALLS)}")
    return int(getattr(native.lib(), f"__NR_{name}"))


def sys_syscall(nr: str, args: list[int] | None = None) -> int:
    """``syscall(__NR_<nr>, *args)`` for a syscall named ``nr``: its value, or OSError."""
    values = [int(a) for a in (args or [])]
    if len(values) > MAX_ARGS:
        raise ValueError(f"sys.syscall takes at most {MAX_ARGS} arguments, got {len(values)}")
    values += [0] * (MAX_ARGS - len(values))
    return native.check(int(native.lib().lab_raw_syscall(syscall_number(nr), *values)))


OPS: dict[str, Callable[..., Any]] = {
    "sys.syscall": sys_syscall,
}
