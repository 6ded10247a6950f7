"""creds.*: ops run with other credentials (a thread's, a forked child's capabilities)."""
