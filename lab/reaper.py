"""Ends a process group when the lab dies, however it dies (even SIGKILL).

Started by ``lab.proc.spawn`` with its stdin on a pipe whose only writer is
the lab process: EOF on stdin means the lab is gone (or has stopped the group
itself), and the group it guards is then killed.  This is how QEMU dies with
the lab although QEMU is virtme-ng's grandchild.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    pgid = int(sys.argv[1])
    while sys.stdin.buffer.read(4096):
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(2)


if __name__ == "__main__":
    main()
