"""ublk.* operations: a minimal ublk server in batch I/O mode, to watch a multishot uring_cmd.

UBLK_F_BATCH_IO (7.0) replaces one FETCH_REQ per tag with three commands on
/dev/ublkcN: PREP_IO_CMDS hands the driver every tag's buffer, one
FETCH_IO_CMDS (IORING_URING_CMD_MULTISHOT + IOSQE_BUFFER_SELECT) then posts a
CQE with IORING_CQE_F_MORE for each batch of ready requests, the tags (u16
each) written into a buffer taken from a provided-buffer ring, and
COMMIT_IO_CMDS completes them.  The server here answers READs with a sector
stamp (ublk.c) that the reader thread checks, so the count of CQEs is
backed by I/O that really went through the device.

Every wait is bounded: the control ring waits at most CTRL_TIMEOUT_MS per
command, the serving loop has a deadline, and teardown runs whatever
happened.  uapi definitions: ublk.c (copied from 7.2.13's header).
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import subprocess
import time
from collections.abc import Callable
from typing import Any

from guest import memory, native
from guest.areas.uring.ring import BufRing, Ring
from guest.state import SLOWDOWN

CTRL_PATH = "/dev/ublk-control"
QUEUE_DEPTH = 16
IO_BUF_BYTES = 64 << 10
DEV_BYTES = 64 << 20
FETCH_BGID = 3
FETCH_BUFS = 8  # power of two; each fetch CQE consumes one, the server gives it back
FETCH_BUF_SIZE = 2 * QUEUE_DEPTH  # one u16 tag per ready request
CTRL_TIMEOUT_MS = 10000
DESC = struct.Struct("<IIQQ")  # struct ublksrv_io_desc
UD_CTRL, UD_PREP, UD_FETCH, UD_COMMIT = 0xC0, 0xB0, 0xF0, 0x10000
# Reader structs whose thread outlived its join timeout: the thread still
# writes into them, so they must never be freed.
_STUCK_READERS: list[Any] = []


class UblkRing(Ring):
    """A Ring that hands out raw SQEs: ublk commands fill the SQE128 command area themselves."""

    def raw_sqe(self) -> Any:
        ffi, lib = native.ffi(), native.lib()
        sqe = lib.lab_ring_get_sqe(self._c)
        if sqe == ffi.NULL:
            raise OSError(errno.EBUSY, "submission queue full")
        return sqe


def _wait_for(path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s * SLOWDOWN
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise FileNotFoundError(errno.ENOENT, f"{path} did not appear", path)
        time.sleep(0.01)


def _load_driver() -> str:
    """modprobe ublk_drv (a module on Debian's kernels); ENOENT with the reason if absent."""
    if os.path.exists(CTRL_PATH):
        return "present"
    res = subprocess.run(["modprobe", "ublk_drv"], capture_output=True, text=True,
                         timeout=60, check=False)
    try:
        _wait_for(CTRL_PATH, 2.0)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"ublk_drv not available: modprobe exit {res.returncode}: "
            f"{res.stderr.strip()[-300:]}") from None
    return "modprobe"


