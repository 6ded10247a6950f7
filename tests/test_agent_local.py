"""The guest agent against the host kernel: real syscalls, no mocks.

The agent is staged once per session exactly as the lab stages it (lab.vm.stage), started
on the host by the lab's own client (``Agent.local``: the archive checked and unpacked by
guest.zygote.unpack, as in a guest), and spoken to over JSON lines.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from guest.objects import KINDS
from lab.paths import GUEST_DIR
from lab.vm.agent import (
    Agent,
    AgentError,
    AgentOpError,
    AgentReplyTooLong,
    AgentTimeout,
    GuestOSError,
)

CAP_SYS_ADMIN = 21
CAP_SYS_NICE = 23
IOPRIO_RT_0 = 1 << 13  # IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0)
TIMEOUT = 20.0


def copy_guest(dest: Path) -> Path:
    """The agent's sources without their extension, in ``dest``/guest."""
    shutil.copytree(GUEST_DIR, dest / "guest",
                    ignore=shutil.ignore_patterns("__pycache__", "_labsys*.so"))
    return dest


def test_handshake(agent: Agent) -> None:
    hello = agent.hello
    assert hello["protocol"] == 1
    assert hello["pid"] == agent.transport.pid  # type: ignore[attr-defined]
    assert hello["release"] == os.uname().release
    assert hello["python"] == platform.python_version()
    assert hello["areas"] == sorted(hello["areas"]) and "aio" in hello["areas"]
    ops = agent.call("agent.ops")  # imports every area (the hello imported none)
    assert ops == sorted(ops)
    for op in (
        "agent.ping",
        "agent.exit",
        "aio.setup",
        "aio.submit",
        "aio.cancel",
        "aio.getevents",
        "creds.call",
        "sys.kmsg_read",
        "mem.alloc",
        "fs.open",
    ):
        assert op in ops
    assert agent.call("agent.ping") == "pong"


def test_each_area_is_imported_at_its_first_call(tmp_path: Path) -> None:
    """The agent starts with no area imported; an op imports its area's folder, and every
    op lives in the folder of the area that names it (guest/registry.py)."""
    script = (
        "import sys, guest.protocol as p\n"
        "def areas(): return sorted(m for m in sys.modules if m.startswith('guest.areas.'))\n"
        "before = areas()\n"
        "p.lookup('aio.setup')\n"
        "after = [m for m in areas() if m.endswith('.ops')]\n"
        "p.agent_ops()\n"
        "bad = [op for op, f in p.OPS.items() if f.__module__ != 'guest.protocol' and\n"
        "       not f.__module__.startswith('guest.areas.' + op.split('.')[0] + '.')]\n"
        "print(before, after, bad)\n"
    )
    res = subprocess.run([sys.executable, "-S", "-c", script], cwd=copy_guest(tmp_path),
                         capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[] ['guest.areas.aio.ops'] []"


def test_missing_extension_fails_handshake(tmp_path: Path) -> None:
    root = copy_guest(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "guest"],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(root)),
        input="",
        capture_output=True,
        check=False,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 1
    hello = json.loads(proc.stdout.splitlines()[0])["hello"]
    assert hello["protocol"] == 1
    assert "_labsys" in hello["error"]


def test_unknown_op_and_bad_args_keep_agent_alive(agent: Agent) -> None:
    reply = agent.request("no.such.op")
    assert reply["ok"] is False and reply["error"] == "unknown op 'no.such.op'"
    assert "errno" not in reply
    reply = agent.request("aio.setup", bogus=1)
    assert (
        reply["ok"] is False and "errno" not in reply and "TypeError" in reply["error"]
    )
    assert agent.call("agent.ping") == "pong"


def test_agent_exit_and_eof(start_agent: Callable[[], Agent]) -> None:
    a = start_agent()
    assert a.request("agent.exit")["ok"] is True
    assert a.close() == 0
    b = start_agent()
    assert b.close() == 0  # agent.exit sent by close(), or EOF on stdin


