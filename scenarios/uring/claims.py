"""The claims of the io_uring texts, as data (see scenarios/claim.py).

The 2019 review of the original io_uring patch, the multishot uring_cmd patch (V4) with
its review, and what ../shared/FACTS.md records of io_uring.  Where today's kernel does
something else than the 2019 patch did, the test asserts today's behaviour and records
the difference (DEVIATIONS).  The SQE double read of the review is a race: its claim
is the race suites' (scenarios/races).
"""

from __future__ import annotations

from scenarios.claim import Claim, Source, claims_table, deviations_table


def _review(section: str, error: str = "") -> Source:
    return Source("uring-review-2019", section, error)


def _mshot(section: str, error: str = "") -> Source:
    return Source("uring_cmd-multishot", section, error)


def _facts(section: str, error: str = "") -> Source:
    return Source("FACTS", section, error)


_REVIEW: tuple[Claim, ...] = (
    Claim("uring.getevents_min_complete", "io_uring_enter with IORING_ENTER_GETEVENTS waits "
          "until min_complete CQEs are ready: with fewer it does not return before its timeout",
          _review("patch description: 'the kernel will wait for min_complete events'")),
    Claim("uring.getevents_zero", "io_uring_enter with IORING_ENTER_GETEVENTS and min_complete "
          "0 returns at once, without waiting", _review("patch description: 'valid to set "
                                                        "IORING_ENTER_GETEVENTS and "
                                                        "min_complete == 0'")),
    Claim("uring.inline_cached", "a read of data already in the page cache is done inline: its "
          "CQE is ready when the submitting io_uring_enter returns",
          _review("patch description: 'Any data that can be accessed directly in the page "
                  "cache is done inline'")),
    Claim("uring.sqe_flags_unknown", "an SQE with a flags bit the kernel does not define is "
          "refused: its CQE has res -EINVAL", _review("io_submit_sqe: 'enforce forwards "
                                                      "compatibility on users'", "EINVAL"),
          deviation="the 2019 patch refused any non-zero sqe->flags; current kernels accept "
          "the defined IOSQE_* bits and refuse only unknown ones"),
    Claim("uring.sq_index_dropped", "an SQ ring entry that indexes past the SQE array is "
          "dropped: no CQE, and the ring's sq_dropped counts it",
          _review("__io_submit_sqe: 's->index >= ctx->sq_entries' returns -EINVAL", "EINVAL"),
          deviation="the 2019 patch failed an out-of-range SQ index with -EINVAL; current "
          "kernels drop the entry silently and count it in sq_dropped"),
    Claim("uring.cq_overflow", "completions that do not fit in the CQ ring are not lost: "
          "IORING_SQ_CQ_OVERFLOW is set and they are delivered, in order, once there is room",
          _review("io_cqring_fill_event: 'Increment the overflow count in the ring'"),
          deviation="the 2019 patch dropped an overflowing CQE and counted it in "
          "cq_ring->overflow; since IORING_FEAT_NODROP (5.5) the kernel keeps it, sets "
          "IORING_SQ_CQ_OVERFLOW and leaves the overflow count at 0"),
    Claim("uring.memlock_limit", "without CAP_IPC_LOCK, registered buffers are charged to the "
          "user against RLIMIT_MEMLOCK, to the page, and ENOMEM past it",
          _review("io_account_mem", "ENOMEM")),
    Claim("uring.memlock_latched", "CAP_IPC_LOCK is taken into account when the ring is "
          "created: a ring made with it stays exempt after the capability is dropped, one "
          "made after the drop is limited", _review("io_unaccount_mem: 'what happens if root "
                                                    "creates a uring, drops CAP_IPC_LOCK'")),
    Claim("uring.memlock_no_wraparound", "a ring made with CAP_IPC_LOCK, used and closed after "
          "the drop, leaves the user's locked memory where it was: no wraparound, no drift",
          _review("io_unaccount_mem: 'causing a wraparound'")),
)

