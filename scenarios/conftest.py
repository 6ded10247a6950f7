"""What every suite shares: the claims a test cites checked at collection, and the claims
catalogue written into the run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from scenarios.catalogue import SCENARIOS, by_id, catalogue

CLAIMS_FILE = "claims.json"  # read back by lab/results/claims.py


def _cited(item: pytest.Item) -> list[str]:
    return [str(m.args[0]) for m in item.iter_markers("claim") if m.args]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A scenario cites a claim by an id some suite's claims.toml lists: a typo, or prose
    where the id belongs, stops the collection instead of leaving a record no claim holds."""
    known = by_id()
    for item in items:
        if SCENARIOS not in Path(str(item.path)).parents:
            continue  # a suite of the user's cites what it likes
        for cid in _cited(item):
            if cid not in known:
                raise pytest.UsageError(
                    f"{item.nodeid} cites claim {cid!r}, which no scenarios/*/claims.toml "
                    "lists: cite a claim's id (@pytest.mark.claim(\"io_submit.bad_ctx\"))")


def _suites(items: list[pytest.Item]) -> set[str]:
    """The scenarios/<suite> directories the run collected tests from."""
    found = set()
    for item in items:
        parts = Path(str(item.path)).parts
        if "scenarios" in parts and parts.index("scenarios") + 1 < len(parts) - 1:
            found.add(parts[parts.index("scenarios") + 1])
    return found


@pytest.fixture(scope="session", autouse=True)
def _claims_catalogue(request: pytest.FixtureRequest, lab_run_dir: Path) -> None:
    """Write the claims of the suites this run collected (and any claim a collected test
    cites) as claims.json, so the audit can list the claims no test checks too."""
    items = request.session.items
    suites = _suites(items)
    cited = {cid for item in items for cid in _cited(item)}
    claims: list[dict[str, Any]] = [c.as_dict() for c in catalogue()
                                    if c.suite in suites or c.id in cited]
    path = lab_run_dir / CLAIMS_FILE
    tmp = path.with_name(f".{CLAIMS_FILE}.{os.getpid()}")  # xdist workers write it too
    tmp.write_text(json.dumps({"claims": claims}, indent=1) + "\n")
    os.replace(tmp, path)