def test_replies_carry_their_time_and_typed_errors(agent: Agent) -> None:
    """The client's reading of a reply: the op's time, an errno as GuestOSError (number,
    name, message), any other failure as AgentOpError with the agent's traceback."""
    assert agent.call("agent.ping") == "pong" and agent.last_elapsed_ns > 0
    with pytest.raises(GuestOSError) as err:
        agent.call("fs.open", path="/nonexistent/x")
    assert (err.value.errno, err.value.errno_name, err.value.op) == \
        (errno.ENOENT, "ENOENT", "fs.open")
    assert "No such file" in str(err.value)
    with pytest.raises(AgentOpError) as op_err:
        agent.call("sys.kmsg_write", text=5)
    assert "Traceback" in op_err.value.guest_traceback
    assert agent.errno_of("agent.ping") is None


def test_a_call_past_its_timeout_breaks_the_client(agent: Agent) -> None:
    """A reply that did not come in time would be taken for the next call's: the client
    refuses every later call instead."""
    r, _ = agent.call("fs.pipe")
    with pytest.raises(AgentTimeout):
        agent.call("fs.read", fd=r, length=1, call_timeout=0.5)  # an empty pipe: it blocks
    assert not agent.alive()
    with pytest.raises(AgentError, match=r"unusable since fs\.read timed out"):
        agent.call("agent.ping")


def test_a_reply_past_the_cap_fails_the_call_and_breaks_the_client(
        agent: Agent, tmp_path: Path) -> None:
    """A reply longer than ``reply_cap`` (one JSON line) is never held whole: the call fails
    saying so, and the rest of it still coming would be taken for the next call's reply."""
    agent.reply_cap = 1 << 20
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_text("s" * (900 << 10))
    big.write_text("b" * (3 << 20))
    assert agent.call("sys.read_text", path=str(small)) == "s" * (900 << 10)
    with pytest.raises(AgentReplyTooLong, match=r"the agent's reply exceeded 1048576 bytes"):
        agent.call("sys.read_text", path=str(big))
    assert len(agent._buf) <= (1 << 20) + (64 << 10)  # one read past the cap at most
    assert not agent.alive()
    with pytest.raises(AgentError, match=r"unusable since sys\.read_text's reply was too long"):
        agent.call("agent.ping")


def test_the_default_reply_cap_is_16_mib(agent: Agent, tmp_path: Path) -> None:
    """Fifty times the largest real reply (a kernel's config, ~300 KB), no more: a hostile
    line costs ~25 times its size in json.loads."""
    big = tmp_path / "big"
    big.write_text("b" * (17 << 20))
    with pytest.raises(AgentReplyTooLong, match=r"the agent's reply exceeded 16777216 bytes"):
        agent.call("sys.read_text", path=str(big))


def test_an_agent_that_dies_is_an_agent_error(agent: Agent) -> None:
    os.kill(agent.hello["pid"], signal.SIGKILL)
    with pytest.raises(AgentError, match=r"agent exited \(status -9\)|cannot send"):
        agent.call("agent.ping")


def test_oserror_becomes_errno_name(agent: Agent) -> None:
    assert agent.errno_of("fs.open", path="/nonexistent/x") == "ENOENT"
    assert agent.errno_of("fs.close", fd=99999) == "EBADF"


# ---------------------------------------------------------------- mem / fs


def test_mem_alignment_and_contents(agent: Agent) -> None:
    h = agent.call("mem.alloc", size=100, align=65536, fill=0xAB)
    assert agent.call("mem.addr", handle=h) % 65536 == 0
    assert agent.call("mem.read", handle=h, length=4) == "abababab"
    agent.call("mem.write", handle=h, data_hex="0102", offset=98)
    assert agent.call("mem.read", handle=h, offset=97) == "ab0102"
    agent.call("mem.fill", handle=h, byte=0)
    assert agent.call("mem.read", handle=h) == "00" * 100
    assert "error" in agent.request("mem.read", handle=h, offset=99, length=2)
    agent.call("mem.free", handle=h)
    assert "error" in agent.request("mem.read", handle=h)


def test_eventfd_empty_is_eagain(agent: Agent) -> None:
    fd = agent.call("fs.eventfd")
    assert agent.errno_of("fs.eventfd_read", fd=fd) == "EAGAIN"
    agent.call("fs.close", fd=fd)
    fd = agent.call("fs.eventfd", initval=3, flags=[])
    assert agent.call("fs.eventfd_read", fd=fd) == 3


# ---------------------------------------------------------------- aio


def test_aio_setup_destroy_twice(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=16)
    assert isinstance(ctx, int) and ctx != 0
    assert agent.call("aio.destroy", ctx=ctx) is None
    assert agent.errno_of("aio.destroy", ctx=ctx) == "EINVAL"
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[]) == "EINVAL"


