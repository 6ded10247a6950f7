"""The claims of the io_submit / io_destroy / io_cancel texts, as data (see scenarios/claim.py).

Each scenario cites one claim by key: ``@pytest.mark.claim(CLAIMS[key])``.  The KAPI
texts are claims to test, not ground truth (their author says they were
machine-generated): where the kernel disagrees, the scenario asserts what the kernel
does and records the disagreement from DEVIATIONS, so every report lists it.  A claim
that no test can check from userspace is listed with the reason and cited by none.
"""

from __future__ import annotations

from scenarios.claim import Claim, Source, claims_table, deviations_table


def _submit(section: str, error: str = "") -> Source:
    return Source("kapi-io_submit", section, error)


def _destroy(section: str, error: str = "") -> Source:
    return Source("kapi-io_destroy", section, error)


def _cancel(section: str, error: str = "") -> Source:
    return Source("kapi-io_cancel", section, error)


def _facts(section: str, error: str = "") -> Source:
    return Source("FACTS", section, error)


_IO_SUBMIT: tuple[Claim, ...] = (
    # --- the context and nr ---------------------------------------------------------
    Claim("submit.bad_ctx", "io_submit: an invalid ctx_id (0, never created, destroyed) fails "
          "with EINVAL", _submit("param ctx_id; error EINVAL", "EINVAL")),
    Claim("submit.nr0", "io_submit: nr == 0 submits nothing and returns 0",
          _submit("param nr; return", "0")),
    Claim("submit.nr0_bad_ctx", "io_submit: nr == 0 with an invalid ctx_id fails with EINVAL: "
          "the context is looked up before the count matters",
          _submit("param nr: 'If 0, the syscall returns immediately with 0'", "0"),
          deviation="KAPI io_submit says nr == 0 returns 0 at once; the kernel looks the "
          "context up first and fails an invalid one with EINVAL"),
    Claim("submit.nr_negative", "io_submit: a negative nr fails with EINVAL",
          _submit("param nr; error EINVAL ('nr is negative')", "EINVAL")),
    Claim("submit.nr_clamped", "io_submit: nr is capped at the context's capacity "
          "(ctx->nr_events, the ring header's nr): with slots to spare, a call with more "
          "iocbs submits exactly that many and never reads the next one",
          _submit("param nr: 'capped to ctx->nr_events'")),
    Claim("submit.ring_full", "io_submit: the context takes exactly as many requests as its "
          "slots allow (nr_events - 1 of the ring, handed out in per-CPU batches; at least "
          "io_setup's nr_events), then fails with EAGAIN",
          _submit("error EAGAIN; constraint 'Ring buffer slot availability'", "EAGAIN")),
    Claim("submit.partial", "io_submit: stops at the first invalid iocb and returns the number "
          "submitted before it; those complete normally", _submit("long-desc; return")),
    Claim("submit.data_echoed", "io_submit: aio_data is copied unchanged into the completion's "
          "io_event.data, and io_event.obj is the iocb's address",
          _submit("iocb fields: aio_data")),
    # --- the iocb's own fields -------------------------------------------------------
    Claim("submit.null_iocb", "io_submit: an unreadable iocb pointer (NULL) fails with EFAULT",
          _submit("error EFAULT (2)", "EFAULT")),
    Claim("submit.iocb_unreadable", "io_submit: an iocb pointer to memory that cannot be read "
          "(PROT_NONE) fails with EFAULT first in the array, and ends the submission there "
          "later in it", _submit("error EFAULT (3)", "EFAULT")),
    Claim("submit.array_fault", "io_submit: an iocbpp array that runs into an unmapped page "
          "submits the iocbs before it and returns their number",
          _submit("error EFAULT (1); long-desc partial submission", "EFAULT")),
    Claim("submit.reserved2", "io_submit: a non-zero aio_reserved2 fails with EINVAL",
          _submit("param iocbpp; error EINVAL", "EINVAL")),
    Claim("submit.bad_opcode", "io_submit: an unknown aio_lio_opcode fails with EINVAL",
          _submit("error EINVAL ('aio_lio_opcode is invalid')", "EINVAL")),
    Claim("submit.noop", "io_submit: IOCB_CMD_NOOP is a supported opcode",
          _submit("long-desc: supported operations, IOCB_CMD_NOOP (6)"),
          deviation="KAPI text lists IOCB_CMD_NOOP as supported; the kernel rejects it with "
          "EINVAL"),
    Claim("submit.bad_fd", "io_submit: an aio_fildes that is not open fails with EBADF",
          _submit("error EBADF (1)", "EBADF")),
    Claim("submit.read_wronly", "io_submit: a read on a file opened write-only fails with EBADF",
          _submit("error EBADF (3)", "EBADF")),
    Claim("submit.write_rdonly", "io_submit: a write on a file opened read-only fails with "
          "EBADF", _submit("error EBADF (3)", "EBADF")),
    Claim("submit.no_read_iter", "io_submit: a read of a file that has no read_iter (a "
          "directory) fails with EINVAL", _submit("error EINVAL ('file lacks required "
                                                  "operation support')", "EINVAL")),
    Claim("submit.resfd_not_eventfd", "io_submit: IOCB_FLAG_RESFD with an aio_resfd that is not "
          "an eventfd fails with EINVAL", _submit("error EINVAL ('aio_resfd is not an "
                                                  "eventfd')", "EINVAL")),
    Claim("submit.resfd_bad_fd", "io_submit: IOCB_FLAG_RESFD with an aio_resfd that is not "
          "open fails with EBADF", _submit("error EBADF (2)", "EBADF")),
    Claim("submit.resfd_signalled", "io_submit: with IOCB_FLAG_RESFD the eventfd is signalled "
          "once per completed request", _submit("long-desc: aio_resfd")),
    Claim("submit.key_zeroed", "io_submit: the kernel writes aio_key (KIOCB_KEY, 0) into each "
          "submitted iocb", _submit("side-effect: iocb->aio_key field")),
    Claim("submit.key_order", "io_submit: aio_key is written after the fd and resfd checks but "
          "before the opcode checks: an iocb rejected for its opcode has its key zeroed, one "
          "rejected for its fd keeps it",
          _submit("state-trans: iocb state (submitted iocbs get KIOCB_KEY)"),
          deviation="KAPI io_submit says aio_key marks a submitted iocb; the kernel also "
          "writes it into iocbs it then rejects (opcode, mode, ioprio, rw_flags checks come "
          "after the write)"),
    # --- EFAULT paths ----------------------------------------------------------------
    Claim("submit.key_readonly", "io_submit: an iocb in a read-only page (aio_key cannot be "
          "written back) fails with EFAULT", _submit("error EFAULT (5)", "EFAULT")),
    Claim("submit.buf_unmapped", "io_submit: an aio_buf inside the user address range but "
          "unmapped is accepted (io_submit returns 1); the request completes with res -EFAULT",
          _submit("error EFAULT (4) 'aio_buf points to invalid memory'", "EFAULT"),
          deviation="KAPI io_submit says an invalid aio_buf fails the syscall with EFAULT; "
          "the kernel accepts an unmapped user address and reports -EFAULT in the event"),
    Claim("submit.buf_kernel", "io_submit: an aio_buf outside the user address range (a "
          "kernel address) fails the syscall with EFAULT",
          _submit("error EFAULT (4)", "EFAULT")),
    # --- offsets and sizes -----------------------------------------------------------
    Claim("submit.offset_negative", "io_submit: a negative aio_offset on a regular file fails "
          "with EINVAL", _facts("AIO details: offsets (rw_verify_area)", "EINVAL")),
    Claim("submit.offset_overflow", "io_submit: aio_offset + aio_nbytes past the largest file "
          "position, on a file without unsigned offsets, fails with EINVAL",
          _submit("error EOVERFLOW", "EOVERFLOW"),
          deviation="KAPI io_submit says EOVERFLOW when aio_offset + aio_nbytes overflows on a "
          "file without unsigned offsets; the kernel returns EINVAL (rw_verify_area)"),
    Claim("submit.nbytes_overflow", "io_submit: an aio_nbytes above SSIZE_MAX fails with EINVAL",
          _submit("error EINVAL ('aio_buf/aio_nbytes overflow')", "EINVAL")),
    Claim("submit.iovcnt_max", "io_submit: PREADV with more than UIO_MAXIOV (1024) iovecs fails "
          "with EINVAL; exactly 1024 are accepted", _submit("notes: maximum iovec count "
                                                            "UIO_MAXIOV", "EINVAL")),
    Claim("submit.preadv", "io_submit: IOCB_CMD_PREADV scatters the file's bytes into every "
          "iovec in order; res is the total read", _submit("long-desc: IOCB_CMD_PREADV")),
    Claim("submit.pwritev", "io_submit: IOCB_CMD_PWRITEV gathers every iovec into the file in "
          "order; res is the total written", _submit("long-desc: IOCB_CMD_PWRITEV")),
    Claim("submit.fsync", "io_submit: IOCB_CMD_FSYNC flushes a block device and completes with "
          "res 0", _submit("long-desc: IOCB_CMD_FSYNC; side-effect fsync work queue")),
    Claim("submit.fdsync", "io_submit: IOCB_CMD_FDSYNC flushes a block device and completes "
          "with res 0", _submit("long-desc: IOCB_CMD_FDSYNC")),
    Claim("submit.fsync_fields", "io_submit: FSYNC with a non-zero aio_buf, aio_offset, "
          "aio_nbytes or aio_rw_flags fails with EINVAL",
          _submit("error EINVAL ('invalid POLL/FSYNC parameters')", "EINVAL")),
    Claim("submit.fsync_unsupported", "io_submit: FSYNC of a file without fsync (a pipe) fails "
          "with EINVAL", _submit("error EINVAL; constraint 'File must support operation'",
                                 "EINVAL")),
    Claim("submit.poll_fields", "io_submit: POLL with a non-zero aio_offset, aio_nbytes or "
          "aio_rw_flags, or events beyond 16 bits, fails with EINVAL",
          _submit("error EINVAL ('invalid POLL/FSYNC parameters')", "EINVAL")),
    # --- rw_flags and ioprio ---------------------------------------------------------
    Claim("submit.rwf_unknown", "io_submit: an aio_rw_flags bit the kernel does not know fails "
          "with EOPNOTSUPP", _submit("error EOPNOTSUPP (1)", "EOPNOTSUPP")),
    Claim("submit.rwf_append_noappend", "io_submit: RWF_APPEND together with RWF_NOAPPEND fails "
          "with EINVAL", _submit("error EINVAL ('conflicting aio_rw_flags')", "EINVAL")),
    Claim("submit.rwf_noappend_append_only", "io_submit: RWF_NOAPPEND on a file with the "
          "append-only attribute fails with EPERM", _submit("error EPERM (2)", "EPERM")),
    Claim("submit.rwf_atomic_read", "io_submit: RWF_ATOMIC on a read fails with EOPNOTSUPP, "
          "on a file that takes atomic writes", _submit("error EOPNOTSUPP (3)", "EOPNOTSUPP")),
    Claim("submit.rwf_nowait_unsupported", "io_submit: RWF_NOWAIT on a file that cannot do "
          "non-blocking I/O (no FMODE_NOWAIT) fails with EOPNOTSUPP",
          _submit("error EOPNOTSUPP (2)", "EOPNOTSUPP")),
    Claim("submit.rwf_dontcache_unsupported", "io_submit: RWF_DONTCACHE on a file system that "
          "does not support it (tmpfs) fails with EOPNOTSUPP, where one that does (ext4) takes "
          "it", _submit("error EOPNOTSUPP (4)", "EOPNOTSUPP")),
    Claim("submit.ioprio_bad_class", "io_submit: IOCB_FLAG_IOPRIO with an aio_reqprio of an "
          "unknown class fails with EINVAL", _submit("error EINVAL ('invalid aio_reqprio "
                                                     "class')", "EINVAL")),
    Claim("submit.rt_prio_eperm", "io_submit: IOCB_FLAG_IOPRIO with the real-time class fails "
          "with EPERM without both CAP_SYS_ADMIN and CAP_SYS_NICE",
          _submit("error EPERM (1)", "EPERM")),
    Claim("submit.rt_prio_sys_admin", "io_submit: CAP_SYS_ADMIN alone (without CAP_SYS_NICE) "
          "allows the real-time I/O priority class", _submit("capability CAP_SYS_ADMIN")),
    Claim("submit.rt_prio_sys_nice", "io_submit: CAP_SYS_NICE alone (without CAP_SYS_ADMIN) "
          "allows the real-time I/O priority class", _submit("capability CAP_SYS_NICE")),
    # --- file references and signals -------------------------------------------------
    Claim("submit.fref_bad_opcode", "io_submit: an iocb rejected for its opcode keeps no "
          "reference to its file: once the fd is closed, the pipe's writer gets EPIPE",
          _submit("side-effect: file reference count; notes: d6b2615f7d31d")),
    Claim("submit.fref_bad_resfd", "io_submit: an iocb rejected for its aio_resfd keeps no "
          "reference to its file: once the fd is closed, the pipe's writer gets EPIPE",
          _submit("side-effect: file reference count; notes: d6b2615f7d31d")),
    Claim("submit.fref_poll_pending", "io_submit: a pending POLL holds a reference to its file: "
          "with its fd closed, the pipe still has a reader and writes succeed",
          _submit("side-effect: file reference count ('released when the operation "
                  "completes')")),
    Claim("submit.signal_eintr", "io_submit: a read that blocks inside io_submit (an empty "
          "blocking pipe) and is interrupted by a signal (no SA_RESTART) completes with res "
          "-EINTR; io_submit itself returns 1", _submit("signal: any", "EINTR")),
    Claim("submit.other_process", "io_submit: another process's context (the parent's, in a "
          "forked child) fails with EINVAL", _submit("param ctx_id ('for the current "
                                                     "process')", "EINVAL")),
    # --- CONFIG_AIO=n ------------------------------------------------------------------
    Claim("submit.enosys", "io_submit: without CONFIG_AIO the syscall fails with ENOSYS",
          _submit("constraint: CONFIG_AIO required", "ENOSYS")),
)

