"""The claims of the io_submit / io_destroy / io_cancel API specifications under test.

Each scenario cites one claim by key.  The KAPI texts are claims to test, not
ground truth (their author says they were machine-generated): where the
kernel disagrees, the scenario asserts what the kernel does and records the
disagreement from DEVIATIONS, so every report lists it.
"""

from __future__ import annotations

CLAIMS: dict[str, str] = {
    "submit.nr0": "io_submit: nr == 0 submits nothing and returns 0",
    "submit.bad_ctx": "io_submit: an invalid ctx_id fails with EINVAL",
    "getevents.bad_ctx": "io_getevents: an invalid ctx_id fails with EINVAL",
    "cancel.bad_ctx": "io_cancel: an invalid ctx_id fails with EINVAL",
    "destroy.bad_ctx": "io_destroy: an invalid ctx_id fails with EINVAL",
    "submit.partial": "io_submit: stops at the first invalid iocb and returns the number "
                      "submitted before it; those complete normally",
    "submit.null_iocb": "io_submit: an unreadable iocb pointer (NULL) fails with EFAULT",
    "submit.reserved2": "io_submit: a non-zero aio_reserved2 fails with EINVAL",
    "submit.bad_opcode": "io_submit: an unknown aio_lio_opcode fails with EINVAL",
    "submit.noop": "io_submit: IOCB_CMD_NOOP is a supported opcode",
    "submit.bad_fd": "io_submit: an aio_fildes that is not open fails with EBADF",
    "submit.read_wronly": "io_submit: a read on a file opened write-only fails with EBADF",
    "submit.resfd_not_eventfd": "io_submit: IOCB_FLAG_RESFD with an aio_resfd that is not "
                                "an eventfd fails with EINVAL",
    "submit.resfd_signalled": "io_submit: with IOCB_FLAG_RESFD the eventfd is signalled "
                              "once per completed request",
    "submit.rt_prio_eperm": "io_submit: IOCB_FLAG_IOPRIO with the real-time class needs "
                            "CAP_SYS_ADMIN or CAP_SYS_NICE, else EPERM",
    "submit.ring_full": "io_submit: when the completion ring has no room left it fails "
                        "with EAGAIN (at least nr_events requests fit)",
    "submit.key_zeroed": "io_submit: the kernel writes aio_key (KIOCB_KEY, 0) into each "
                         "submitted iocb",
    "cancel.poll_pending": "io_cancel: cancelling a pending IOCB_CMD_POLL returns "
                           "-EINPROGRESS and the completion is delivered through the ring",
    "cancel.completed": "io_cancel: an iocb that already completed cannot be cancelled",
    "cancel.never_submitted": "io_cancel: an iocb that was never submitted cannot be "
                              "cancelled",
    "cancel.null_iocb": "io_cancel: an unreadable iocb pointer fails with EFAULT",
    "destroy.twice": "io_destroy: destroying a context twice fails the second time with "
                     "EINVAL",
    "destroy.aio_nr": "io_setup raises /proc/sys/fs/aio-nr by nr_events; io_destroy lowers "
                      "it by the same amount",
    "destroy.cancels_poll": "io_destroy: pending cancellable requests (IOCB_CMD_POLL) are "
                            "cancelled and io_destroy returns",
    "destroy.waits_inflight": "io_destroy: blocks until all uncancellable in-flight I/O of "
                              "the context has completed (commit e02ba72aabfa, 3.15)",
}

DEVIATIONS: dict[str, str] = {
    "submit.noop": "KAPI text lists IOCB_CMD_NOOP as supported; the kernel rejects it "
                   "with EINVAL",
    "cancel.completed": "io_cancel(2) says EAGAIN for a request that was not cancelled; "
                        "the kernel returns EINVAL (request not found)",
    "cancel.never_submitted": "io_cancel(2) says EAGAIN for a request that was not "
                              "cancelled; the kernel returns EINVAL (aio_key is not "
                              "KIOCB_KEY)",
}

# IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0): include/uapi/linux/ioprio.h
IOPRIO_RT = 1 << 13
