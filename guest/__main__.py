"""Entry point: ``python3 -m guest`` speaks JSON lines on stdin/stdout."""

from __future__ import annotations

import time

# The interpreter is up; what follows is the agent's own start (its imports, the
# extension).  CLOCK_MONOTONIC, as the kernel's printk timestamps (the boot timeline).
STARTED = time.monotonic()

import sys  # noqa: E402

from guest.protocol import main  # noqa: E402

sys.exit(main(started=STARTED))
