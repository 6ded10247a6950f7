"""The kernel-log watch around a test: mark the log, read it back, look for splats and new taint.

``begin`` notes where the kernel log and the console stand and writes a
marker into the log; ``end`` writes the end marker, reads every record since
the mark and the taint mask, and returns what it found.  The plugin decides
what that means for the test's verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.results import splat
from lab.vm.agent import Agent, AgentError
from lab.vm.session import Machine


@dataclass(frozen=True)
class Mark:
    """Where the logs stood when a test began."""

    console_offset: int
    seq: int
    taint: int


@dataclass
class Findings:
    """Splats and taint change seen in the kernel log between two marks."""

    splats: list[splat.Splat] = field(default_factory=list)
    taint_before: str = ""
    taint_after: str = ""
    taint_changed: bool = False

    def problem(self) -> str:
        """Why the test fails because of the kernel log, or "" when it does not."""
        if self.splats:
            return f"kernel splat during the test: {self.splats[0].title}\n" + "\n".join(
                f"{s.title}\n{s.excerpt}" for s in self.splats)
        if self.taint_changed:
            return (f"the kernel's taint changed during the test: "
                    f"{self.taint_before or '-'} -> {self.taint_after}")
        return ""

    def splat_dicts(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.splats]


def _taint(agent: Agent) -> int:
    return int(agent.call("sys.read_text", path="/proc/sys/kernel/tainted"))


def begin(machine: Machine, agent: Agent, label: str) -> Mark:
    """Mark the kernel log before a test (and note the console's size)."""
    offset = machine.console_offset()
    seq = int(agent.call("sys.kmsg_seq"))
    taint = _taint(agent)
    agent.call("sys.kmsg_write", text=f"kernel-lab: begin {label}")
    return Mark(console_offset=offset, seq=seq, taint=taint)


def end(agent: Agent, mark: Mark, label: str) -> Findings | None:
    """What the kernel logged since ``mark``; None when the log could not be read."""
    if not agent.alive():
        return None
    try:
        agent.call("sys.kmsg_write", text=f"kernel-lab: end {label}")
        records = agent.call("sys.kmsg_read", after_seq=mark.seq)
        taint_after = _taint(agent)
    except (AgentError, OSError):
        return None
    found = splat.parse("\n".join(r["text"] for r in records))
    return Findings(splats=found, taint_before=splat.taint_letters(mark.taint),
                    taint_after=splat.taint_letters(taint_after),
                    taint_changed=bool(taint_after & ~mark.taint))
