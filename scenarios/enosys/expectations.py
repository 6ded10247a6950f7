"""Which syscalls a config option removes: data for test_enosys.py.

kernel/sys_ni.c declares these with COND_SYSCALL: when the option is off the
syscall table entry points at sys_ni_syscall, which returns -ENOSYS whatever
the arguments.  With the option on the same calls reach the real syscall, so
the tests are not applicable there (SKIP), never a pass.
"""

from __future__ import annotations

# syscall name → the config option (without CONFIG_) that provides it
PROVIDED_BY: dict[str, str] = {
    "io_setup": "AIO",
    "io_destroy": "AIO",
    "io_submit": "AIO",
    "io_cancel": "AIO",
    "io_getevents": "AIO",
    "io_pgetevents": "AIO",
    "io_uring_setup": "IO_URING",
    "io_uring_enter": "IO_URING",
    "io_uring_register": "IO_URING",
}

# syscall name → the claim its ENOSYS checks (scenarios/aio/claims.toml, uring/claims.toml):
# the three with a KAPI text of their own cite it, the rest FACTS.md's.
CLAIM_OF: dict[str, str] = {
    "io_submit": "io_submit.enosys",
    "io_destroy": "io_destroy.enosys",
    "io_cancel": "io_cancel.enosys",
    **{name: "aio.enosys" for name in ("io_setup", "io_getevents", "io_pgetevents")},
    **{name: "io_uring.enosys" for name in ("io_uring_setup", "io_uring_enter",
                                           "io_uring_register")},
}

# Typed agent ops that must surface the same ENOSYS (the wrapper adds nothing
# that hides it): op → (its arguments, the option behind it).
TYPED_OPS: dict[str, tuple[dict[str, object], str]] = {
    "aio.setup": ({"nr_events": 1}, "AIO"),
}
