"""A kdump-compressed dump of QEMU 7.2 made readable as tools expect it.

QEMU 7.2's ``dump-guest-memory`` writes kdump-compressed dumps in makedumpfile's
*flattened* form (a stream of (offset, size, data) records, for a pipe; 8.2 added
``kdump-raw-*`` for the plain form), and leaves the header's utsname empty but for the
machine.  libkdumpfile, which drgn reads kdump files with, finds the architecture from
that utsname only when it looks like a kernel's (sysname "Linux", a release and a
version): drgn 0.3.0 refused the dumps ("kdump_get_string_attr(KDUMP_ATTR_ARCH_NAME):
Key has no value").  ``finish`` rewrites a dump into the plain form and fills the
utsname in from what the dump's own VMCOREINFO says (OSRELEASE).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096
KDUMP_SIGNATURE = b"KDUMP   "
UTS_LEN = 65  # struct new_utsname: six fields of this many bytes, after the signature
UTS_OFFSET = 12  # signature[8], header_version (int32)
SYSNAME, NODENAME, RELEASE, VERSION = 0, 1, 2, 3
# Where the kdump sub-header says the VMCOREINFO is (x86-64: struct kdump_sub_header,
# after phys_base, dump_level, split, start_pfn, end_pfn), one block after the header.
SUB_VMCOREINFO = 8 + 4 + 4 + 8 + 8
HOSTNAME = b"kernel-lab"  # virtme-ng's virtme_hostname
UNKNOWN_VERSION = b"unknown (QEMU writes none)"


class VmcoreError(Exception):
    pass


def unflatten(src: Path, dst: Path) -> None:
    """``src`` in makedumpfile's flattened form rewritten to ``dst`` in the plain one."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        if not f.read(FLAT_HEADER_SIZE).startswith(FLAT_SIGNATURE):
            raise VmcoreError(f"{src}: not a flattened dump")
        while True:
            head = f.read(16)
            if len(head) < 16:
                raise VmcoreError(f"{src}: truncated (no end record)")
            offset, size = struct.unpack(">qq", head)
            if offset == -1:
                return
            if offset < 0 or size <= 0:
                raise VmcoreError(f"{src}: a record at {offset} of {size} bytes")
            out.seek(offset)
            while size:
                chunk = f.read(min(size, 1 << 20))
                if not chunk:
                    raise VmcoreError(f"{src}: truncated in a record")
                out.write(chunk)
                size -= len(chunk)


def vmcoreinfo(path: Path) -> dict[str, str]:
    """The VMCOREINFO a plain kdump file carries ({} when it has none)."""
    with open(path, "rb") as f:
        head = f.read(4096)
        block = struct.unpack_from("<i", head, UTS_OFFSET + 6 * UTS_LEN + 6 + 16 + 4)[0]
        f.seek(block + SUB_VMCOREINFO)
        offset, size = struct.unpack("<QQ", f.read(16))
        if not offset or not 0 < size < 1 << 20:
            return {}
        f.seek(offset)
        text = f.read(size).decode("utf-8", "replace")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def fill_utsname(path: Path, *, release: str) -> None:
    """The header's utsname as a kernel's: sysname, nodename, release and a version."""
    fields = {SYSNAME: b"Linux", NODENAME: HOSTNAME, RELEASE: release.encode()[:UTS_LEN - 1],
              VERSION: UNKNOWN_VERSION}
    with open(path, "r+b") as f:
        if f.read(8) != KDUMP_SIGNATURE:
            raise VmcoreError(f"{path}: not a kdump-compressed dump")
        for index, value in fields.items():
            f.seek(UTS_OFFSET + index * UTS_LEN)
            f.write(value.ljust(UTS_LEN, b"\0"))


def finish(path: Path, *, release: str) -> None:
    """The kdump ``path`` in the plain form, its utsname filled in (see the module's
    docstring); ``release`` when the dump's VMCOREINFO names none.  Atomic: a failure
    leaves ``path`` as QEMU wrote it."""
    tmp = path.with_name(path.name + ".plain")
    try:
        unflatten(path, tmp)
        found = vmcoreinfo(tmp).get("OSRELEASE", "")
        fill_utsname(tmp, release=found or release)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