_IO_SUBMIT_NOT_CHECKABLE: tuple[Claim, ...] = (
    Claim("submit.enomem", "io_submit: ENOMEM when credentials for FSYNC or a large iovec "
          "array cannot be allocated", _submit("error ENOMEM", "ENOMEM"),
          not_checkable="needs allocation-failure injection (failslab), which none of the "
          "lab's kernels has; a memory cgroup limit cannot target these allocations"),
    Claim("submit.kiocb_slab", "io_submit: one aio_kiocb per request comes from kiocb_cachep "
          "and is freed once its completion is in the ring",
          _submit("side-effect: KAPI_EFFECT_ALLOC_MEMORY"),
          not_checkable="slab caches are merged and shared; /proc/slabinfo gives no "
          "per-request count userspace could tie to one request"),
    Claim("submit.plug", "io_submit: batches of more than 2 iocbs are plugged "
          "(AIO_PLUG_THRESHOLD) for I/O merging", _submit("lock: blk_plug"),
          not_checkable="plugging changes block-layer scheduling only; merged requests are "
          "not visible to the submitter, and emulated NVMe merges nothing observable"),
    Claim("submit.locks", "io_submit: context lookup under RCU; ctx->completion_lock and "
          "ctx->ctx_lock taken briefly", _submit("lock: RCU, completion_lock, ctx_lock"),
          not_checkable="locking is internal; lockdep on the debug kernel watches every test "
          "but no userspace check can single out these locks"),
    Claim("submit.compat", "io_submit: the compat entry takes 32-bit iocb pointers",
          _submit("notes: COMPAT_SYSCALL variant"),
          not_checkable="the guest has no 32-bit userspace (the host's root) to call it"),
    Claim("submit.fsync_workqueue", "io_submit: FSYNC and FDSYNC run on a workqueue, not in "
          "io_submit", _submit("side-effect: KAPI_EFFECT_SCHEDULE fsync work queue"),
          not_checkable="where the flush runs leaves no userspace trace: a fast flush "
          "completes before io_submit returns either way"),
    Claim("submit.libaio", "libaio's io_submit() returns negative errors instead of setting "
          "errno; there is no glibc wrapper", _submit("notes: glibc and libaio"),
          not_checkable="about userspace libraries, not the kernel"),
)

