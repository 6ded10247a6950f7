"""An io_uring ring in the agent: setup, SQE filling, submission, timed reaping.

The ring plumbing (mappings, acquire/release on the shared indices) is in
uring.c; this module turns JSON-friendly SQE descriptions into SQE
fields through cffi, whose struct offsets come from the uapi header.
"""

from __future__ import annotations

import errno
import time
from typing import Any

from guest import memory, native
from guest.flags import flag_bits, from_lib

SETUP_FLAGS = ("IOPOLL", "SQPOLL", "CQSIZE", "CLAMP", "SUBMIT_ALL", "COOP_TASKRUN",
               "SINGLE_ISSUER", "SQE128", "CQE32")
SQE_FLAGS = ("FIXED_FILE", "IO_DRAIN", "IO_LINK", "IO_HARDLINK", "ASYNC", "BUFFER_SELECT",
             "CQE_SKIP_SUCCESS")
OPCODES = ("NOP", "READV", "WRITEV", "READ_FIXED", "WRITE_FIXED", "READ", "WRITE",
           "URING_CMD")
URING_CMD_FLAGS = ("FIXED", "MULTISHOT")
CMD_OPS = ("NVME_URING_CMD_IO", "NVME_URING_CMD_ADMIN")
NVME_FIELDS = ("opcode", "flags", "nsid", "cdw2", "cdw3", "metadata", "metadata_len",
               "data_len", "cdw10", "cdw11", "cdw12", "cdw13", "cdw14", "cdw15",
               "timeout_ms")


def bits(names: list[str] | int | None, prefix: str, known: tuple[str, ...]) -> int:
    """OR of ``prefix + name`` constants from the extension, or a raw int as is."""
    return flag_bits(names, from_lib(native.lib(), prefix, known), "flag", prefix)


def constant(name: str | int, prefix: str, known: tuple[str, ...]) -> int:
    if isinstance(name, int):
        return name
    short = name.removeprefix(prefix)
    if short not in known:
        raise ValueError(f"unknown name {name!r} (known: {', '.join(known)})")
    return int(getattr(native.lib(), prefix + short))


