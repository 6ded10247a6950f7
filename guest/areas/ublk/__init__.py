"""ublk.*: the agent as a ublk server (batch I/O) over io_uring."""
