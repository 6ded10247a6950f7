"""What each kernel should answer in the AIO suite, as data: version ranges.

The rw_flags a kernel knows grew over time (include/uapi/linux/fs.h, RWF_SUPPORTED):
a flag newer than the kernel is just an unknown bit there (EOPNOTSUPP), so a test of
the flag's own rule SKIPs with the reason rather than passing for the wrong one.
"""

from __future__ import annotations

from typing import Any

from scenarios.versions import Range, Version, expect_in, lacks_in

# include/uapi/linux/fs.h; the build host's headers (6.1) lack the newer ones.
RWF_HIPRI = 0x01
RWF_DSYNC = 0x02
RWF_SYNC = 0x04
RWF_NOWAIT = 0x08
RWF_APPEND = 0x10
RWF_NOAPPEND = 0x20
RWF_ATOMIC = 0x40
RWF_DONTCACHE = 0x80
# Above every flag of every kernel so far (the highest, RWF_NOSIGNAL, is 0x100 in 7.2).
RWF_UNKNOWN = 1 << 24

FEATURES: dict[str, tuple[Version, str]] = {
    "rwf_noappend": ((6, 9), "RWF_NOAPPEND appeared in 6.9 (vfs: add RWF_NOAPPEND flag)"),
    "rwf_atomic": ((6, 11), "RWF_ATOMIC appeared in 6.11 (fs: Initial atomic write support)"),
    "rwf_dontcache": ((6, 14), "RWF_DONTCACHE appeared in 6.14 (mm: add RWF_DONTCACHE)"),
}

EXPECTATIONS: dict[str, tuple[Range, ...]] = {}


def expect(version: Version, key: str) -> Any:
    return expect_in(EXPECTATIONS, version, key)


def lacks(version: Version, feature: str) -> str | None:
    return lacks_in(FEATURES, version, feature)