_IO_DESTROY: tuple[Claim, ...] = (
    Claim("destroy.bad_ctx", "io_destroy: an invalid ctx_id (0, never created, destroyed) "
          "fails with EINVAL", _destroy("error EINVAL (1), (3), (4)", "EINVAL")),
    Claim("destroy.unmapped_ctx", "io_destroy: a ctx_id whose ring address is not mapped fails "
          "with EINVAL", Source("io_destroy(2)", "ERRORS: EFAULT 'the context pointed to is "
                                "invalid'", "EFAULT"),
          deviation="io_destroy(2) says EFAULT for an invalid context pointer; the kernel "
          "returns EINVAL (lookup_ioctx fails on any unreadable ring header)"),
    Claim("destroy.twice", "io_destroy: destroying a context twice fails the second time with "
          "EINVAL", _destroy("error EINVAL (3)", "EINVAL")),
    Claim("destroy.other_process", "io_destroy: a forked child's io_destroy of its parent's "
          "context fails with EINVAL, and the parent's context still works",
          _destroy("error EINVAL (2); constraint 'Context must belong to calling process'",
                   "EINVAL")),
    Claim("destroy.ring_id_corrupt", "io_destroy: a context whose ring header id was "
          "overwritten fails with EINVAL; with the id restored it is destroyed (0)",
          _destroy("error EINVAL (5)", "EINVAL")),
    Claim("destroy.unmaps_ring", "io_destroy: the ring mapping at the context's address is "
          "gone from the process (/proc/self/maps) once it returns",
          _destroy("side-effect: process virtual memory (vm_munmap)")),
    Claim("destroy.aio_nr", "io_setup raises /proc/sys/fs/aio-nr by nr_events; io_destroy "
          "lowers it by the same amount", _destroy("side-effect: aio_nr")),
    Claim("destroy.aio_nr_before_wait", "io_destroy: aio-nr is already lowered while "
          "io_destroy still waits for in-flight I/O", _facts("AIO: io_setup(n) raises aio-nr "
                                                             "... lowers it before waiting")),
    Claim("destroy.cancels_poll", "io_destroy: pending cancellable requests (IOCB_CMD_POLL) are "
          "cancelled and io_destroy returns", _destroy("side-effect: KAPI_EFFECT_SIGNAL_SEND")),
    Claim("destroy.fref_poll_cancelled", "io_destroy: a POLL it cancels releases its file: "
          "with the fd closed and the context destroyed, the pipe's writer gets EPIPE",
          _destroy("side-effect: kioctx and associated resources freed")),
    Claim("destroy.waits_inflight", "io_destroy: blocks until all uncancellable in-flight I/O "
          "of the context has completed (commit e02ba72aabfa, 3.15)",
          _destroy("long-desc; notes: historical")),
    Claim("destroy.uninterruptible", "io_destroy: a signal to the thread waiting for slow "
          "in-flight I/O does not end the wait: it returns 0, and only once every request "
          "has completed", _destroy("long-desc: 'The wait is NOT interruptible by signals'")),
    Claim("destroy.d_state", "io_destroy: the thread waiting for in-flight I/O sleeps "
          "uninterruptibly (state D)", _destroy("notes: TASK_UNINTERRUPTIBLE")),
    Claim("destroy.wakes_getevents", "io_destroy: a thread blocked in io_getevents on the "
          "context is woken and fails with EINVAL",
          _destroy("state-trans: alive -> dead ('cannot be used for any operations')",
                   "EINVAL")),
    Claim("destroy.enosys", "io_destroy: without CONFIG_AIO the syscall fails with ENOSYS",
          _destroy("constraint: CONFIG_AIO required", "ENOSYS")),
)

