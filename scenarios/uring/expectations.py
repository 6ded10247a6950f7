"""What each kernel should answer, as data: version ranges and config options.

Every kernel-dependent expectation of the io_uring suites is one entry here,
with the source it rests on (see ../shared/FACTS.md for the measurements).
A test asks ``expect(kernel, KEY)`` and asserts the answer; a kernel outside
every range of a feature's ``needs`` entry makes the test SKIP with the reason.
Where no kernel of a range could be measured its value is ``UNVERIFIED``: the
test asks ``observe(kernel, KEY, measured, observed)``, which notes the measured
value as observed but unverified, and asserts only what holds on every kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scenarios.versions import (
    OPEN,
    UNVERIFIED,
    Range,
    Version,
    expect_in,
    lacks_in,
    observe_in,
)

__all__ = ["EXPECTATIONS", "FEATURES", "OPEN", "UNVERIFIED", "Range", "Version", "expect",
           "lacks", "observe"]

EXPECTATIONS: dict[str, tuple[Range, ...]] = {
    # Ring memory (SQ/CQ rings + SQE array) charged to RLIMIT_MEMLOCK: 5.12 stopped
    # charging it, 6.14 charges it again (rings moved to the region API).  Pages charged
    # for a 1-entry ring without SQE128/CQE32: one for the rings, one for the SQEs.
    # Measured on Debian's prebuilt kernels (test_ring_memory_charge_by_version): 2 on
    # 6.16.12, 6.17.13, 6.18.15 (and 6.18.44, the build host), 7.2.6 and 7.2.9; 0 on
    # 7.2.11, 7.2.12, 7.2.13, 7.3-rc7 and 7.3.4.  So the charge went away within the 7.2
    # stable series, between 7.2.9 and 7.2.11 (7.3 does not charge either).  Not measurable, so
    # UNVERIFIED (observed, never asserted): 6.19-7.2.5 (6.19-7.1 are served without
    # their modules, 7.2.0-7.2.5 not at all), and 7.2.7-7.2.8 and 7.2.10 (not
    # served).  Nothing is assumed between measured releases, even where both sides agree:
    # this charge came and went within one stable series.
    "ring_pages_charged": (
        Range((5, 12), (6, 14), 0, "5.12-6.13: ring memory not charged"),
        Range((6, 14), (6, 19), 2, "6.14+: io_create_region charges ctx->user "
              "(measured on 6.16.12, 6.17.13, 6.18.15)"),
        Range((6, 19), (7, 2, 6), UNVERIFIED, "6.19-7.2.5: no bootable prebuilt kernel "
              "(2 pages on 6.18.15 and on 7.2.6)"),
        Range((7, 2, 6), (7, 2, 7), 2, "measured on 7.2.6: charged"),
        Range((7, 2, 7), (7, 2, 9), UNVERIFIED, "7.2.7-7.2.8: not served "
              "(2 pages on 7.2.6 and on 7.2.9)"),
        Range((7, 2, 9), (7, 2, 10), 2, "measured on 7.2.9: charged"),
        Range((7, 2, 10), (7, 2, 11), UNVERIFIED, "7.2.10: not served "
              "(2 pages on 7.2.9, 0 on 7.2.11)"),
        Range((7, 2, 11), OPEN, 0, "measured on 7.2.11, 7.2.12, 7.2.13, 7.3-rc7, 7.3.4: "
              "not charged"),
    ),
    # Registered buffers of a ring created WITH CAP_IPC_LOCK (ctx->user unset): do they
    # still show in the process's VmPin (mm->pinned_vm via ctx->mm_account)?  Measured
    # (test_accounting_restored_after_drop_sequence): yes on 6.1, 6.12, 6.16.12, 6.17.13
    # and 6.18.15; no on 7.2.6, 7.2.9, 7.2.11, 7.2.12, 7.2.13, 7.3-rc7 and 7.3.4.  The
    # change is in 6.19-7.2.5, where nothing bootable is served: UNVERIFIED there.
    "exempt_ring_pins_vm": (
        Range((5, 12), (6, 19), True, "ctx->mm_account set for every ring "
              "(measured on 6.1, 6.12, 6.16.12, 6.17.13, 6.18.15)"),
        Range((6, 19), (7, 2, 6), UNVERIFIED, "6.19-7.2.5: no bootable prebuilt kernel "
              "(counted on 6.18.15, not on 7.2.6)"),
        Range((7, 2, 6), OPEN, False, "measured on 7.2.6, 7.2.9, 7.2.11, 7.2.12, 7.2.13, "
              "7.3-rc7, 7.3.4: not counted"),
    ),
    # IORING_URING_CMD_MULTISHOT (1 << 1) and IOSQE_BUFFER_SELECT on URING_CMD: 6.18.
    # Before: the bit fails the uring_cmd flag mask (EINVAL); BUFFER_SELECT on an
    # opcode without buffer_select fails in io_init_req (EOPNOTSUPP), before prep.
    "mshot.fixed": (
        Range((5, 19), (6, 18), "EINVAL", "unknown uring_cmd flag bit"),
        Range((6, 18), OPEN, "EINVAL", "MULTISHOT with FIXED"),
    ),
    "mshot.fixed+bufsel": (
        Range((5, 19), (6, 18), "EOPNOTSUPP", "BUFFER_SELECT not allowed on URING_CMD"),
        Range((6, 18), OPEN, "EINVAL", "MULTISHOT with FIXED"),
    ),
    "mshot.no_bufsel": (
        Range((5, 19), (6, 18), "EINVAL", "unknown uring_cmd flag bit"),
        Range((6, 18), OPEN, "EINVAL", "MULTISHOT needs BUFFER_SELECT"),
    ),
    "mshot.bufsel_only": (
        Range((5, 19), (6, 18), "EOPNOTSUPP", "BUFFER_SELECT not allowed on URING_CMD"),
        Range((6, 18), OPEN, "EINVAL", "BUFFER_SELECT needs MULTISHOT"),
    ),
    "mshot.unknown_bit": (
        Range((5, 19), OPEN, "EINVAL", "bit outside IORING_URING_CMD_MASK"),
    ),
    # A valid MULTISHOT|BUFFER_SELECT NVMe read: the nvme driver ignores the flag and
    # completes through io_uring_cmd_done, so one CQE with the NVMe status (0), no
    # IORING_CQE_F_MORE, no buffer consumed.  Before 6.18: EOPNOTSUPP (BUFFER_SELECT).
    "mshot.nvme_valid": (
        Range((5, 19), (6, 18), "EOPNOTSUPP", "BUFFER_SELECT not allowed on URING_CMD"),
        Range((6, 18), OPEN, "ONESHOT", "driver ignores MULTISHOT; one plain CQE"),
    ),
}

# Features a test needs: absent ranges make the test SKIP with the reason.
FEATURES: dict[str, tuple[Version, str]] = {
    "io_uring_disabled": ((6, 6), "kernel.io_uring_disabled appeared in 6.6"),
    "uring_cmd_multishot": ((6, 18), "IORING_URING_CMD_MULTISHOT appeared in 6.18"),
    "ublk_batch_fetch": ((7, 0), "ublk UBLK_U_IO_FETCH_IO_CMDS (batch fetch) appeared in 7.0"),
    "nvme_uring_cmd": ((5, 19), "NVMe uring_cmd passthrough appeared in 5.19"),
}


def expect(version: Version, key: str) -> Any:
    """The expected answer of ``key`` on a kernel ``version``; KeyError when unknown."""
    return expect_in(EXPECTATIONS, version, key)


def observe(version: Version, key: str, measured: Any, observed: Callable[[str], None]) -> Any:
    """What a test holds ``key`` to on ``version``: the expected answer, or, where the
    range is ``UNVERIFIED``, ``measured``, noted through the ``observed`` fixture."""
    return observe_in(EXPECTATIONS, version, key, measured, observed)


def lacks(version: Version, feature: str) -> str | None:
    """Why ``version`` lacks ``feature`` (a SKIP reason), or None if it has it."""
    return lacks_in(FEATURES, version, feature)
