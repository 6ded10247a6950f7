"""uring.*: io_uring rings, submissions, buffers, and the SQE double-read race."""