def test_submit_nr_zero(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    assert agent.call("aio.submit", ctx=ctx, iocbs=[], nr=0) == {
        "submitted": 0,
        "iocbs": [],
    }
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[], nr=-1) == "EINVAL"
    agent.call("aio.destroy", ctx=ctx)


def test_pwrite_pread_roundtrip(agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "data"
    ctx = agent.call("aio.setup", nr_events=8)
    fd = agent.call("fs.open", path=str(path), flags=["O_RDWR", "O_CREAT", "O_TRUNC"])
    pattern = bytes(range(256)) * 16
    src = agent.call("mem.alloc", size=4096)
    agent.call("mem.write", handle=src, data_hex=pattern.hex())

    sub = agent.call(
        "aio.submit",
        ctx=ctx,
        iocbs=[
            {"opcode": "PWRITE", "fd": fd, "buf": src, "nbytes": 4096, "offset": 4096}
        ],
    )
    assert sub["submitted"] == 1
    (wid,) = sub["iocbs"]
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=4, timeout_ms=5000)
    assert ev["res"] == 4096 and ev["res2"] == 0
    assert ev["iocb"] == wid and ev["data"] == wid  # default aio_data is our id
    assert ev["obj"] == agent.call("aio.iocb", id=wid)["addr"]
    assert path.read_bytes() == b"\0" * 4096 + pattern

    dst = agent.call("mem.alloc", size=4096)
    sub = agent.call(
        "aio.submit",
        ctx=ctx,
        iocbs=[
            {
                "opcode": "PREAD",
                "fd": fd,
                "buf": dst,
                "nbytes": 4096,
                "offset": 4096,
                "data": 77,
            }
        ],
    )
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=5000)
    assert ev["res"] == 4096 and ev["data"] == 77 and ev["iocb"] == sub["iocbs"][0]
    assert bytes.fromhex(agent.call("mem.read", handle=dst)) == pattern

    # Reading past EOF completes with res 0, not an error.
    agent.call(
        "aio.submit",
        ctx=ctx,
        iocbs=[
            {"opcode": "PREAD", "fd": fd, "buf": dst, "nbytes": 4096, "offset": 1 << 20}
        ],
    )
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=5000)
    assert ev["res"] == 0
    agent.call("aio.destroy", ctx=ctx)
    agent.call("fs.close", fd=fd)


def test_pwritev_gathers_iovecs(agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "v"
    ctx = agent.call("aio.setup", nr_events=4)
    fd = agent.call("fs.open", path=str(path), flags=["O_RDWR", "O_CREAT"])
    a = agent.call("mem.alloc", size=8, fill=0x61)
    b = agent.call("mem.alloc", size=8, fill=0x62)
    spec = {"opcode": "PWRITEV", "fd": fd, "iov": [[a, 0, 3], [b, 2, 5]]}
    assert agent.call("aio.submit", ctx=ctx, iocbs=[spec])["submitted"] == 1
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=5000)
    assert ev["res"] == 8
    assert path.read_bytes() == b"aaabbbbb"
    agent.call("aio.destroy", ctx=ctx)


def test_resfd_signals_eventfd(agent: Agent, tmp_path: Path) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    fd = agent.call("fs.open", path=str(tmp_path / "f"), flags=["O_RDWR", "O_CREAT"])
    efd = agent.call("fs.eventfd")
    buf = agent.call("mem.alloc", size=512, fill=0x5A)
    agent.call(
        "aio.submit",
        ctx=ctx,
        iocbs=[
            {
                "opcode": "PWRITE",
                "fd": fd,
                "buf": buf,
                "nbytes": 512,
                "flags": ["RESFD"],
                "resfd": efd,
            }
        ],
    )
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=5000)
    assert ev["res"] == 512
    assert agent.call("fs.eventfd_read", fd=efd) == 1
    agent.call("aio.destroy", ctx=ctx)


