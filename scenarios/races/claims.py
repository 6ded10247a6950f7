"""The claims the race scenarios check (cited with @pytest.mark.claim)."""

from __future__ import annotations

CLAIMS: dict[str, str] = {
    "destroy_vs_submit": "io_submit racing io_destroy: each io_submit either succeeds before "
                         "the destroy, and its I/O completes before io_destroy returns, or "
                         "fails with EINVAL; nothing else, and no splat",
    "concurrent_destroy": "io_destroy of one context from N threads at once: exactly one "
                          "returns 0, the others EINVAL, on every iteration",
    "setup_vs_destroy": "io_setup and io_destroy racing lookups (io_submit, io_getevents) of "
                        "ids being destroyed: lookups succeed or fail with EINVAL, every "
                        "context is destroyed exactly once, aio-nr returns to its start",
    "destroy_buffers": "io_destroy does not return while the kernel can still write into "
                       "the buffers of the context's reads (the 3.11-3.14 regression fixed "
                       "by e02ba72aabfa, 3.15)",
    "sqe_double_read": "io_uring reads a submitted SQE's opcode and fd so that userspace "
                       "rewriting the live SQE (READV <-> NOP, one fd for another) while it "
                       "is submitted and punted to async work cannot make the kernel keep a "
                       "file reference: once every fd is closed the files are released "
                       "(io_uring review, Jann Horn 2019-02-08, __io_submit_sqe: the opcode "
                       "read twice leaked a file reference)",
}
