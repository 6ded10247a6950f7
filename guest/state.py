"""What the agent holds on a test's behalf, shared by the ops of several areas.

The memory table is used by every area that hands buffers to the kernel, and
``agent.reset`` (guest/areas/agent/ops.py) frees what a test left in it; what one area
alone holds (fs's fds, aio's contexts, uring's rings) is that area's, with its hook.
"""

from __future__ import annotations

import os

from guest.memory import Mem
from guest.objects import Table

# How much slower than real hardware the guest runs (TCG: several times): the agent's
# own fixed waits, such as for a device node to appear, are scaled by it.
SLOWDOWN = float(os.environ.get("KERNEL_LAB_SLOWDOWN") or 1.0)

MEMS: Table[Mem] = Table("mem")