_REVIEW_NOT_CHECKABLE: tuple[Claim, ...] = (
    Claim("uring.read_once", "every read of memory shared with userspace is a READ_ONCE and "
          "every store a WRITE_ONCE", _review("io_commit_cqring / io_cqring_fill_event"),
          not_checkable="what the compiler emitted is not observable from userspace; the "
          "lab's kernels have no KCSAN to catch a plain access"),
    Claim("uring.sq_head_barrier", "the SQ head is published only after the SQEs were read "
          "(a barrier before the head update)", _review("io_commit_sqring"),
          not_checkable="x86 (TSO), and TCG emulating it, never reorders these accesses: a "
          "missing barrier cannot show"),
)

_FACTS: tuple[Claim, ...] = (
    Claim("uring.ring_charge", "the ring's own memory is charged to RLIMIT_MEMLOCK as the "
          "version data says (not in 5.12-6.13; from 6.14, measured up to 7.2.9; measured not "
          "from 7.2.11 to 7.3.4, on Debian's builds; observed, not judged, where no kernel "
          "could be measured and on builds other than the ones measured)",
          _facts("io_uring accounting: ring memory", "ENOMEM")),
    Claim("uring.disabled_sysctl", "kernel.io_uring_disabled: 0 lets everyone set up a ring, 1 "
          "only CAP_SYS_ADMIN or io_uring_group, 2 no one (EPERM)",
          _facts("kernel.io_uring_disabled", "EPERM")),
    Claim("uring.disabled_only_setup", "kernel.io_uring_disabled gates io_uring_setup only: a "
          "ring made before keeps running requests", _facts("kernel.io_uring_disabled: 'Only "
                                                            "setup is gated'")),
    Claim("uring.enosys", "without CONFIG_IO_URING, io_uring_setup, io_uring_enter and "
          "io_uring_register fail with ENOSYS (sys_ni_syscall)",
          _facts("AIO: 'With CONFIG_AIO=n (or CONFIG_IO_URING=n) the syscalls return ENOSYS'",
                 "ENOSYS")),
    Claim("nvme.needs_big_entries", "NVMe passthrough needs a ring with SQE128 and CQE32, else "
          "the command fails with EOPNOTSUPP", _facts("uring_cmd: NVMe passthrough",
                                                      "EOPNOTSUPP")),
    Claim("nvme.identify", "an NVMe admin Identify Controller through uring_cmd returns the "
          "controller's data (QEMU's model, serial, vendor)", _facts("uring_cmd: identify")),
    Claim("nvme.passthrough_io", "data written through NVMe passthrough is read back through "
          "the block device, and the other way round", _facts("uring_cmd: I/O to /dev/ngXnY")),
    Claim("nvme.fio_uring_cmd", "fio's io_uring_cmd engine moves verified data through NVMe "
          "passthrough", _facts("Measured: fio with io_uring_cmd on /dev/ng0n1")),
    Claim("aio.fio_libaio", "fio's libaio engine moves verified O_DIRECT data through io_submit",
          Source("kapi-io_submit", "long-desc")),
)

