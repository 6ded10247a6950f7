"""The claims catalogue (scenarios/claim.py and each suite's claims.py) against the suites.

Every checkable claim is cited by at least one scenario, no scenario cites a claim that
is not listed or one listed as not checkable, and every test but the few that check the
lab itself cites a claim.  The scenarios are collected for real (pytest --collect-only
in a child process, which boots nothing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scenarios.aio import claims as aio_claims
from scenarios.catalogue import catalogue
from scenarios.claim import TEXTS, Claim, Source
from scenarios.uring import claims as uring_claims

REPO = Path(__file__).resolve().parents[1]
# Tests of the lab's own variants (io_uring-off leaves AIO alone, and the reverse): about
# the build, not an API text.
UNCITED_OK = {"test_aio_still_works_without_io_uring", "test_io_uring_still_there_without_aio"}

COLLECT = """
import json, sys
import pytest

class Dump:
    def pytest_collection_modifyitems(self, items):
        json.dump([[i.nodeid, [str(m.args[0]) for m in i.iter_markers("claim") if m.args]]
                   for i in items], open(sys.argv[1], "w"))

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "scenarios",
                      "--lab-run-dir", sys.argv[2]], plugins=[Dump()]))
"""


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, list[str]]]:
    tmp = tmp_path_factory.mktemp("collect")
    out = tmp / "items.json"
    proc = subprocess.run([sys.executable, "-c", COLLECT, str(out), str(tmp / "run")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    items: list[Any] = json.loads(out.read_text())
    return [(str(n), list(c)) for n, c in items]


def test_keys_and_texts_are_unique() -> None:
    claims = catalogue()
    for attr in ("key", "text"):
        dupes = [v for v, n in Counter(getattr(c, attr) for c in claims).items() if n > 1]
        assert not dupes, (attr, dupes)


def test_every_claim_has_a_known_source_and_a_reason_when_not_checkable() -> None:
    for c in catalogue():
        assert c.source.text in TEXTS and c.source.section, c.key
        assert c.suite in {"aio", "uring", "races"}, c.key
        if not c.checkable:
            assert not c.deviation, f"{c.key}: a claim nobody checks has no observed deviation"
    with pytest.raises(ValueError, match="unknown source text"):
        Source("a blog post", "section")


def test_tables_hold_the_checkable_claims_only() -> None:
    for mod in (aio_claims, uring_claims):
        assert set(mod.CLAIMS) == {c.key for c in mod.CATALOGUE if c.checkable}
        assert set(mod.DEVIATIONS) <= set(mod.CLAIMS)
        assert all(mod.DEVIATIONS[k] == c.deviation for c in mod.CATALOGUE
                   if (k := c.key) in mod.DEVIATIONS)


def test_every_checkable_claim_is_cited_and_none_other(
        collected: list[tuple[str, list[str]]]) -> None:
    cited = Counter(text for _, texts in collected for text in texts)
    claims = catalogue()
    texts = {c.text: c for c in claims}
    assert not set(cited) - set(texts), "cited but not listed: " + repr(set(cited) - set(texts))
    uncited = [c.key for c in claims if c.checkable and c.text not in cited]
    assert not uncited, f"checkable claims no scenario cites: {uncited}"
    wrongly = [c.key for c in claims if not c.checkable and c.text in cited]
    assert not wrongly, f"claims listed as not checkable but cited: {wrongly}"


def test_each_scenario_cites_exactly_one_claim(collected: list[tuple[str, list[str]]]) -> None:
    for nodeid, texts in collected:
        name = nodeid.split("::", 1)[1].split("[")[0]
        if name in UNCITED_OK:
            assert not texts, nodeid
            continue
        assert len(texts) == 1, (nodeid, texts)


def test_claim_as_dict_is_what_the_audit_reads() -> None:
    c = Claim("k", "t", Source("FACTS", "s", "EINVAL"), deviation="d", suite="aio")
    assert c.as_dict() == {"key": "k", "text": "t", "deviation": "d", "not_checkable": "",
                           "suite": "aio",
                           "source": {"text": "FACTS", "section": "s", "error": "EINVAL"}}
