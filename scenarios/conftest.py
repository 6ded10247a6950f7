"""Fixtures every suite shares: the claims catalogue written into the run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from scenarios.catalogue import catalogue

CLAIMS_FILE = "claims.json"  # read back by lab/results/claims.py


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
    cited = {str(m.args[0]) for item in items for m in item.iter_markers("claim") if m.args}
    claims: list[dict[str, Any]] = [c.as_dict() for c in catalogue()
                                    if c.suite in suites or c.text in cited]
    path = lab_run_dir / CLAIMS_FILE
    tmp = path.with_name(f".{CLAIMS_FILE}.{os.getpid()}")  # xdist workers write it too
    tmp.write_text(json.dumps({"claims": claims}, indent=1) + "\n")
    os.replace(tmp, path)
