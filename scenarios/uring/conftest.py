"""Fixtures for the io_uring suites: agent ops only, expectations from expectations.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from scenarios.uring.expectations import Version, lacks

PAGE = 4096
# Unprivileged steps run as these ids (no passwd entry needed).  Each test family
# gets its own uid: ring teardown is deferred to a workqueue, so a ring closed by
# one test may still be charged to its user for a moment when the next one starts.
UID_LIMIT, UID_RING, UID_DISABLED, UID_GROUP_MEMBER = 4242, 4243, 4244, 4245
GID_URING = 4300


@pytest.fixture
def version(kernel: Any) -> Version:
    return tuple(kernel.version_tuple())


@pytest.fixture
def needs(version: Version) -> Any:
    """``needs("feature")``: SKIP with the reason when the kernel lacks it."""
    def check(feature: str) -> None:
        why = lacks(version, feature)
        if why:
            pytest.skip(f"kernel {'.'.join(map(str, version))}: {why}")
    return check


@pytest.fixture(autouse=True)
def _close_rings(agent: Any) -> Iterator[None]:
    yield
    if agent.alive():
        agent.call("uring.close_all")


@pytest.fixture
def big_ring(agent: Any) -> int:
    """A ring set up for NVMe passthrough: 128-byte SQEs, 32-byte CQEs."""
    return int(agent.call("uring.setup", entries=8, flags=["SQE128", "CQE32"])["ring"])


def creds_run(agent: Any, steps: list[dict[str, Any]], **creds: Any) -> dict[str, Any]:
    """creds.run; its own ``timeout`` (default 60 s) bounds the child, the call waits longer."""
    wait = float(creds.get("timeout", 60.0)) + 60.0
    reply: dict[str, Any] = agent.call("creds.run", steps=steps, call_timeout=wait, **creds)
    return reply


def probe(agent: Any, *, uid: int, memlock_pages: int, want: int, caps: list[str] | None = None,
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