_IO_DESTROY_NOT_CHECKABLE: tuple[Claim, ...] = (
    Claim("destroy.locks", "io_destroy: mm->ioctx_lock, RCU, ctx->ctx_lock and mmap_lock are "
          "taken as described", _destroy("lock: ..."),
          not_checkable="locking is internal; lockdep on the debug kernel watches it in every "
          "test, no userspace check singles these out"),
    Claim("destroy.rcu_free", "io_destroy: the kioctx, its percpu data and ring pages are freed "
          "through an RCU work item", _destroy("side-effect: KAPI_EFFECT_FREE_MEMORY"),
          not_checkable="when kernel memory is freed is not visible from userspace (a "
          "use-after-free would show as a KASAN report on debug, in any test)"),
)

# io_getevents has no KAPI text of its own; FACTS.md has what it shares with the others.
_IO_GETEVENTS: tuple[Claim, ...] = (
    Claim("getevents.bad_ctx", "io_getevents: an invalid ctx_id fails with EINVAL",
          _facts("AIO: io_submit / io_getevents after destroy -> EINVAL", "EINVAL")),
    Claim("aio.enosys", "without CONFIG_AIO, io_setup, io_getevents and io_pgetevents fail "
          "with ENOSYS too (sys_ni_syscall), and so does the agent's io_setup wrapper",
          _facts("AIO: 'With CONFIG_AIO=n ... the syscalls return ENOSYS'", "ENOSYS")),
)