def test_bad_fd_is_ebadf(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    buf = agent.call("mem.alloc", size=512)
    assert (
        agent.errno_of(
            "aio.submit",
            ctx=ctx,
            iocbs=[{"opcode": "PREAD", "fd": 9999, "buf": buf, "nbytes": 512}],
        )
        == "EBADF"
    )
    # The iocb was still created and is retrievable after the failure.
    (iid,) = agent.call("aio.last_iocbs")
    assert agent.call("aio.iocb", id=iid)["fd"] == 9999
    agent.call("aio.destroy", ctx=ctx)


def test_null_and_fault_entries(agent: Agent, tmp_path: Path) -> None:
    ctx = agent.call("aio.setup", nr_events=8)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=["null"]) == "EFAULT"
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=["fault"]) == "EFAULT"
    # nr beyond the list: the kernel reads into the guard page after our one
    # pointer, so it submits that one and stops (short count, no error).
    fd = agent.call("fs.open", path=str(tmp_path / "f"), flags=["O_RDWR", "O_CREAT"])
    buf = agent.call("mem.alloc", size=512)
    spec = {"opcode": "PWRITE", "fd": fd, "buf": buf, "nbytes": 512}
    assert agent.call("aio.submit", ctx=ctx, iocbs=[spec], nr=3)["submitted"] == 1
    # A valid entry followed by NULL: a partial submit reports the count.
    assert agent.call("aio.submit", ctx=ctx, iocbs=[spec, "null"])["submitted"] == 1
    assert len(agent.call("aio.getevents", ctx=ctx, min_nr=2, nr=8, timeout_ms=5000)) == 2
    agent.call("aio.destroy", ctx=ctx)


def test_key_is_reset_by_submit(agent: Agent, tmp_path: Path) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    fd = agent.call("fs.open", path=str(tmp_path / "f"), flags=["O_RDWR", "O_CREAT"])
    buf = agent.call("mem.alloc", size=512)
    sub = agent.call(
        "aio.submit",
        ctx=ctx,
        iocbs=[
            {"opcode": "PWRITE", "fd": fd, "buf": buf, "nbytes": 512, "key": 0x1234}
        ],
    )
    assert sub["submitted"] == 1
    fields = agent.call("aio.iocb", id=sub["iocbs"][0])
    assert fields["key"] == 0  # the kernel wrote KIOCB_KEY (0) back
    assert fields["opcode"] == 1 and fields["fd"] == fd and fields["reserved2"] == 0
    agent.call("aio.destroy", ctx=ctx)


def test_noop_and_reserved2_rejected(agent: Agent, tmp_path: Path) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    fd = agent.call("fs.open", path=str(tmp_path / "f"), flags=["O_RDWR", "O_CREAT"])
    assert (
        agent.errno_of("aio.submit", ctx=ctx, iocbs=[{"opcode": "NOOP", "fd": fd}])
        == "EINVAL"
    )
    assert (
        agent.errno_of(
            "aio.submit", ctx=ctx, iocbs=[{"opcode": "FSYNC", "fd": fd, "reserved2": 1}]
        )
        == "EINVAL"
    )
    agent.call("aio.destroy", ctx=ctx)


def test_poll_cancel_einprogress_then_event(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    rfd, _wfd = agent.call("fs.pipe")
    sub = agent.call(
        "aio.submit",
        ctx=ctx,
        iocbs=[{"opcode": "POLL", "fd": rfd, "events": ["POLLIN"]}],
    )
    assert sub["submitted"] == 1
    (iid,) = sub["iocbs"]
    assert agent.call("aio.getevents", ctx=ctx, min_nr=0, nr=1, timeout_ms=0) == []
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=iid) == "EINPROGRESS"
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=5000)
    assert ev["iocb"] == iid and ev["res"] == 0
    # Already completed: no longer on the active list.
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=iid) == "EINVAL"
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb="fault") == "EFAULT"
    agent.call("aio.destroy", ctx=ctx)


# ---------------------------------------------------------------- creds


def _cap_bits(hexmask: str) -> int:
    return int(hexmask, 16)


