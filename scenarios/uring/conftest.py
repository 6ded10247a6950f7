"""Fixtures for the io_uring suites: agent ops only, expectations from expectations.py."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.uring.expectations import UNVERIFIED, Version, expect, observe
from scenarios.versions import Built

PAGE = 4096
# Unprivileged steps run as these ids (no passwd entry needed).  Each test family
# gets its own uid: ring teardown is deferred to a workqueue, so a ring closed by
# one test may still be charged to its user for a moment when the next one starts.
UID_LIMIT, UID_RING, UID_DISABLED, UID_GROUP_MEMBER = 4242, 4243, 4244, 4245
UID_MEASURE = 4246  # measures the ring charge where the version data cannot say it
GID_URING = 4300


def pytest_itemcollected(item: pytest.Item) -> None:
    """The suite tests CONFIG_IO_URING's syscalls: every test of it requires the option, so a
    kernel built without it SKIPs them (before their fixtures), not FAILs.  Said once here
    for the suite, as a module's marker says it (lab.run.keys.required_config reads the
    item's markers: this one comes after the test's own, where a module's would)."""
    item.add_marker(pytest.mark.requires_config("IO_URING"))


@pytest.fixture
def version(kernel: Any) -> Version:
    """The kernel's version and whose build it is: a value measured on Debian's builds
    only is asserted for them alone (scenarios/versions.py)."""
    return Built(tuple(kernel.version_tuple()), kernel.source)


@pytest.fixture(autouse=True)
def _close_rings(agent: Agent) -> Iterator[None]:
    yield
    if agent.alive():
        agent.call("uring.close_all")


@pytest.fixture
def big_ring(agent: Agent) -> int:
    """A ring set up for NVMe passthrough: 128-byte SQEs, 32-byte CQEs."""
    return int(agent.call("uring.setup", entries=8, flags=["SQE128", "CQE32"])["ring"])


def creds_run(agent: Agent, steps: list[dict[str, Any]], **creds: Any) -> dict[str, Any]:
    """creds.run; its own ``timeout`` (default 60 s) bounds the child, the call waits longer."""
    wait = float(creds.get("timeout", 60.0)) + 60.0
    reply: dict[str, Any] = agent.call("creds.run", steps=steps, call_timeout=wait, **creds)
    return reply


def probe(agent: Agent, *, uid: int, memlock_pages: int, want: int, caps: list[str] | None = None,
          settle_s: float = 10.0) -> dict[str, Any]:
    """The memlock probe as ``uid``, repeated until it answers ``want`` or ``settle_s`` ends.

    Repeating is not leniency: a ring closed just before is freed by a workqueue,
    and its pages stay charged to the user until then.  A real leak never settles.
    """
    started = time.monotonic()
    answers: list[int] = []
    while True:
        reply = creds_run(agent, [{"op": "uring.memlock_probe",
                                   "args": {"max_pages": memlock_pages + 4}}],
                          uid=uid, caps=[] if caps is None else caps,
                          memlock=memlock_pages * PAGE)
        step = reply["steps"][0]
        if "value" not in step:
            answers.append(-1)
        else:
            answers.append(int(step["value"]["max_pages"]))
        if answers[-1] == want or time.monotonic() - started > settle_s:
            return {"max_pages": answers[-1], "answers": answers, "creds": reply["creds"],
                    "probe": step.get("value", step),
                    "settle_s": round(time.monotonic() - started, 3)}
        time.sleep(0.2)


def setup_by_memlock(agent: Agent, pages: range, *, uid: int = UID_RING,
                     attempt: int = 0) -> dict[int, str]:
    """io_uring_setup(1) without capabilities under each memlock limit (bytes → "ok" or the
    errno).  Each limit runs as a user of its own (derived from ``uid`` and ``attempt``):
    the ring of one limit is freed by a workqueue after its process exits, and until then
    it is still charged to its user, which would make the next, larger limit fail."""
    assert len(pages) <= 10, "a user per limit: at most 10 limits an attempt"
    outcomes = {}
    for i, memlock in enumerate(p * PAGE for p in pages):
        # 20000-29999: no other family's ids, and inside a 65536-wide user namespace.
        derived = 20000 + (uid % 10) * 1000 + (attempt % 100) * 10 + i
        reply = creds_run(agent, [{"op": "uring.setup", "args": {"entries": 1}}],
                          uid=derived, caps=[], memlock=memlock)
        outcomes[memlock] = reply["steps"][0].get("errno", "ok")
    return outcomes


def charged_pages(outcomes: dict[int, str]) -> int | None:
    """The pages a ring charges, read from ``setup_by_memlock``: ENOMEM below the charge,
    "ok" from it on; None when the outcomes fit no charge (other errnos, a larger limit
    failing where a smaller worked, or no limit tried was enough)."""
    limits = sorted(outcomes)
    for i, memlock in enumerate(limits):
        if all(outcomes[m] == "ENOMEM" for m in limits[:i]) and \
                all(outcomes[m] == "ok" for m in limits[i:]):
            return memlock // PAGE
    return None


_ATTEMPTS = itertools.count(1)  # attempt 0 is setup_by_memlock's default (one-off callers)
MEASURE_PAGES = range(0, 5)  # memlock limits tried where the charge is unverified
SETTLE_S = 10.0


def ring_pages(agent: Agent, version: Version, record: Any, observed: Any, *,
               uid: int = UID_MEASURE) -> int:
    """Pages a 1-entry ring charges on this kernel: the version data's answer, or where
    that is UNVERIFIED, measured (as another uid than the test's) and noted as observed.

    The measurement is repeated for up to SETTLE_S until the outcomes fit a charge: a
    ring closed just before is freed by a workqueue and stays charged until then.
    """
    want = expect(version, "ring_pages_charged")
    if want is not UNVERIFIED:
        return int(want)
    started = time.monotonic()
    while True:
        # A fresh set of users every attempt, and every call: the rings of an earlier
        # call (another test in this guest) may still be charged to theirs.
        outcomes = setup_by_memlock(agent, MEASURE_PAGES, uid=uid, attempt=next(_ATTEMPTS))
        pages = charged_pages(outcomes)
        if pages is not None or time.monotonic() - started > SETTLE_S:
            break
        time.sleep(0.2)
    record("ring_setup_by_memlock", outcomes)
    assert pages is not None, f"io_uring_setup outcomes fit no ring charge: {outcomes}"
    return int(observe(version, "ring_pages_charged", pages, observed))
