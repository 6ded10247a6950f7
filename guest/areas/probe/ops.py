"""probe.* operations: what the running kernel has, asked of the kernel itself.

A scenario's ``requires_feature`` marker names features from FEATURES; the lab asks
``probe.features`` before the test's fixtures run, so a test the kernel cannot run SKIPs
before it did any I/O.  A version string says what a kernel was called, not what it
has (a stable backport, a vendor kernel, a build with the feature off), so each
feature is asked where the kernel has a way to say it: IORING_REGISTER_PROBE for
io_uring opcodes, and for flags a submission whose errno tells "unknown bit" from
"known but refused".  Each answer is ``{"has": bool | None, "how": str}``: None when
the probe could not tell (the lab then runs the test, and records that).

None of the probes does I/O to a device: a rejected submission never reaches one.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from guest import native
from guest.areas.uring.ring import Ring

_PROBE_OPS = 256  # entries asked for: more than any kernel's opcodes
RWF_NAMES = ("RWF_APPEND", "RWF_NOAPPEND", "RWF_ATOMIC", "RWF_DONTCACHE")  # probe.c


def _rwf_bits() -> dict[str, int]:
    """The rw flags the probes use, by name (from the uapi headers, probe.c)."""
    lib = native.lib()
    return {name: int(getattr(lib, name)) for name in RWF_NAMES}

Answer = dict[str, Any]


def _answer(has: bool | None, how: str) -> Answer:
    return {"has": has, "how": how}


def _name(err: int) -> str:
    return errno.errorcode.get(err, str(err)).replace("ENOTSUP", "EOPNOTSUPP")


def uring_ops() -> list[int]:
    """The io_uring opcodes this kernel supports (IORING_REGISTER_PROBE)."""
    ring = Ring(1)
    try:
        ffi, lib = native.ffi(), native.lib()
        head = ffi.sizeof("struct io_uring_probe")
        # Zeroed, as the kernel wants: the header, then _PROBE_OPS entries.
        buf = ffi.new("unsigned char[]", head + ffi.sizeof("struct io_uring_probe_op")
                      * _PROBE_OPS)
        ring.register(lib.IORING_REGISTER_PROBE, buf, _PROBE_OPS)
        probe = ffi.cast("struct io_uring_probe *", buf)
        ops = ffi.cast("struct io_uring_probe_op *", buf + head)
        return [int(ops[i].op) for i in range(probe.ops_len)
                if ops[i].flags & lib.IO_URING_OP_SUPPORTED]
    finally:
        ring.close()


def _uring_op(name: str) -> Answer:
    code = int(getattr(native.lib(), f"IORING_OP_{name}"))
    try:
        ops = uring_ops()
    except OSError as exc:
        # Only ENOSYS says the kernel has no io_uring; EPERM, ENOMEM, EMFILE... say nothing
        # about the opcode: undecided, so the test runs and its record says what failed.
        err = exc.errno or 0
        return _answer(False if err == errno.ENOSYS else None,
                       f"io_uring_setup or IORING_REGISTER_PROBE: {_name(err)}")
    return _answer(code in ops, f"IORING_REGISTER_PROBE: IORING_OP_{name} ({code}) "
                   f"{'supported' if code in ops else 'not supported'}")


def _uring_cmd_multishot() -> Answer:
    """IORING_URING_CMD_MULTISHOT came with IOSQE_BUFFER_SELECT on IORING_OP_URING_CMD.

    The probe submits a uring_cmd (to /dev/null: it never gets that far) with
    BUFFER_SELECT and MULTISHOT|FIXED: a kernel without multishot refuses BUFFER_SELECT
    on a uring_cmd before looking at its flags (EOPNOTSUPP); one with it takes
    BUFFER_SELECT and refuses MULTISHOT with FIXED while preparing it (EINVAL).
    """
    op = _uring_op("URING_CMD")
    if not op["has"]:
        return op
    ring = Ring(2)
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        ring.prep({"opcode": "URING_CMD", "fd": fd, "flags": ["BUFFER_SELECT"],
                   "uring_cmd_flags": ["MULTISHOT", "FIXED"], "buf_group": 0}, int)
        try:
            ring.submit()
            cqes = ring.wait(1, 5000)["cqes"]
            res = int(cqes[0]["res"]) if cqes else None
        except OSError as exc:
            res = -int(exc.errno or 0)
    finally:
        ring.close()
        os.close(fd)
    how = "a uring_cmd with IOSQE_BUFFER_SELECT and MULTISHOT|FIXED: "
    if res == -errno.EINVAL:
        return _answer(True, how + "EINVAL (BUFFER_SELECT taken, MULTISHOT with FIXED refused)")
    if res == -errno.EOPNOTSUPP:
        return _answer(False, how + "EOPNOTSUPP (BUFFER_SELECT refused on a uring_cmd)")
    return _answer(None, how + ("no CQE" if res is None else f"res {res}"))


def _pwritev2(flags: int) -> int:
    """0 when a 1-byte pwritev2 with ``flags`` to a memfd is taken, else its errno."""
    fd = os.memfd_create("lab-probe")
    try:
        os.pwritev(fd, [b"x"], 0, flags)
        return 0
    except OSError as exc:
        return int(exc.errno or 0)
    finally:
        os.close(fd)


def _rwf(name: str) -> Answer:
    return rwf_flag(_rwf_bits()[name], name)


def rwf_flag(flag: int, name: str = "") -> Answer:
    """Whether the kernel knows the rw flag ``flag``: an unknown bit fails the
    RWF_SUPPORTED mask (EOPNOTSUPP) before anything else is checked (kiocb_set_rw_flags)."""
    name = name or hex(flag)
    rwf = _rwf_bits()
    noappend = rwf["RWF_NOAPPEND"]
    if flag == noappend:
        err = _pwritev2(flag)  # no condition of its own on a file without O_APPEND
        return _answer(err == 0 if err in (0, errno.EOPNOTSUPP) else None,
                       f"pwritev2({name}) to a memfd: {_name(err) if err else 'taken'}")
    # APPEND with NOAPPEND is EINVAL right after the mask, before any check of the file.
    err = _pwritev2(flag | rwf["RWF_APPEND"] | noappend)
    how = f"pwritev2({name}|RWF_APPEND|RWF_NOAPPEND): {_name(err)}"
    if err == errno.EINVAL:
        return _answer(True, how + " (past the mask)")
    if err != errno.EOPNOTSUPP:
        return _answer(None, how)
    alone = _pwritev2(noappend)
    if alone == 0:
        return _answer(False, how + " while RWF_NOAPPEND alone is taken: an unknown bit")
    # Without RWF_NOAPPEND no flag-independent refusal is left to tell them apart.
    err = _pwritev2(flag)
    how = f"RWF_NOAPPEND unknown; pwritev2({name}) to a memfd: {_name(err) if err else 'taken'}"
    if err == 0:
        return _answer(True, how)
    return _answer(False if err == errno.EOPNOTSUPP else None,
                   how + " (an unknown bit, or one a memfd cannot take)")


def _path(path: str) -> Answer:
    there = os.path.exists(path)
    return _answer(there, f"{path} {'exists' if there else 'does not exist'}")


def _ublk_batch_io() -> Answer:
    from guest.areas.ublk import ops as ops_ublk

    try:
        got = ops_ublk.ublk_features()
    except OSError as exc:
        # No control device: no ublk; any other error decides nothing.
        gone = exc.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO)
        return _answer(False if gone else None, f"ublk_drv: {exc}")
    return _answer(bool(got["batch_io"]), f"UBLK_U_CMD_GET_FEATURES: {got['features']:#x} "
                   f"({'with' if got['batch_io'] else 'without'} UBLK_F_BATCH_IO)")


FEATURES: dict[str, Callable[[], Answer]] = {
    "uring_cmd": lambda: _uring_op("URING_CMD"),
    "uring_cmd_multishot": _uring_cmd_multishot,
    "io_uring_disabled": lambda: _path("/proc/sys/kernel/io_uring_disabled"),
    "ublk_batch_fetch": _ublk_batch_io,
    "rwf_noappend": lambda: _rwf("RWF_NOAPPEND"),
    "rwf_atomic": lambda: _rwf("RWF_ATOMIC"),
    "rwf_dontcache": lambda: _rwf("RWF_DONTCACHE"),
}


def probe_features(names: list[str]) -> dict[str, Answer]:
    """``{name: {"has": ..., "how": ...}}`` for each feature of FEATURES named."""
    unknown = sorted(set(names) - set(FEATURES))
    if unknown:
        raise ValueError(f"unknown features {unknown} (known: {', '.join(FEATURES)})")
    return {name: FEATURES[name]() for name in names}


OPS: dict[str, Callable[..., Any]] = {
    "probe.features": probe_features,
    "probe.uring_ops": uring_ops,
    "probe.rwf_flag": rwf_flag,
}
