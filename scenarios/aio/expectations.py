"""The rw flags and I/O priority the AIO suite submits (include/uapi/linux), as data.

Whether a kernel knows a flag is probed, not read from its version
(``requires_feature("rwf_atomic")``, guest/areas/probe/ops.py): a flag newer than the
kernel is just an unknown bit there (EOPNOTSUPP), so a test of the flag's own rule
SKIPs, before its fixtures run, rather than passing for the wrong reason.
"""

from __future__ import annotations

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

# IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0): include/uapi/linux/ioprio.h
IOPRIO_RT = 1 << 13