def test_creds_call_drops_caps_in_one_thread_only(agent: Agent, tmp_path: Path) -> None:
    before = agent.call("sys.caps")
    eff = _cap_bits(before["effective"])
    if os.geteuid() != 0 or not (eff >> CAP_SYS_ADMIN & 1 and eff >> CAP_SYS_NICE & 1):
        pytest.skip("needs root with CAP_SYS_ADMIN and CAP_SYS_NICE")
    ctx = agent.call("aio.setup", nr_events=8)
    fd = agent.call("fs.open", path=str(tmp_path / "f"), flags=["O_RDWR", "O_CREAT"])
    buf = agent.call("mem.alloc", size=512)
    spec = {
        "opcode": "PREAD",
        "fd": fd,
        "buf": buf,
        "nbytes": 512,
        "flags": ["IOPRIO"],
        "reqprio": IOPRIO_RT_0,
    }
    drop = ["CAP_SYS_ADMIN", "CAP_SYS_NICE"]

    inner = agent.call("creds.call", drop=drop, op="sys.caps")
    assert inner["tid"] != before["tid"]
    for key in ("effective", "permitted"):
        bits = _cap_bits(inner[key])
        assert not bits >> CAP_SYS_ADMIN & 1 and not bits >> CAP_SYS_NICE & 1
        assert bits | (1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_NICE) == _cap_bits(
            before[key]
        )

    reply = agent.request(
        "creds.call", drop=drop, op="aio.submit", args={"ctx": ctx, "iocbs": [spec]}
    )
    assert reply["ok"] is False and reply["errno"] == "EPERM", reply
    # Main thread untouched: same caps, and the same RT submission succeeds.
    assert agent.call("sys.caps") == before
    assert agent.call("aio.submit", ctx=ctx, iocbs=[spec])["submitted"] == 1
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=5000)
    assert ev["res"] == 0  # empty file: read at EOF
    # Dropping only one of the two is not enough to lose RT priority.
    value = agent.call(
        "creds.call",
        drop=["CAP_SYS_NICE"],
        op="aio.submit",
        args={"ctx": ctx, "iocbs": [spec]},
    )
    assert value["submitted"] == 1
    agent.call("aio.destroy", ctx=ctx)


def test_creds_call_bad_cap_is_error(agent: Agent) -> None:
    reply = agent.request("creds.call", drop=["CAP_NOPE"], op="agent.ping")
    assert reply["ok"] is False and "errno" not in reply
    reply = agent.request("creds.call", drop=[], op="no.op")
    assert reply["ok"] is False and "unknown op" in reply["error"]


# ---------------------------------------------------------------- kmsg


def test_kmsg_write_then_read(agent: Agent) -> None:
    if not os.access("/dev/kmsg", os.W_OK | os.R_OK):
        pytest.skip("/dev/kmsg not readable and writable")
    mark = agent.call("sys.kmsg_seq")
    assert isinstance(mark, int) and mark >= 0
    text = f"kernel-lab agent test {uuid.uuid4()}"
    agent.call("sys.kmsg_write", text=text, level=5)
    records = agent.call("sys.kmsg_read", after_seq=mark)
    assert all(r["seq"] > mark for r in records)
    mine = [r for r in records if r["text"] == text]
    assert len(mine) == 1
    assert mine[0]["level"] == 5 and mine[0]["ts_us"] > 0
    assert agent.call("sys.kmsg_seq") >= mine[0]["seq"]


def test_kmsg_window_marks_settles_and_reads(agent: Agent) -> None:
    if not os.access("/dev/kmsg", os.W_OK | os.R_OK):
        pytest.skip("/dev/kmsg not readable and writable")
    label = f"kernel-lab window {uuid.uuid4()}"
    opened = agent.call("sys.kmsg_mark", text=f"begin {label}")
    assert opened["ts_us"] > 0 and isinstance(opened["taint"], int)
    agent.call("sys.kmsg_write", text=f"inside {label}")
    closed = agent.call("sys.kmsg_close", after_seq=opened["seq"], text=f"end {label}",
                      settle_ms=50, max_wait_ms=500)
    texts = [r["text"] for r in closed["records"]]
    assert f"begin {label}" in texts and f"inside {label}" in texts
    assert f"end {label}" not in texts  # written after the window's records were read
    assert closed["taint"] == opened["taint"] or closed["taint"] > 0


def test_kmsg_a_window_opens_where_the_last_one_closed(agent: Agent) -> None:
    """What the kernel prints between two windows (a test's deferred work) comes back
    with the next window's mark: windows leave no gap."""
    if not os.access("/dev/kmsg", os.W_OK | os.R_OK):
        pytest.skip("/dev/kmsg not readable and writable")
    label = f"kernel-lab gap {uuid.uuid4()}"
    first = agent.call("sys.kmsg_mark", text=f"begin 1 {label}")
    one = agent.call("sys.kmsg_close", after_seq=first["seq"], text=f"end 1 {label}")
    agent.call("sys.kmsg_write", text=f"between {label}", level=4)
    second = agent.call("sys.kmsg_mark", text=f"begin 2 {label}", since_seq=one["seq"])
    assert [r["text"] for r in second["records"] if label in r["text"]] == \
        [f"end 1 {label}", f"between {label}"]
    assert one["seq"] < second["seq"] and isinstance(second["taint"], int)
    assert agent.call("sys.kmsg_mark", text=f"begin 3 {label}")["records"] == []


