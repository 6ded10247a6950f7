"""Objects the ops of several areas share: the table of memory the agent allocated."""

from __future__ import annotations

from guest.memory import Mem
from guest.objects import Table

MEMS: Table[Mem] = Table("mem")
