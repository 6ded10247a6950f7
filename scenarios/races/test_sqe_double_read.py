"""The SQE double read: a live SQE's opcode and fd rewritten while the kernel submits it.

The 2019 io_uring review (scenarios/specs/io_uring-review-2019-jann-horn.txt,
__io_submit_sqe) showed the opcode read twice from the shared SQE: inline,
where a READV took a file reference and got -EAGAIN, and again in the async
retry, where userspace could have made it a NOP that freed the request with
the reference held.  The agent (guest/areas/uring/uring_race.c) hands the kernel
READVs of an empty O_NONBLOCK pipe while another thread cycles the live SQE
through READV/NOP and the pipe's fd/a FIFO's on a scratch tmpfs; then it
closes every fd and checks that the files went: the pipe's writer gets EPIPE,
and the tmpfs unmounts without EBUSY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scenarios.races.params import FLOORS, SqeDoubleRead, ident, load

PARAMS = load(SqeDoubleRead)


@pytest.mark.claim("io_uring.sqe_double_read")
@pytest.mark.saturates_cpus("the rewriter and the submitter (or SQPOLL) spin on both vCPUs")
@pytest.mark.requires_config("IO_URING")
@pytest.mark.guest_only("it mounts a tmpfs (the kernel's mount table; root only)")
@pytest.mark.parametrize("mode", ["pipe", "sqpoll"])
@pytest.mark.parametrize("p", [PARAMS], ids=ident)
def test_rewritten_sqe_leaves_no_file_reference(run_loop: Callable[..., dict[str, Any]],
                                                raced: Any, mode: str,
                                                p: SqeDoubleRead) -> None:
    opts = p.pipe_opts if mode == "pipe" else p.sqpoll_opts
    got = run_loop("uring.sqe_double_read", seconds=p.seconds, mode=mode, rounds=p.iterations,
                   lead=p.lead, linger_us=p.linger_us, opts=list(opts))
    # The racing here is the rewriter's stores against the kernel's reads of the
    # SQE: a submission overlapped when the kernel acted on a rewritten version.
    raced(got, FLOORS["sqe_double_read"])
    assert got["rounds"] > 0, "no round ran within the time bound"
    assert got["first_other_errno"] is None
    assert got["unexplained"] == 0, \
        f"a completion no version of the SQE explains: {got['first_unexplained']}"
    # Each submission ran one whole version of the SQE, as written or rewritten.
    assert got["as_written"] + got["saw_rewrite"] + got["eagain"] == got["submitted"]
    assert got["pipe_release"]["epipe"], \
        "the pipe's read end outlived every fd: a file reference was left behind"
    assert got["fifo_release"]["epipe"], \
        "the FIFO's read end outlived every fd: a file reference was left behind"
    assert got["umount"]["ok"], \
        f"the scratch tmpfs stayed busy after every fd was closed: {got['umount']['errno']}"
