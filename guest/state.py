"""What the agent holds on a test's behalf, shared by the ops of several areas.

The memory table is used by every area that hands buffers to the kernel.  The
fds and AIO contexts that ops created are tracked so that ``agent.reset``
(guest/areas/agent/ops.py) can close what a test left open, and the next test starts
from a clean agent: no context, ring, mapping or file of the last one alive.
"""

from __future__ import annotations

import os

from guest.memory import Mem
from guest.objects import Table

# How much slower than real hardware the guest runs (TCG: several times): the agent's
# own fixed waits, such as for a device node to appear, are scaled by it.
SLOWDOWN = float(os.environ.get("KERNEL_LAB_SLOWDOWN") or 1.0)

MEMS: Table[Mem] = Table("mem")
FDS: set[int] = set()  # fds fs.* ops opened and no op closed yet
CTXS: set[int] = set()  # AIO contexts aio.setup created and no aio.destroy ended