_IO_CANCEL: tuple[Claim, ...] = (
    Claim("cancel.bad_ctx", "io_cancel: an invalid ctx_id (0, never created, destroyed) fails "
          "with EINVAL", _cancel("error EINVAL, invalid AIO context", "EINVAL")),
    Claim("cancel.poll_pending", "io_cancel: cancelling a pending IOCB_CMD_POLL returns "
          "-EINPROGRESS and the completion is delivered through the ring",
          _cancel("return: -EINPROGRESS", "EINPROGRESS"),
          deviation="io_cancel(2) says 0 on success, with the event copied to result; the "
          "kernel returns EINPROGRESS and delivers the event through the ring"),
    Claim("cancel.completed", "io_cancel: an iocb that already completed cannot be cancelled",
          _cancel("error EINVAL, not found (1)", "EINVAL"),
          deviation="io_cancel(2) says EAGAIN for a request that was not cancelled; the "
          "kernel returns EINVAL (request not found)"),
    Claim("cancel.never_submitted", "io_cancel: an iocb that was never submitted cannot be "
          "cancelled", _cancel("error EINVAL, iocb not submitted", "EINVAL"),
          deviation="io_cancel(2) says EAGAIN for a request that was not cancelled; the "
          "kernel returns EINVAL (aio_key is not KIOCB_KEY)"),
    Claim("cancel.null_iocb", "io_cancel: an unreadable iocb pointer fails with EFAULT",
          _cancel("error EFAULT", "EFAULT")),
    Claim("cancel.direct_io", "io_cancel: an in-flight O_DIRECT read cannot be cancelled "
          "(EINVAL), and it still completes with its data",
          _cancel("constraint 'Operation must support cancellation'", "EINVAL")),
    Claim("cancel.twice", "io_cancel: cancelling the same POLL twice fails the second time "
          "with EINVAL, and the POLL completes once", _cancel("side-effect: active_reqs "
                                                              "list_del_init", "EINVAL")),
    Claim("cancel.other_ctx", "io_cancel: a POLL pending in one context cannot be cancelled "
          "through another live context (EINVAL), and it stays pending",
          _cancel("error EINVAL, not found (2)", "EINVAL")),
    Claim("cancel.result_ignored", "io_cancel: the result argument is not written, and an "
          "unwritable one does not fail the call", _cancel("param result")),
    Claim("cancel.efault_before_ctx", "io_cancel: the iocb's aio_key is read before the "
          "context is looked up: an unreadable iocb with an invalid ctx_id fails with EFAULT",
          _cancel("error EFAULT; error EINVAL, invalid AIO context", "EFAULT")),
    Claim("cancel.other_process", "io_cancel: another process's context (the parent's, in a "
          "forked child) fails with EINVAL", _cancel("error EINVAL, invalid AIO context (5)",
                                                     "EINVAL")),
    Claim("cancel.enosys", "io_cancel: without CONFIG_AIO the syscall fails with ENOSYS",
          _cancel("error ENOSYS", "ENOSYS")),
)

