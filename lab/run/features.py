"""The kernel features a test requires (``requires_feature``), probed in its guest
before its fixtures run.

A feature is what the kernel itself answers to a probe (guest/areas/probe/ops.py: an
io_uring opcode by IORING_REGISTER_PROBE, a flag by the errno of a submission that
carries it), never what its version number suggests.  The guard
(lab.run.guard) asks before the test's window opens and before any fixture of the
test does I/O, so a test the kernel cannot run SKIPs having done nothing.  Each
feature is probed once per kernel per worker; a feature the probe could not decide
runs the test (the record says so), as an unknown config option does.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.run.keys import item_cell, lab_data
from lab.vm.agent import Agent

# Per cell label: feature -> the probe's answer ({"has": bool | None, "how": str}).
FEATURES_KEY = pytest.StashKey[dict[str, dict[str, dict[str, Any]]]]()


def required_features(item: pytest.Item) -> list[str]:
    """Every ``requires_feature`` name on the test, its class and its module ("!NAME":
    the test applies only to a kernel without it), in order, once each."""
    found: list[str] = []
    for marker in item.iter_markers("requires_feature"):
        found += [str(a) for a in marker.args if str(a) not in found]
    return found


def mismatch(answers: dict[str, dict[str, Any]], required: list[str], *,
             label: str) -> str | None:
    """Why a kernel with these probe ``answers`` cannot run a test that requires
    ``required``, else None; a feature the probe left undecided is no reason."""
    for name in required:
        want = not name.startswith("!")
        got = answers[name.removeprefix("!")]
        if got["has"] is None or got["has"] == want:
            continue
        if want:
            return f"{label} lacks {name} (probed: {got['how']})"
        return f"not applicable: {label} has {name[1:]} (probed: {got['how']})"
    return None


def check(item: pytest.Item, agent: Agent, *, label: str) -> None:
    """SKIP ``item`` when the guest's kernel lacks a feature it requires (or has one it
    must not); what was probed goes into the test's record."""
    required = required_features(item)
    cell = item_cell(item)
    if not required or cell is None:
        return
    known = item.config.stash.setdefault(FEATURES_KEY, {}).setdefault(cell.label, {})
    names = [n.removeprefix("!") for n in required]
    missing = [n for n in names if n not in known]
    if missing:
        known.update(agent.call("probe.features", names=missing))
    data = lab_data(item)
    data["features"] = {n: known[n]["has"] for n in names}
    undecided = [n for n in names if known[n]["has"] is None]
    if undecided:
        data["feature_unknown"] = {n: known[n]["how"] for n in undecided}
    reason = mismatch(known, required, label=label)
    if reason is not None:
        pytest.skip(reason)