def test_kmsg_windows_read_incrementally_and_an_older_one_still_whole(agent: Agent) -> None:
    """The agent reads the log from where it stopped (guest/areas/sys/kmsg.py _KmsgTail): windows
    in a row see their own records, and a read from before the latest window (what it no
    longer keeps) still gets every record since, from a whole read."""
    if not os.access("/dev/kmsg", os.W_OK | os.R_OK):
        pytest.skip("/dev/kmsg not readable and writable")
    label = f"kernel-lab tail {uuid.uuid4()}"
    first = agent.call("sys.kmsg_mark", text=f"begin 1 {label}")
    agent.call("sys.kmsg_write", text=f"inside 1 {label}")
    one = agent.call("sys.kmsg_close", after_seq=first["seq"], text=f"end 1 {label}")
    second = agent.call("sys.kmsg_mark", text=f"begin 2 {label}")
    two = agent.call("sys.kmsg_close", after_seq=second["seq"], text=f"end 2 {label}")
    assert [r["text"] for r in one["records"] if label in r["text"]] == \
        [f"begin 1 {label}", f"inside 1 {label}"]
    # The second window opened after "end 1": it holds only its own.
    assert [r["text"] for r in two["records"] if label in r["text"]] == [f"begin 2 {label}"]
    since_first = [r["text"] for r in agent.call("sys.kmsg_read", after_seq=first["seq"])
                   if label in r["text"]]
    assert since_first == [f"begin 1 {label}", f"inside 1 {label}", f"end 1 {label}",
                           f"begin 2 {label}", f"end 2 {label}"]
    assert agent.call("sys.kmsg_seq") > second["seq"]


def test_op_exception_carries_the_guest_traceback(agent: Agent) -> None:
    reply = agent.request("sys.kmsg_write", text=5)  # an int has no .endswith
    assert reply["ok"] is False and "errno" not in reply
    assert "Traceback" in reply["traceback"] and "kmsg_write" in reply["traceback"]
    assert agent.call("agent.ping") == "pong"  # the agent lives on


def test_reset_closes_what_a_test_left_open(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    _r, w = agent.call("fs.pipe")
    agent.call("mem.alloc", size=4096)
    closed_fd = agent.call("fs.eventfd")
    agent.call("fs.close", fd=closed_fd)
    left = agent.call("agent.reset")
    assert list(left) == list(KINDS)  # every kind, in the order the host reads them
    assert left["contexts"] == 1 and left["fds"] == 2 and left["mems"] == 1
    assert agent.errno_of("aio.destroy", ctx=ctx) == "EINVAL"  # destroyed by the reset
    assert agent.errno_of("fs.close", fd=w) == "EBADF"
    again = agent.call("agent.reset")
    assert not any(again.values()), again


def test_probe_features_on_the_host_kernel(agent: Agent) -> None:
    found = agent.call("sys.probe_features")
    # The host kernel has both (the tests' own AIO and io_uring tests need them).
    assert found["AIO"] is True and found["IO_URING"] is True
    assert isinstance(found["BLK_DEV_UBLK"], bool)
    with open("/proc/filesystems") as f:
        if any(ln.split()[-1] == "ext4" for ln in f if ln.strip()):
            assert found["EXT4_FS"] is True
    if os.path.exists("/dev/loop-control"):
        assert found["BLK_DEV_LOOP"] is True
    # Every option a scenario requires is probed: after a probe none is unknown, so
    # a kernel of unknown config never runs a test it cannot run (a FAIL that is
    # the missing feature's, not the kernel's) nor skips one it could.
    wanted = set()
    for path in (Path(__file__).parents[1] / "scenarios").rglob("*.py"):
        for args in re.findall(r"requires_config\(([^)]*)\)", path.read_text()):
            # (the enosys suite's f"!{option}" is AIO or IO_URING, named elsewhere)
            wanted |= {o.strip().strip("\"'!") for o in args.split(",") if "{" not in o}
    assert wanted and wanted <= set(found), wanted - set(found)
