"""What each kernel should answer, as data: version ranges and config options.

Every kernel-dependent expectation of the io_uring suites is one entry here,
with the source it rests on (a range names the kernels it was measured on).
A test asks ``expect(kernel, KEY)`` and asserts the answer.  What a kernel has
(an opcode, a flag) is not here: it is probed (``requires_feature``).
Where no kernel of a range could be measured its value is ``UNVERIFIED``: the
test asks ``observe(kernel, KEY, measured, observed)``, which notes the measured
value as observed but unverified, and asserts only what holds on every kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scenarios.versions import (
    DEBIAN,
    OPEN,
    UNVERIFIED,
    Range,
    Version,
    expect_in,
    observe_in,
)

__all__ = ["EXPECTATIONS", "MULTISHOT", "OPEN", "UNVERIFIED", "Range", "Version", "by_multishot",
           "expect", "observe"]

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
    # this charge came and went within one stable series.  The 7.2.x values are what
    # Debian's builds of those sublevels did (DEBIAN): another kernel that calls itself
    # 7.2.6 is not one of them, and nothing is assumed past the newest kernel measured.
    "ring_pages_charged": (
        Range((5, 12), (6, 14), 0, "5.12-6.13: ring memory not charged"),
        Range((6, 14), (6, 19), 2, "6.14+: io_create_region charges ctx->user "
              "(measured on 6.16.12, 6.17.13, 6.18.15)"),
        Range((6, 19), (7, 2, 6), UNVERIFIED, "6.19-7.2.5: no bootable prebuilt kernel "
              "(2 pages on 6.18.15 and on 7.2.6)"),
        Range((7, 2, 6), (7, 2, 7), 2, "measured on 7.2.6: charged", DEBIAN),
        Range((7, 2, 7), (7, 2, 9), UNVERIFIED, "7.2.7-7.2.8: not served "
              "(2 pages on 7.2.6 and on 7.2.9)"),
        Range((7, 2, 9), (7, 2, 10), 2, "measured on 7.2.9: charged", DEBIAN),
        Range((7, 2, 10), (7, 2, 11), UNVERIFIED, "7.2.10: not served "
              "(2 pages on 7.2.9, 0 on 7.2.11)"),
        Range((7, 2, 11), (7, 3, 5), 0, "measured on 7.2.11, 7.2.12, 7.2.13, 7.3-rc7, 7.3.4: "
              "not charged", DEBIAN),
        Range((7, 3, 5), OPEN, UNVERIFIED, "newer than every kernel measured (7.3.4: 0)"),
    ),
    # Registered buffers of a ring created WITH CAP_IPC_LOCK (ctx->user unset): do they
    # still show in the process's VmPin (mm->pinned_vm via ctx->mm_account)?  Measured
    # (test_accounting_restored_after_drop_sequence): yes on 6.1, 6.12, 6.16.12, 6.17.13
    # and 6.18.15; no on 7.2.6, 7.2.9, 7.2.11, 7.2.12, 7.2.13, 7.3-rc7 and 7.3.4.  The
    # change is in 6.19-7.2.5, where nothing bootable is served: UNVERIFIED there.  From
    # 7.2.6 on, measured on Debian's builds (DEBIAN), up to 7.3.4.
    "exempt_ring_pins_vm": (
        Range((5, 12), (6, 19), True, "ctx->mm_account set for every ring "
              "(measured on 6.1, 6.12, 6.16.12, 6.17.13, 6.18.15)"),
        Range((6, 19), (7, 2, 6), UNVERIFIED, "6.19-7.2.5: no bootable prebuilt kernel "
              "(counted on 6.18.15, not on 7.2.6)"),
        Range((7, 2, 6), (7, 3, 5), False, "measured on 7.2.6, 7.2.9, 7.2.11, 7.2.12, "
              "7.2.13, 7.3-rc7, 7.3.4: not counted", DEBIAN),
        Range((7, 3, 5), OPEN, UNVERIFIED, "newer than every kernel measured (7.3.4: not "
              "counted)"),
    ),
}

# The uring_cmd submissions of test_multishot.py: what a kernel answers with
# IORING_URING_CMD_MULTISHOT and without it.  Which one a kernel is, is probed
# (requires_feature("uring_cmd_multishot"), guest/areas/probe/ops.py), not read from its
# version: the flag came in 6.18, but a version says nothing of a backport or a build.
# Without it: the bit fails the uring_cmd flag mask (EINVAL); BUFFER_SELECT on an opcode
# without buffer_select fails in io_init_req (EOPNOTSUPP), before prep.
MULTISHOT: dict[str, dict[bool, tuple[str, str]]] = {
    "mshot.fixed": {True: ("EINVAL", "MULTISHOT with FIXED"),
                    False: ("EINVAL", "unknown uring_cmd flag bit")},
    "mshot.fixed+bufsel": {True: ("EINVAL", "MULTISHOT with FIXED"),
                           False: ("EOPNOTSUPP", "BUFFER_SELECT not allowed on URING_CMD")},
    "mshot.no_bufsel": {True: ("EINVAL", "MULTISHOT needs BUFFER_SELECT"),
                        False: ("EINVAL", "unknown uring_cmd flag bit")},
    "mshot.bufsel_only": {True: ("EINVAL", "BUFFER_SELECT needs MULTISHOT"),
                          False: ("EOPNOTSUPP", "BUFFER_SELECT not allowed on URING_CMD")},
    # A valid MULTISHOT|BUFFER_SELECT NVMe read: the nvme driver ignores the flag and
    # completes through io_uring_cmd_done, so one CQE with the NVMe status (0), no
    # IORING_CQE_F_MORE, no buffer consumed (test_valid_multishot_to_nvme).
    "mshot.nvme_valid": {True: ("ONESHOT", "driver ignores MULTISHOT; one plain CQE"),
                         False: ("EOPNOTSUPP", "BUFFER_SELECT not allowed on URING_CMD")},
    "mshot.unknown_bit": {True: ("EINVAL", "bit outside IORING_URING_CMD_MASK"),
                          False: ("EINVAL", "bit outside IORING_URING_CMD_MASK")},
}


def by_multishot(key: str, *, has: bool) -> str:
    """The answer to the submission ``key`` on a kernel with IORING_URING_CMD_MULTISHOT
    (``has``) or without it."""
    return MULTISHOT[key][has][0]


def expect(version: Version, key: str) -> Any:
    """The expected answer of ``key`` on a kernel ``version``; KeyError when unknown."""
    return expect_in(EXPECTATIONS, version, key)


def observe(version: Version, key: str, measured: Any, observed: Callable[[str], None]) -> Any:
    """What a test holds ``key`` to on ``version``: the expected answer, or, where the
    range is ``UNVERIFIED``, ``measured``, noted through the ``observed`` fixture."""
    return observe_in(EXPECTATIONS, version, key, measured, observed)
