"""nvme.* operations: NVMe passthrough through IORING_OP_URING_CMD, and fio as an outside client.

Admin commands go to the controller's char device (/dev/nvme0) with
NVME_URING_CMD_ADMIN, I/O to the generic namespace device (/dev/ng0n1) with
NVME_URING_CMD_IO.  ``cqe.res`` is the NVMe status (0 = success) or -errno.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from guest import memory, native
from guest.areas.uring.ops import RINGS
from guest.state import MEMS

ADMIN_IDENTIFY = 0x06
CNS_CONTROLLER = 1
IO_WRITE = 0x01
IO_READ = 0x02
IDENTIFY_LEN = 4096


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii", errors="replace").rstrip(" \0")


def nvme_nsid(path: str) -> int:
    """NVME_IOCTL_ID: the namespace id behind a block or generic char device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return fcntl.ioctl(fd, int(native.lib().NVME_IOCTL_ID))
    finally:
        os.close(fd)


def nvme_identify(ring: int, ctrl: str, timeout_ms: int = 10000) -> dict[str, Any]:
    """Identify Controller (opcode 0x06, CNS 1) through uring_cmd; fields parsed per NVMe 1.4."""
    r = RINGS.get(ring)
    mem = memory.alloc(IDENTIFY_LEN)
    handle = MEMS.add(mem)
    fd = os.open(ctrl, os.O_RDONLY)
    try:
        r.prep({"opcode": "URING_CMD", "fd": fd, "cmd_op": "NVME_URING_CMD_ADMIN",
                "user_data": 0x1D,
                "nvme": {"opcode": ADMIN_IDENTIFY, "cdw10": CNS_CONTROLLER, "buf": handle,
                         "data_len": IDENTIFY_LEN}},
               lambda h: MEMS.get(h).addr)
        submitted = r.submit()
        waited = r.wait(1, timeout_ms)
        data = bytes(memory.buffer(mem.addr, IDENTIFY_LEN)[:])
    finally:
        os.close(fd)
        memory.free(MEMS.pop(handle))
    out: dict[str, Any] = {"submitted": submitted, **waited}
    if waited["cqes"] and waited["cqes"][0]["res"] == 0:
        out.update(vid=int.from_bytes(data[0:2], "little"), serial=_ascii(data[4:24]),
                   model=_ascii(data[24:64]), firmware=_ascii(data[64:72]))
    return out


def nvme_rw(ring: int, path: str, *, write: bool, slba: int, nblocks: int, buf: int,
            nsid: int, lba_size: int, timeout_ms: int = 10000,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One NVMe Read/Write of ``nblocks`` blocks at ``slba`` through NVME_URING_CMD_IO.

    ``extra`` is merged into the SQE description (uring_cmd_flags, flags,
    buf_group...) so the multishot rules can be exercised on real I/O.
    """
    r = RINGS.get(ring)
    fd = os.open(path, os.O_RDWR)
    try:
        spec: dict[str, Any] = {
            "opcode": "URING_CMD", "fd": fd, "cmd_op": "NVME_URING_CMD_IO",
            "user_data": 0x10 | int(write),
            "nvme": {"opcode": IO_WRITE if write else IO_READ, "nsid": nsid, "buf": buf,
                     "data_len": nblocks * lba_size, "cdw10": slba & 0xFFFFFFFF,
                     "cdw11": slba >> 32, "cdw12": nblocks - 1},
            **(extra or {}),
        }
        r.prep(spec, lambda h: MEMS.get(h).addr)
        submitted = r.submit()
        return {"submitted": submitted, **r.wait(1, timeout_ms)}
    finally:
        os.close(fd)


def nvme_fio_engines() -> list[str]:
    """fio's compiled-in I/O engines ([] when fio is not installed)."""
    fio = shutil.which("fio")
    if fio is None:
        return []
    res = subprocess.run([fio, "--enghelp"], capture_output=True, text=True, timeout=60,
                         check=False)
    return [line.strip() for line in res.stdout.splitlines()[1:] if line.strip()]


def nvme_fio(args: list[str], timeout_s: float = 300) -> dict[str, Any]:
    """Run fio with JSON output; per job: error, bytes and IOPS per direction, clat mean."""
    fio = shutil.which("fio")
    if fio is None:
        raise FileNotFoundError("fio is not installed")
    res = subprocess.run([fio, "--output-format=json", *args], capture_output=True,
                         text=True, timeout=timeout_s, check=False)
    out: dict[str, Any] = {"status": res.returncode, "stderr": res.stderr[-2000:], "jobs": []}
    start = res.stdout.find("{")
    if start < 0:
        out["stdout"] = res.stdout[-2000:]
        return out
    report = json.loads(res.stdout[start:])
    out["version"] = report.get("fio version")
    for job in report.get("jobs", []):
        item: dict[str, Any] = {"name": job.get("jobname"), "error": job.get("error")}
        for rw in ("read", "write"):
            d = job.get(rw, {})
            item[rw] = {"io_bytes": d.get("io_bytes", 0), "iops": round(d.get("iops", 0), 1),
                        "clat_mean_ns": round(d.get("clat_ns", {}).get("mean", 0))}
        out["jobs"].append(item)
    return out


OPS: dict[str, Callable[..., Any]] = {
    "nvme.nsid": nvme_nsid,
    "nvme.identify": nvme_identify,
    "nvme.rw": nvme_rw,
    "nvme.fio_engines": nvme_fio_engines,
    "nvme.fio": nvme_fio,
}
