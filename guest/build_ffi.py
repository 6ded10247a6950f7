"""Build the guest agent's cffi extension (``_labsys``) in API mode.

Run on the host as ``python3 -m guest.build_ffi --out DIR``.  The guest shares
the host's root filesystem and Python, so a module compiled here imports
there.  API mode (a real C compile) is used so struct layouts and constants
come from the installed kernel headers rather than from offsets typed by hand.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import cffi

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
CSRC = CSRC_DIR / "labsys.c"

# Capability names known to <linux/capability.h> on current headers.  Listed
# here (not parsed) so a header that lacks one fails the build loudly.
CAP_NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

IOCB_CMDS = ("PREAD", "PWRITE", "FSYNC", "FDSYNC", "POLL", "NOOP", "PREADV", "PWRITEV")

# The trailing "...;" in each struct lets cffi take offsets and padding from
# the real header (aio_key/aio_rw_flags swap places on big-endian, for one).
CDEF = """
typedef unsigned long aio_context_t;

struct iocb {
    uint64_t aio_data;
    uint32_t aio_key;
    int aio_rw_flags;
    uint16_t aio_lio_opcode;
    int16_t aio_reqprio;
    uint32_t aio_fildes;
    uint64_t aio_buf;
    uint64_t aio_nbytes;
    int64_t aio_offset;
    uint64_t aio_reserved2;
    uint32_t aio_flags;
    uint32_t aio_resfd;
    ...;
};

struct io_event {
    uint64_t data;
    uint64_t obj;
    int64_t res;
    int64_t res2;
    ...;
};

struct timespec { long tv_sec; long tv_nsec; ...; };
struct iovec { void *iov_base; size_t iov_len; ...; };

struct __user_cap_header_struct { uint32_t version; int pid; ...; };
struct __user_cap_data_struct {
    uint32_t effective; uint32_t permitted; uint32_t inheritable; ...;
};

#define IOCB_FLAG_RESFD ...
#define IOCB_FLAG_IOPRIO ...
#define _LINUX_CAPABILITY_VERSION_3 ...
#define _LINUX_CAPABILITY_U32S_3 ...
#define PROT_NONE ...
#define PROT_READ ...
#define PROT_WRITE ...

long lab_io_setup(unsigned nr_events, aio_context_t *ctxp);
long lab_io_destroy(aio_context_t ctx);
long lab_io_submit(aio_context_t ctx, long nr, struct iocb **iocbpp);
long lab_io_cancel(aio_context_t ctx, struct iocb *iocb, struct io_event *result);
long lab_io_getevents(aio_context_t ctx, long min_nr, long nr,
                      struct io_event *events, struct timespec *timeout);
long lab_capget(struct __user_cap_header_struct *hdr,
                struct __user_cap_data_struct *data);
long lab_capset(struct __user_cap_header_struct *hdr,
                struct __user_cap_data_struct *data);
long lab_gettid(void);
long lab_eventfd2(unsigned initval, int flags);
uintptr_t lab_map(size_t len, int prot);
uintptr_t lab_map_at(uintptr_t addr, size_t len, int prot);
long lab_mprotect(uintptr_t addr, size_t len, int prot);
long lab_munmap(uintptr_t addr, size_t len);
long lab_errno(void);
"""
CDEF += "".join(f"static const int IOCB_CMD_{name};\n" for name in IOCB_CMDS)
CDEF += "".join(f"#define {name} ...\n" for name in CAP_NAMES)


def _areas() -> list[Path]:
    """Other areas' C helpers (``csrc/AREA.c`` with its declarations in ``AREA.cdef``)."""
    return sorted(p for p in CSRC_DIR.glob("*.c") if p != CSRC)


def make_builder() -> cffi.FFI:
    """One extension for every area: labsys.c plus each csrc/AREA.c and AREA.cdef."""
    ffibuilder = cffi.FFI()
    cdef = CDEF + "".join(p.with_suffix(".cdef").read_text() for p in _areas())
    ffibuilder.cdef(cdef)
    source = "\n".join(p.read_text() for p in [CSRC, *_areas()])
    ffibuilder.set_source("_labsys", source, include_dirs=[str(CSRC_DIR)],
                          extra_compile_args=["-pthread"],
                          libraries=["pthread"])
    return ffibuilder


def build(out: Path) -> Path:
    """Compile in a scratch dir and copy only the .so into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ffibuilder = make_builder()
    with tempfile.TemporaryDirectory(prefix="labsys-build-") as tmp:
        built = Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        dest = out / built.name
        shutil.copy2(built, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", required=True, type=Path, help="directory for _labsys*.so"
    )
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