class Ring:
    """One io_uring instance with its SQ/CQ/SQE mappings."""

    def __init__(self, entries: int, flags: list[str] | int | None = None,
                 cq_entries: int = 0) -> None:
        ffi, lib = native.ffi(), native.lib()
        self._c = ffi.new("struct lab_ring *")
        params = ffi.new("struct io_uring_params *")
        params.flags = bits(flags, "IORING_SETUP_", SETUP_FLAGS)
        if cq_entries:
            params.flags |= lib.IORING_SETUP_CQSIZE
            params.cq_entries = cq_entries
        native.check(int(lib.lab_ring_init(self._c, entries, params)))
        self._p = params  # the kernel's offsets into the ring mappings (state())
        self.params = {
            "fd": int(self._c.fd),
            "flags": int(params.flags),
            "features": int(params.features),
            "sq_entries": int(params.sq_entries),
            "cq_entries": int(params.cq_entries),
            "sqe_size": int(self._c.sqe_size),
            "cqe_size": int(self._c.cqe_size),
        }
        if not params.features & lib.IORING_FEAT_EXT_ARG:
            # Timed waits need IORING_ENTER_EXT_ARG (5.11); without it a wait
            # could block forever, which the lab never allows.
            self.close()
            raise OSError(errno.ENOTSUP, "io_uring lacks IORING_FEAT_EXT_ARG")
        self._keep: list[Any] = []  # cdata the kernel reads at submit time

    @property
    def fd(self) -> int:
        return int(self._c.fd)

    def close(self) -> None:
        if self._c.fd >= 0:
            native.check(int(native.lib().lab_ring_exit(self._c)))

    def register(self, opcode: int, arg: Any, nr_args: int) -> int:
        return native.check(int(native.lib().lab_uring_register(self.fd, opcode, arg, nr_args)))

    def prep(self, spec: dict[str, Any], addr_of: Any) -> None:
        """Fill the next SQE from ``spec``; ``addr_of(handle)`` maps mem handles to addresses."""
        ffi, lib = native.ffi(), native.lib()
        sqe = lib.lab_ring_get_sqe(self._c)
        if sqe == ffi.NULL:
            raise OSError(errno.EBUSY, "submission queue full")
        sqe.opcode = constant(spec.get("opcode", "NOP"), "IORING_OP_", OPCODES)
        sqe.flags = bits(spec.get("flags"), "IOSQE_", SQE_FLAGS)
        sqe.fd = int(spec.get("fd", -1))
        sqe.user_data = int(spec.get("user_data", 0))
        if "buf" in spec:
            sqe.addr = addr_of(spec["buf"])
        elif "addr" in spec:
            sqe.addr = int(spec["addr"])
        sqe.len = int(spec.get("len", 0))
        if "buf_group" in spec:
            sqe.buf_group = int(spec["buf_group"])
        if "buf_index" in spec:
            sqe.buf_index = int(spec["buf_index"])
        if sqe.opcode == lib.IORING_OP_URING_CMD:
            # cmd_op overlays off: set it after anything that touched off.
            sqe.cmd_op = constant(spec.get("cmd_op", 0), "", CMD_OPS)
            sqe.uring_cmd_flags = bits(spec.get("uring_cmd_flags"), "IORING_URING_CMD_",
                                       URING_CMD_FLAGS)
            if "nvme" in spec:
                self._prep_nvme(sqe, spec["nvme"], addr_of)
        else:
            sqe.off = int(spec.get("off", 0))
            sqe.rw_flags = int(spec.get("rw_flags", 0))

    def _prep_nvme(self, sqe: Any, nvme: dict[str, Any], addr_of: Any) -> None:
        ffi, lib = native.ffi(), native.lib()
        if self._c.sqe_size < 128:
            # Only 16 bytes of command space: writing a 72-byte nvme_uring_cmd
            # would run into the next SQE.  The kernel must still see the
            # submission (and refuse it), so the header alone goes in.
            return
        cmd = ffi.cast("struct nvme_uring_cmd *", lib.lab_sqe_cmd(sqe))
        for field in NVME_FIELDS:
            if field in nvme:
                setattr(cmd, field, int(nvme[field]))
        if "buf" in nvme:
            cmd.addr = addr_of(nvme["buf"])

    def submit(self) -> int:
        return native.check(int(native.lib().lab_ring_submit(self._c)))

    def set_last_index(self, index: int) -> None:
        """Make the SQ array slot of the SQE prepared last point at ``index``."""
        native.lib().lab_ring_set_last_index(self._c, index & 0xFFFFFFFF)

    def state(self) -> dict[str, Any]:
        """The shared indices, SQ flags and the kernel's counters, as userspace sees them."""
        ffi, lib = native.ffi(), native.lib()
        out = ffi.new("struct lab_ring_state *")
        lib.lab_ring_state(self._c, self._p, out)
        got = {name: int(getattr(out, name)) for name, _ in ffi.typeof(out).item.fields}
        got["cq_overflow_flag"] = bool(got["sq_flags"] & lib.IORING_SQ_CQ_OVERFLOW)
        return got

    def getevents(self, min_complete: int, timeout_ms: int) -> dict[str, Any]:
        """One io_uring_enter(GETEVENTS, min_complete) bounded by ``timeout_ms``; reaps nothing."""
        lib = native.lib()
        started = time.monotonic_ns()
        ret = int(lib.lab_ring_wait(self._c, min_complete, timeout_ms * 1_000_000))
        elapsed = time.monotonic_ns() - started
        return {"ret": ret if ret >= 0 else errno.errorcode.get(-ret, str(ret)),
                "elapsed_ns": elapsed, "ready": self.state()["cq_ready"]}

    def reap(self, max_cqes: int = 256) -> list[dict[str, Any]]:
        ffi, lib = native.ffi(), native.lib()
        out = ffi.new("struct lab_cqe[]", max_cqes)
        n = native.check(int(lib.lab_ring_reap(self._c, out, max_cqes)))
        more, buffer = int(lib.IORING_CQE_F_MORE), int(lib.IORING_CQE_F_BUFFER)
        cqes = []
        for c in out[0:n]:
            item: dict[str, Any] = {
                "user_data": int(c.user_data),
                "res": int(c.res),
                "errno": errno.errorcode.get(-int(c.res)) if c.res < 0 else None,
                "flags": int(c.flags),
                "more": bool(c.flags & more),
            }
            if c.flags & buffer:
                item["bid"] = int(c.flags) >> int(lib.IORING_CQE_BUFFER_SHIFT)
            if self._c.cqe_size == 32:
                item["big"] = [int(c.big[0]), int(c.big[1])]
            cqes.append(item)
        return cqes

    def wait(self, nr: int, timeout_ms: int) -> dict[str, Any]:
        """Reap until ``nr`` CQEs arrived or ``timeout_ms`` passed (always bounded)."""
        lib = native.lib()
        deadline = time.monotonic() + timeout_ms / 1000
        cqes = self.reap()
        while len(cqes) < nr:
            left_ns = int((deadline - time.monotonic()) * 1e9)
            if left_ns <= 0:
                break
            ret = int(lib.lab_ring_wait(self._c, nr - len(cqes), left_ns))
            if ret < 0 and -ret not in (errno.ETIME, errno.EINTR, errno.EAGAIN, errno.EBUSY):
                native.check(ret)
            cqes += self.reap()
        return {"cqes": cqes, "timed_out": len(cqes) < nr}


class BufRing:
    """A provided-buffer ring (IORING_REGISTER_PBUF_RING) with its buffers."""

    def __init__(self, ring: Ring, bgid: int, entries: int, buf_size: int) -> None:
        ffi, lib = native.ffi(), native.lib()
        if entries <= 0 or entries & (entries - 1):
            raise ValueError("entries must be a power of two")
        self.ring, self.bgid, self.entries, self.buf_size = ring, bgid, entries, buf_size
        self.mem = memory.alloc(entries * 16)  # sizeof(struct io_uring_buf)
        self.bufs = memory.alloc(entries * buf_size)
        reg = ffi.new("struct io_uring_buf_reg *",
                      {"ring_addr": self.mem.addr, "ring_entries": entries, "bgid": bgid})
        try:
            ring.register(lib.IORING_REGISTER_PBUF_RING, reg, 1)
        except OSError:
            memory.free(self.mem)
            memory.free(self.bufs)
            raise
        base = ffi.cast("void *", self.mem.addr)
        for i in range(entries):
            lib.lab_pbuf_set(base, entries, i, self.bufs.addr + i * buf_size, buf_size, i)
        lib.lab_pbuf_publish(base, entries)

    def read(self, bid: int, length: int) -> bytes:
        return bytes(memory.buffer(self.bufs.addr + bid * self.buf_size, length)[:])

    def close(self) -> None:
        ffi, lib = native.ffi(), native.lib()
        reg = ffi.new("struct io_uring_buf_reg *", {"bgid": self.bgid})
        try:
            if self.ring.fd >= 0:
                self.ring.register(lib.IORING_UNREGISTER_PBUF_RING, reg, 1)
        finally:
            memory.free(self.mem)
            memory.free(self.bufs)


def proc_status_kb(field: str, pid: str = "self") -> int:
    """A ``kB`` field of /proc/PID/status (VmPin, VmLck); 0 when the kernel lacks it."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == field:
                return int(value.split()[0])
    return 0
