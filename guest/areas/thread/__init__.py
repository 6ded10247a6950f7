"""thread.*: ops run on agent threads (blocked calls, CPU affinity)."""