_MULTISHOT: tuple[Claim, ...] = (
    Claim("mshot.fixed", "IORING_URING_CMD_MULTISHOT with IORING_URING_CMD_FIXED is refused "
          "(EINVAL), even with IOSQE_BUFFER_SELECT set", _mshot("io_uring_cmd_prep; UAPI: "
                                                                "'Not compatible with "
                                                                "IORING_URING_CMD_FIXED'",
                                                                "EINVAL")),
    Claim("mshot.needs_bufsel", "IORING_URING_CMD_MULTISHOT without IOSQE_BUFFER_SELECT is "
          "refused (EINVAL)", _mshot("io_uring_cmd_prep; UAPI: 'must be used with buffer "
                                     "select'", "EINVAL")),
    Claim("mshot.bufsel_needs_mshot", "IOSQE_BUFFER_SELECT on a uring_cmd without "
          "IORING_URING_CMD_MULTISHOT is refused (EINVAL)", _mshot("io_uring_cmd_prep",
                                                                   "EINVAL")),
    Claim("uring_cmd.unknown_flag", "a uring_cmd_flags bit outside IORING_URING_CMD_MASK is "
          "refused (EINVAL)", _mshot("io_uring_cmd_prep: '~IORING_URING_CMD_MASK'", "EINVAL")),
    Claim("uring_cmd.top_bits", "the top 8 bits of uring_cmd_flags are not for userspace: a "
          "uring_cmd with any of them set is refused (EINVAL)",
          _mshot("UAPI: 'sqe->uring_cmd_flags top 8bits aren't available for userspace'",
                 "EINVAL")),
    Claim("uring_cmd.fixed_ok", "IORING_URING_CMD_FIXED alone, with sqe->buf_index naming a "
          "registered buffer, is accepted and does the I/O", _mshot("UAPI: 'use registered "
                                                                    "buffer; pass this flag "
                                                                    "along with setting "
                                                                    "sqe->buf_index'")),
    Claim("mshot.nvme_oneshot", "MULTISHOT with BUFFER_SELECT to a driver that ignores "
          "multishot (NVMe) completes once: one CQE, no F_MORE, no buffer taken",
          _facts("uring_cmd and multishot: a driver that completes synchronously")),
    Claim("mshot.before_6_18", "before 6.18 (no multishot uring_cmd) the MULTISHOT bit is an "
          "unknown uring_cmd flag (EINVAL), and IOSQE_BUFFER_SELECT on a uring_cmd fails "
          "before it (EOPNOTSUPP)", _facts("uring_cmd and multishot: 'Before 6.18 the bit fails "
                                           "the flag mask'", "EOPNOTSUPP")),
    Claim("mshot.posts_more", "a multishot uring_cmd posts one CQE with IORING_CQE_F_MORE per "
          "event while it stays armed, and its last CQE without it",
          _mshot("io_uring_mshot_cmd_post_cqe: 'cflags | IORING_CQE_F_MORE'")),
    Claim("mshot.enobufs", "a multishot fetch that finds its provided-buffer group empty ends: "
          "its last CQE has res -ENOBUFS and no F_MORE", _mshot("io_uring_cmd_select_buffer: "
                                                                "'if (!ubuf) return -ENOBUFS'",
                                                                "ENOBUFS")),
    Claim("mshot.unregister_bufring", "a buffer ring unregistered while a multishot fetch is "
          "armed is not used afterwards: the next I/O ends the fetch with -ENOBUFS, and the "
          "kernel reports nothing (KASAN on debug)",
          _mshot("review: 'the list may go away as soon as ->uring_lock is dropped ... buffer "
                 "list UAF'", "ENOBUFS")),
)

_MULTISHOT_NOT_CHECKABLE: tuple[Claim, ...] = (
    Claim("mshot.select_needs_mshot", "io_uring_cmd_select_buffer() fails with EINVAL for a "
          "command without MULTISHOT", _mshot("io_uring_cmd_select_buffer", "EINVAL"),
          not_checkable="a kernel-internal API that only drivers call: userspace cannot reach "
          "it without MULTISHOT, prep refuses BUFFER_SELECT first"),
    Claim("mshot.warn_no_bufsel", "io_uring_cmd_select_buffer() warns when the request has no "
          "buffer selection", _mshot("WARN_ON_ONCE(!io_do_buffer_select(req))"),
          not_checkable="unreachable from userspace: prep pairs MULTISHOT with "
          "BUFFER_SELECT, so the condition cannot arise"),
    Claim("mshot.no_issue_recycle", "the issue path does not recycle a selected buffer; the "
          "caller that selected it does", _mshot("review: 'Gets rid of the recycle in the issue "
                                                 "path'"),
          not_checkable="where a buffer is recycled inside the kernel leaves no trace a "
          "userspace check could tell apart"),
)

CATALOGUE: tuple[Claim, ...] = tuple(
    Claim(c.key, c.text, c.source, c.deviation, c.not_checkable, suite="uring")
    for c in (*_REVIEW, *_REVIEW_NOT_CHECKABLE, *_FACTS, *_MULTISHOT, *_MULTISHOT_NOT_CHECKABLE)
)
CLAIMS: dict[str, str] = claims_table(CATALOGUE)
DEVIATIONS: dict[str, str] = deviations_table(CATALOGUE)
