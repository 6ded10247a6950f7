"""What the lab knows about one test, as one typed value: the evidence its verdict is
folded from (lab.results.verdict.fold) and its record is made of.

The plugin (lab.run.records) fills an ``Evidence`` phase by phase on the worker that ran
the test: pytest's outcome of each phase with the lab's hint (a diagnosis: CRASH, HANG,
INFRA), the kernel's splats, the notes the test made (deviations, observations,
"inconclusive"), its measurements, and who it ran on.  Under xdist the value crosses to
the controller on each report, whole, under one user property (``KEY``): ``encode`` and
``decode`` are the one pair that writes and reads it.  Plain data: no pytest here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# The user property a report carries its test's evidence under (one, whole).
KEY = "lab_evidence"


@dataclass(frozen=True)
class PhaseOutcome:
    """One phase of one test, as plain data."""

    when: str  # "setup", "call", "teardown"
    outcome: str  # "passed", "failed", "skipped"
    message: str = ""  # the failure's first line, or the skip reason
    duration: float = 0.0
    # What the phase's failure means where pytest alone would say "failed" (a verdict:
    # CRASH, HANG, FAIL, INFRA), or "" for pytest's own reading.
    hint: str = ""


@dataclass(frozen=True)
class Evidence:
    """Everything one test left that its verdict and record are made of."""

    phases: tuple[PhaseOutcome, ...] = ()
    # The diagnosis' words for the failure (a dead or hung guest, a boot crash): they
    # replace the failed phase's own message.
    reason: str = ""
    # Why the test, though every check held, could not decide (the last one said): it is
    # then INCONCLUSIVE, never PASS.
    inconclusive: str = ""
    splats: tuple[Mapping[str, Any], ...] = ()  # lab.results.splat.Splat.to_dict
    excerpt: str = ""  # console lines behind a CRASH, HANG or INFRA
    # The test's measurements (the ``record`` fixture), then the lab's own (nvme_events,
    # kmsg_lost, taint, left_open, previous_test, ...): the record's ``data``.
    data: Mapping[str, Any] = field(default_factory=dict)
    deviations: tuple[str, ...] = ()  # where the kernel and the spec text differ
    observed: tuple[str, ...] = ()  # values measured that no source confirms
    cell: str = ""
    kernel: Mapping[str, Any] = field(default_factory=dict)  # Kernel.identity()
    accel: Mapping[str, Any] = field(default_factory=dict)  # lab.vm.accel.Accel.to_dict
    claim: str = ""
    # The test's window closed cleanly: what the kernel printed after it comes with a
    # later report of its worker (lab.run.aftermath), and the record waits for it.
    aftermath_pending: bool = False

    @property
    def nvme_events(self) -> Sequence[str]:
        """The NVMe driver's timeouts and resets in the test's window (lab.results.nvme)."""
        return tuple(self.data.get("nvme_events") or ())


def encode(evidence: Evidence) -> str:
    """``evidence`` as the text a report carries (JSON: what a record can hold)."""
    return json.dumps(asdict(evidence))


def decode(text: str) -> Evidence:
    """The ``Evidence`` that ``encode`` wrote."""
    raw = json.loads(text)
    return Evidence(**{
        **raw,
        "phases": tuple(PhaseOutcome(**p) for p in raw["phases"]),
        "splats": tuple(raw["splats"]),
        "deviations": tuple(raw["deviations"]),
        "observed": tuple(raw["observed"]),
    })