_IO_CANCEL_NOT_CHECKABLE: tuple[Claim, ...] = (
    Claim("cancel.key_before_ctx", "io_cancel: a wrong aio_key is refused before the context is "
          "looked up", _cancel("error EINVAL, iocb not submitted"),
          not_checkable="both checks fail with EINVAL and neither has a side effect, so their "
          "order cannot be observed"),
    Claim("cancel.usb_gadget", "io_cancel: USB gadget I/O is dequeued and completes with "
          "-ECONNRESET", _cancel("long-desc: USB gadget I/O", "ECONNRESET"),
          not_checkable="the guest has no USB gadget controller (no FunctionFS endpoint)"),
    Claim("cancel.driver_errors", "io_cancel: a driver's ki_cancel error is returned",
          _cancel("error (driver-specific)"),
          not_checkable="only USB gadget drivers register a ki_cancel that can fail; the "
          "guest has none"),
    Claim("cancel.atomic", "io_cancel: ki_cancel runs under ctx_lock with interrupts off",
          _cancel("lock: ctx->ctx_lock"),
          not_checkable="locking is internal (a sleeping ki_cancel would show as an "
          "atomic-sleep splat on debug, in any test that cancels)"),
)

CATALOGUE: tuple[Claim, ...] = tuple(
    Claim(c.key, c.text, c.source, c.deviation, c.not_checkable, suite="aio")
    for c in (*_IO_SUBMIT, *_IO_SUBMIT_NOT_CHECKABLE, *_IO_DESTROY, *_IO_DESTROY_NOT_CHECKABLE,
              *_IO_GETEVENTS, *_IO_CANCEL, *_IO_CANCEL_NOT_CHECKABLE)
)
CLAIMS: dict[str, str] = claims_table(CATALOGUE)
DEVIATIONS: dict[str, str] = deviations_table(CATALOGUE)

# IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0): include/uapi/linux/ioprio.h
IOPRIO_RT = 1 << 13