class Server:
    """One ublk device with one queue, served from this thread; close() undoes everything."""

    def __init__(self) -> None:
        self.ctrl_fd = os.open(CTRL_PATH, os.O_RDWR)
        self.ctrl: UblkRing | None = UblkRing(4, ["SQE128"])
        self.dev_id = -1
        self.cdev_fd = -1
        self.descs: mmap.mmap | None = None
        self.io: UblkRing | None = None
        self.pbuf: BufRing | None = None
        self.pbuf_tail = 0
        self.bufs: memory.Mem | None = None
        self.pending_commits: dict[int, Any] = {}  # user_data -> elements the kernel reads
        self.ctrl_cqes: list[dict[str, Any]] = []
        self.out: dict[str, Any] = {"fetch_submissions": 0, "fetch_cqes": 0, "with_more": 0,
                                    "fetch_final": None, "tags_per_cqe": [], "ios": [],
                                    "commits": []}

    # ---- control commands (/dev/ublk-control, SQE128 uring_cmd) ----
    def _ctrl_submit(self, op: int, *, addr: int = 0, length: int = 0, data0: int = 0,
                     dev_id: int | None = None) -> None:
        ffi, lib = native.ffi(), native.lib()
        assert self.ctrl is not None
        sqe = self.ctrl.raw_sqe()
        sqe.opcode = lib.IORING_OP_URING_CMD
        sqe.fd = self.ctrl_fd
        sqe.user_data = UD_CTRL
        sqe.cmd_op = op  # overlays sqe->off: set after the other fields
        cmd = ffi.cast("struct ublksrv_ctrl_cmd *", lib.lab_sqe_cmd(sqe))
        cmd.dev_id = (self.dev_id if dev_id is None else dev_id) & 0xFFFFFFFF
        cmd.queue_id = 0xFFFF  # "not for a queue"
        cmd.addr, cmd.len, cmd.data[0] = addr, length, data0
        self.ctrl.submit()

    def _ctrl_reaped(self) -> bool:
        assert self.ctrl is not None
        self.ctrl_cqes += self.ctrl.reap()
        return bool(self.ctrl_cqes)

    def _ctrl_result(self, name: str) -> int:
        if not self.ctrl_cqes:
            raise OSError(errno.ETIMEDOUT, f"ublk {name}: no CQE within {CTRL_TIMEOUT_MS} ms")
        res = int(self.ctrl_cqes.pop(0)["res"])
        if res < 0:
            raise OSError(-res, f"ublk {name}: {os.strerror(-res)}")
        return res

    def ctrl_call(self, name: str, op: int, **fields: int) -> int:
        """A control command that needs no I/O served meanwhile."""
        assert self.ctrl is not None
        self._ctrl_submit(op, **fields)
        self.ctrl_cqes += self.ctrl.wait(1, CTRL_TIMEOUT_MS)["cqes"]
        return self._ctrl_result(name)

    def ctrl_serving(self, name: str, op: int, **fields: int) -> int:
        """A control command during which the device may see I/O (START_DEV, STOP_DEV)."""
        self._ctrl_submit(op, **fields)
        self.serve(self._ctrl_reaped, time.monotonic() + CTRL_TIMEOUT_MS / 1000)
        return self._ctrl_result(name)

    # ---- setup ----
    def add(self) -> None:
        ffi, lib = native.ffi(), native.lib()
        feats = ffi.new("uint64_t *")
        self.ctrl_call("GET_FEATURES", lib.UBLK_U_CMD_GET_FEATURES,
                       addr=int(ffi.cast("uintptr_t", feats)), length=8)
        self.out["features"] = hex(int(feats[0]))
        if not feats[0] & lib.UBLK_F_BATCH_IO:
            raise OSError(errno.EOPNOTSUPP, f"ublk_drv lacks UBLK_F_BATCH_IO "
                          f"(features {self.out['features']})")
        info = ffi.new("struct ublksrv_ctrl_dev_info *", {
            "nr_hw_queues": 1, "queue_depth": QUEUE_DEPTH, "max_io_buf_bytes": IO_BUF_BYTES,
            "dev_id": 0xFFFFFFFF,  # "any free id"; must equal the header's
            "flags": lib.UBLK_F_BATCH_IO | lib.UBLK_F_NO_AUTO_PART_SCAN})
        self.ctrl_call("ADD_DEV", lib.UBLK_U_CMD_ADD_DEV, dev_id=0xFFFFFFFF,
                       addr=int(ffi.cast("uintptr_t", info)),
                       length=ffi.sizeof("struct ublksrv_ctrl_dev_info"))
        self.dev_id = int(info.dev_id)
        self.out.update(dev_id=self.dev_id, dev_flags=hex(int(info.flags)),
                        max_io_buf_bytes=int(info.max_io_buf_bytes))
        if not info.flags & lib.UBLK_F_BATCH_IO:
            raise OSError(errno.EOPNOTSUPP, "ADD_DEV dropped UBLK_F_BATCH_IO")
        params = ffi.new("struct ublk_params_basic_only *", {
            "len": ffi.sizeof("struct ublk_params_basic_only"),
            "types": lib.UBLK_PARAM_TYPE_BASIC,
            "basic": {"logical_bs_shift": 9, "physical_bs_shift": 12, "io_opt_shift": 12,
                      "io_min_shift": 9, "max_sectors": int(info.max_io_buf_bytes) >> 9,
                      "dev_sectors": DEV_BYTES >> 9}})
        self.ctrl_call("SET_PARAMS", lib.UBLK_U_CMD_SET_PARAMS,
                       addr=int(ffi.cast("uintptr_t", params)),
                       length=ffi.sizeof("struct ublk_params_basic_only"))

    def open_queue(self) -> None:
        """Open /dev/ublkcN, map its descriptors, make the I/O ring and the fetch buffers."""
        path = f"/dev/ublkc{self.dev_id}"
        _wait_for(path, 5.0)
        self.cdev_fd = os.open(path, os.O_RDWR)
        size = -(-QUEUE_DEPTH * DESC.size // memory.PAGE) * memory.PAGE
        self.descs = mmap.mmap(self.cdev_fd, size, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        self.io = UblkRing(16, ["SQE128"], cq_entries=64)
        self.pbuf = BufRing(self.io, FETCH_BGID, FETCH_BUFS, FETCH_BUF_SIZE)
        self.pbuf_tail = FETCH_BUFS
        self.bufs = memory.alloc(QUEUE_DEPTH * IO_BUF_BYTES)

    def _batch_sqe(self, op: int, user_data: int, *, nr_elem: int, elem_bytes: int,
                   flags: int = 0, addr: int = 0) -> Any:
        ffi, lib = native.ffi(), native.lib()
        assert self.io is not None
        sqe = self.io.raw_sqe()
        sqe.opcode = lib.IORING_OP_URING_CMD
        sqe.fd = self.cdev_fd
        sqe.user_data = user_data
        sqe.addr, sqe.len = addr, nr_elem * elem_bytes
        sqe.cmd_op = op
        cmd = ffi.cast("struct ublk_batch_io *", lib.lab_sqe_cmd(sqe))
        cmd.q_id, cmd.flags, cmd.nr_elem, cmd.elem_bytes = 0, flags, nr_elem, elem_bytes
        return sqe

    def _elems(self, items: list[tuple[int, int]]) -> Any:
        """PREP/COMMIT elements with UBLK_BATCH_F_HAS_BUF_ADDR: (tag, result) each."""
        ffi = native.ffi()
        assert self.bufs is not None
        elems = ffi.new("struct lab_ublk_elem[]", len(items))
        for i, (tag, result) in enumerate(items):
            elems[i].header.tag, elems[i].header.result = tag, result
            elems[i].buf_addr = self.bufs.addr + tag * IO_BUF_BYTES
        return elems

    def prep(self) -> None:
        ffi, lib = native.ffi(), native.lib()
        assert self.io is not None
        elems = self._elems([(t, 0) for t in range(QUEUE_DEPTH)])
        self._batch_sqe(lib.UBLK_U_IO_PREP_IO_CMDS, UD_PREP, nr_elem=QUEUE_DEPTH,
                        elem_bytes=ffi.sizeof("struct lab_ublk_elem"),
                        flags=lib.UBLK_BATCH_F_HAS_BUF_ADDR,
                        addr=int(ffi.cast("uintptr_t", elems)))
        self.io.submit()
        cqes = self.io.wait(1, CTRL_TIMEOUT_MS)["cqes"]
        self.out["prep"] = [c["res"] for c in cqes]
        if [c["user_data"] for c in cqes] != [UD_PREP]:
            raise OSError(errno.EPROTO, f"PREP_IO_CMDS: unexpected CQEs {cqes}")
        if cqes[0]["res"] < 0:
            raise OSError(-cqes[0]["res"], f"PREP_IO_CMDS: {os.strerror(-cqes[0]['res'])}")

    def arm_fetch(self) -> None:
        """The one multishot FETCH_IO_CMDS: tags arrive in buffers of group FETCH_BGID."""
        lib = native.lib()
        assert self.io is not None
        sqe = self._batch_sqe(lib.UBLK_U_IO_FETCH_IO_CMDS, UD_FETCH,
                              nr_elem=FETCH_BUF_SIZE // 2, elem_bytes=2)
        sqe.len = 0
        sqe.flags = lib.IOSQE_BUFFER_SELECT
        sqe.buf_group = FETCH_BGID  # the driver reads it back as sqe->buf_index (a union)
        sqe.uring_cmd_flags = lib.IORING_URING_CMD_MULTISHOT
        self.out["fetch_submissions"] += self.io.submit()

    # ---- serving ----
    def serve(self, done: Callable[[], bool], deadline: float) -> bool:
        """Answer requests until ``done()`` or ``deadline``; False on the deadline."""
        assert self.io is not None
        while not done():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return False
            for cqe in self.io.wait(1, min(left_ms, 50))["cqes"]:
                self._on_cqe(cqe)
        return True

    def _on_cqe(self, cqe: dict[str, Any]) -> None:
        ud = cqe["user_data"]
        if ud >= UD_COMMIT:
            self.pending_commits.pop(ud, None)
            self.out["commits"].append(cqe["res"])
            return
        if ud != UD_FETCH:
            self.out.setdefault("stray_cqes", []).append(cqe)
            return
        self.out["fetch_cqes"] += 1
        self.out["with_more"] += int(cqe["more"])
        if not cqe["more"]:
            self.out["fetch_final"] = {k: cqe[k] for k in ("res", "errno", "flags")}
        if "bid" not in cqe:
            return
        assert self.pbuf is not None
        raw = self.pbuf.read(cqe["bid"], max(cqe["res"], 0))
        tags = list(struct.unpack(f"<{len(raw) // 2}H", raw))
        self.out["tags_per_cqe"].append(tags)
        self._recycle(cqe["bid"])
        if tags:
            self._commit([(t, self._handle(t)) for t in tags])

    def _handle(self, tag: int) -> int:
        """Carry out one request; the result COMMIT reports (bytes, or -errno)."""
        ffi, lib = native.ffi(), native.lib()
        assert self.descs is not None and self.bufs is not None
        op_flags, nr_sectors, sector, _ = DESC.unpack_from(self.descs, tag * DESC.size)
        op, nr_sectors, sector = int(op_flags) & 0xFF, int(nr_sectors), int(sector)
        result: int
        if op == lib.UBLK_IO_OP_READ:
            lib.lab_ublk_stamp(ffi.cast("void *", self.bufs.addr + tag * IO_BUF_BYTES),
                               sector, nr_sectors)
            result = nr_sectors << 9
        elif op == lib.UBLK_IO_OP_WRITE:
            result = nr_sectors << 9  # accepted and dropped: the test only reads
        elif op == lib.UBLK_IO_OP_FLUSH:
            result = 0
        else:
            result = -errno.EOPNOTSUPP
        self.out["ios"].append({"tag": tag, "op": op, "sector": sector,
                                "sectors": nr_sectors, "result": result})
        return result

    def _commit(self, items: list[tuple[int, int]]) -> None:
        ffi, lib = native.ffi(), native.lib()
        assert self.io is not None
        elems = self._elems(items)
        ud = UD_COMMIT + len(self.out["commits"]) + len(self.pending_commits)
        self.pending_commits[ud] = elems
        self._batch_sqe(lib.UBLK_U_IO_COMMIT_IO_CMDS, ud, nr_elem=len(items),
                        elem_bytes=ffi.sizeof("struct lab_ublk_elem"),
                        flags=lib.UBLK_BATCH_F_HAS_BUF_ADDR,
                        addr=int(ffi.cast("uintptr_t", elems)))
        self.io.submit()

    def _recycle(self, bid: int) -> None:
        """Give a consumed fetch buffer back, or the next batch would find none (ENOBUFS)."""
        ffi, lib = native.ffi(), native.lib()
        assert self.pbuf is not None
        base = ffi.cast("void *", self.pbuf.mem.addr)
        lib.lab_pbuf_set(base, FETCH_BUFS, self.pbuf_tail,
                         self.pbuf.bufs.addr + bid * FETCH_BUF_SIZE, FETCH_BUF_SIZE, bid)
        self.pbuf_tail += 1
        lib.lab_pbuf_publish(base, self.pbuf_tail & 0xFFFF)

    # ---- teardown ----
    def close(self) -> None:
        """Release in the order the driver needs: I/O ring and /dev/ublkcN before DEL_DEV."""
        lib = native.lib()
        errors: list[str] = []
        for step in (self._close_queue, lambda: self._delete(lib.UBLK_U_CMD_DEL_DEV)):
            try:
                step()
            except OSError as exc:
                errors.append(str(exc))
        if self.ctrl is not None:
            self.ctrl.close()
            self.ctrl = None
        os.close(self.ctrl_fd)
        if errors:
            self.out["teardown_errors"] = errors

    def _close_queue(self) -> None:
        if self.pbuf is not None:
            self.pbuf.close()
            self.pbuf = None
        if self.io is not None:
            self.io.close()  # cancels a FETCH still armed (io_uring_cmd cancelation)
            self.io = None
        if self.descs is not None:
            self.descs.close()
            self.descs = None
        if self.cdev_fd >= 0:
            os.close(self.cdev_fd)
            self.cdev_fd = -1
        if self.bufs is not None:
            memory.free(self.bufs)
            self.bufs = None

    def _delete(self, op: int) -> None:
        if self.dev_id >= 0:
            self.out["del_res"] = self.ctrl_call("DEL_DEV", op)
            self.dev_id = -1


def _serve_then_stop(server: Any, reader: Any, out: dict[str, Any], deadline: float) -> None:
    """Serve until the reader is done or ``deadline``, then STOP_DEV and wait for the
    FETCH's last CQE (no F_MORE), which stopping the device cancels."""
    lib = native.lib()
    out["served_all"] = server.serve(lambda: bool(lib.lab_ublk_reader_done(reader)), deadline)
    out["stop_res"] = server.ctrl_serving("STOP_DEV", lib.UBLK_U_CMD_STOP_DEV)
    server.serve(lambda: out["fetch_final"] is not None, time.monotonic() + 2)


def _close_and_join(server: Any, reader: Any, out: dict[str, Any], nreads: int) -> None:
    """Tear the server down and join the reader (kept alive if it is stuck in the kernel);
    the reads' results into ``out``."""
    lib = native.lib()
    server.close()
    if int(lib.lab_ublk_reader_join(reader, 5000)) < 0:
        _STUCK_READERS.append(reader)
        out["reader_stuck"] = True
    out["reads"] = [int(r) for r in reader.rets[0:nreads]]
    out["mismatched_reads"] = int(reader.mismatched_reads)


def ublk_batch_fetch(nreads: int = 8, io_len: int = 4096, stride: int = 1 << 20,
                     timeout_ms: int = 30000) -> dict[str, Any]:
    """One FETCH_IO_CMDS serving ``nreads`` O_DIRECT reads of /dev/ublkbN; counts its CQEs.

    The value: fetch_submissions (1), fetch_cqes and with_more (CQEs for that
    one submission, and those carrying IORING_CQE_F_MORE), tags_seen, the
    requests served, the reader's results (bytes or -errno per read, and how
    many came back without the expected sector stamp), and the control
    commands' results.  ENOENT when ublk_drv is missing, EOPNOTSUPP when it
    lacks UBLK_F_BATCH_IO.
    """
    ffi, lib = native.ffi(), native.lib()
    if stride * (nreads - 1) + io_len > DEV_BYTES:
        raise ValueError("reads reach past the device")
    loaded = _load_driver()
    server = Server()
    out = server.out
    out["driver"] = loaded
    reader = ffi.new("struct lab_ublk_reader *")
    started = time.monotonic()
    try:
        server.add()
        server.open_queue()
        server.prep()
        server.arm_fetch()
        # START_DEV waits until every tag is prepared (done above), then adds the disk.
        out["start_res"] = server.ctrl_serving("START_DEV", lib.UBLK_U_CMD_START_DEV,
                                               data0=os.getpid())
        path = f"/dev/ublkb{server.dev_id}".encode()
        reader.path = path
        reader.nreads, reader.len, reader.stride = nreads, io_len, stride
        reader.open_timeout_ms = 5000
        native.check(int(lib.lab_ublk_reader_start(reader)))
        _serve_then_stop(server, reader, out, started + timeout_ms / 1000)
    finally:
        _close_and_join(server, reader, out, nreads)
    out["reader_open_errno"] = errno.errorcode.get(int(reader.open_errno))
    out["tags_seen"] = sorted({t for tags in out["tags_per_cqe"] for t in tags})
    out["elapsed_s"] = round(time.monotonic() - started, 3)
    return out


NOBUFS_MODES = ("empty", "unregister")


def ublk_fetch_nobufs(mode: str, nreads: int = 1, timeout_ms: int = 30000) -> dict[str, Any]:
    """A multishot FETCH_IO_CMDS that finds no buffer when I/O arrives, then a second one.

    ``mode`` "empty": the group's ring is registered with no buffer published;
    "unregister": the group's ring is unregistered after the FETCH was armed.  Either
    way the first request should end the FETCH (``first_final``: its last CQE, and
    ``first_cqes``/``first_with_more``: the CQEs it posted).  The request is not lost:
    the buffers are given back (published, or the ring registered again), a second
    FETCH is armed and serves the ``nreads`` reads to the end (``reads``), then the
    device stops as in ublk.batch_fetch.
    """
    ffi, lib = native.ffi(), native.lib()
    if mode not in NOBUFS_MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(NOBUFS_MODES)}")
    loaded = _load_driver()
    server = Server()
    out = server.out
    out.update(driver=loaded, mode=mode)
    reader = ffi.new("struct lab_ublk_reader *")
    started = time.monotonic()
    deadline = started + timeout_ms / 1000
    try:
        server.add()
        server.open_queue()
        assert server.pbuf is not None
        if mode == "empty":
            # Take back every buffer open_queue published: the kernel has consumed none.
            lib.lab_pbuf_publish(ffi.cast("void *", server.pbuf.mem.addr), 0)
        server.prep()
        server.arm_fetch()
        if mode == "unregister":
            server.pbuf.close()
            server.pbuf = None
        out["start_res"] = server.ctrl_serving("START_DEV", lib.UBLK_U_CMD_START_DEV,
                                               data0=os.getpid())
        reader.path = f"/dev/ublkb{server.dev_id}".encode()
        reader.nreads, reader.len, reader.stride = nreads, 4096, 1 << 20
        reader.open_timeout_ms = 5000
        native.check(int(lib.lab_ublk_reader_start(reader)))
        out["first_ended"] = server.serve(lambda: out["fetch_final"] is not None,
                                          min(deadline, time.monotonic() + 10 * SLOWDOWN))
        out.update(first_final=out["fetch_final"], first_cqes=out["fetch_cqes"],
                   first_with_more=out["with_more"], fetch_final=None)
        if server.pbuf is not None:  # "empty": publish its buffers after all
            server.pbuf_tail = FETCH_BUFS
            lib.lab_pbuf_publish(ffi.cast("void *", server.pbuf.mem.addr), FETCH_BUFS)
        else:  # "unregister": register the group's ring again
            assert server.io is not None
            server.pbuf = BufRing(server.io, FETCH_BGID, FETCH_BUFS, FETCH_BUF_SIZE)
            server.pbuf_tail = FETCH_BUFS
        server.arm_fetch()
        _serve_then_stop(server, reader, out, deadline)
    finally:
        _close_and_join(server, reader, out, nreads)
    out["elapsed_s"] = round(time.monotonic() - started, 3)
    return out


def ublk_features() -> dict[str, Any]:
    """ublk_drv's UBLK_U_CMD_GET_FEATURES (what the driver supports), loading it first:
    ``{"features": int, "batch_io": bool}``; ENOENT when there is no ublk_drv."""
    lib = native.lib()
    _load_driver()
    server = Server()
    try:
        feats = native.ffi().new("uint64_t *")
        server.ctrl_call("GET_FEATURES", lib.UBLK_U_CMD_GET_FEATURES,
                         addr=int(native.ffi().cast("uintptr_t", feats)), length=8)
        return {"features": int(feats[0]), "batch_io": bool(feats[0] & lib.UBLK_F_BATCH_IO)}
    finally:
        server.close()


OPS: dict[str, Callable[..., Any]] = {
    "ublk.features": ublk_features,
    "ublk.batch_fetch": ublk_batch_fetch,
    "ublk.fetch_nobufs": ublk_fetch_nobufs,
}
