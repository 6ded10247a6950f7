"""The NVMe driver's own word that the (emulated) device did not answer in time.

Under a loaded host, QEMU's NVMe controller completes commands late; the driver's
timeout handler (drivers/nvme/host/pci.c: ``nvme_timeout``) then polls, aborts,
resets or disables the controller, and says so.  A test whose window shows that
learnt nothing about the kernel under test: its FAIL or HANG is INFRA with the
driver's lines as the evidence.  A CRASH, or a kernel splat other than a hung task
(a task blocked on that I/O), stays what it is: the kernel spoke for itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The driver's messages (7.2's and 6.1's words), each behind "nvme nvmeN: ".
_EVENT = re.compile(
    r"\bnvme nvme\d+: (?:"
    r"I/O (?:tag )?\d+ .*QID \d+ timeout, "  # nvme_timeout: aborting, reset/disable, polled
    r"|Abort status: "  # the abort's completion
    r"|controller is down; will reset"  # nvme_warn_reset
    r"|Disabling device after reset failure"
    r"|resetting controller"  # nvme_reset_ctrl's callers (ioctl, persistent error)
    r")")
# The verdicts such a window turns into INFRA.
_DECIDED_BY_IT = frozenset({"FAIL", "HANG"})
# Splats the stuck I/O itself explains: a task blocked waiting for it.
_ITS_OWN = frozenset({"HUNG_TASK"})
SHOWN = 10  # events kept in a record


def events(lines: Iterable[str]) -> list[str]:
    """The lines that say the driver timed out or reset the controller."""
    return [line for line in lines if _EVENT.search(line)]


def _kernel_spoke(splats: Sequence[Mapping[str, Any]]) -> bool:
    return any(s.get("fatal") or s.get("kind") not in _ITS_OWN for s in splats)


def _why(found: Sequence[str]) -> str:
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return (f"the NVMe driver timed out or reset the controller during the test: "
            f"{found[0].strip()}{more}; nothing was learnt about the kernel")


def judged(verdict: str, reason: str, found: Sequence[str], *,
           splats: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """A test's (verdict, reason) once the NVMe events of its window are known."""
    if verdict not in _DECIDED_BY_IT or not found or _kernel_spoke(splats):
        return verdict, reason
    return "INFRA", f"INFRA: {_why(found)}; the test saw {verdict}: {reason}"


def diagnosed(verdict: str, summary: str, console: Sequence[str], *,
              splats: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """A diagnosis (lab.vm.session) of a hung call, from the console since the test
    began: INFRA when the driver timed out there."""
    found = events(console)
    if verdict != "HANG" or not found or _kernel_spoke(splats):
        return verdict, summary
    return "INFRA", f"{_why(found)} ({summary})"
