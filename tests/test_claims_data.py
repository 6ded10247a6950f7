"""The claims catalogue (scenarios/claim.py and each suite's claims.toml) against the suites.

Every checkable claim is cited by at least one scenario, by its id; no scenario cites a
claim that is not listed or one listed as not checkable, and every test but the few that
check the lab itself cites a claim.  Each claim's source is a text in the repository
that is about the claim's API.  The scenarios are collected for real (pytest
--collect-only in a child process, which boots nothing).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lab.results import claims as audit_mod
from lab.results import report
from lab.results.verdict import TESTED
from scenarios import conftest as scenarios_conftest
from scenarios.catalogue import DEVIATIONS, SCENARIOS, by_id, catalogue
from scenarios.claim import SPECS, CatalogueError, Claim, Source, load

REPO = Path(__file__).resolve().parents[1]
# Tests of the lab's own variants (io_uring-off leaves AIO alone, and the reverse): about
# the build, not an API text.
GOLDEN_RUN = REPO / "tests" / "golden" / "format2-run"
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


def test_ids_and_texts_are_unique() -> None:
    claims = catalogue()
    for attr in ("id", "text"):
        dupes = [v for v, n in Counter(getattr(c, attr) for c in claims).items() if n > 1]
        assert not dupes, (attr, dupes)


def test_every_suite_with_claims_has_its_file_and_every_claim_a_source() -> None:
    suites = {p.parent.name for p in SCENARIOS.glob("*/claims.toml")}
    assert suites == {"aio", "uring", "races"}
    for c in catalogue():
        assert c.suite in suites and c.source.section, c.id
        spec = SPECS[c.source.spec]
        assert spec.path.is_file() and spec.covers(c.id), (c.id, spec)
        if not c.checkable:
            assert not c.deviation, f"{c.id}: a claim nobody checks has no observed deviation"
    with pytest.raises(ValueError, match="unknown source text"):
        Source("a blog post", "section")


def test_every_spec_text_is_in_the_repository_and_cited() -> None:
    """The texts live in scenarios/specs/ (shipped with the package), none left uncited."""
    cited = {c.source.spec for c in catalogue()}
    assert cited == set(SPECS)
    for spec in SPECS.values():
        assert spec.path.parent == SCENARIOS / "specs" and spec.path.stat().st_size > 1000


def _plain(text: str) -> str:
    """Text with mail quoting, diff and comment markers, quotes and line breaks gone."""
    text = re.sub(r"(?m)^[\s>+\-*/|]*", " ", text)
    return re.sub(r"[\s'\"`]+", " ", text).lower().strip()


def test_what_a_source_quotes_is_in_its_text() -> None:
    """A section that quotes its text ('...'; an ellipsis joins two pieces) points at words
    the file holds: the anchor a reader searches for."""
    bodies = {name: _plain(spec.path.read_text(errors="replace")) for name, spec in SPECS.items()}
    quoted = [(c.id, c.source.spec, q) for c in catalogue()
              for q in re.findall(r"'([^']+)'", c.source.section)]
    assert len(quoted) >= 40
    missing = [(cid, spec, q) for cid, spec, q in quoted
               if not all(_plain(piece) in bodies[spec] for piece in q.split("..."))]
    assert not missing, missing


def test_the_sqe_double_read_is_credited_to_the_io_uring_review() -> None:
    """It was credited to the io_destroy KAPI text (the race suite's shim gave every race
    claim without a source of its own that text), in claims.json and the report."""
    claim = by_id()["io_uring.sqe_double_read"]
    assert claim.suite == "races"
    assert claim.as_dict()["source"] == {
        "spec": "io_uring-review-2019", "error": "",
        "section": "__io_submit_sqe: the opcode read twice leaks a file reference",
        "file": "scenarios/specs/io_uring-review-2019-jann-horn.txt"}
    assert "__io_submit_sqe" in SPECS[claim.source.spec].path.read_text()


BAD = {
    "the SQE double read credited to an io_destroy text": (
        'id = "io_uring.sqe_double_read"\ntext = "t"\n'
        'source = { spec = "kapi-io_destroy", section = "races" }',
        "kapi-io_destroy is about io_destroy, not io_uring"),
    "no source": ('id = "io_submit.x"\ntext = "t"', "fields are"),
    "an unknown text": ('id = "io_submit.x"\ntext = "t"\nsource = { spec = "blog", '
                        'section = "s" }', "source.spec must be one of"),
    "no section": ('id = "io_submit.x"\ntext = "t"\nsource = { spec = "facts" }',
                   "text and source.section must be given"),
    "prose for an id": ('id = "io_submit: nr 0 returns 0"\ntext = "t"\n'
                        'source = { spec = "facts", section = "s" }', "id must be"),
    "a misspelt field": ('id = "io_submit.x"\ntext = "t"\ndeviaton = "d"\n'
                         'source = { spec = "facts", section = "s" }', "fields are"),
    "a deviation nobody checks": (
        'id = "io_submit.x"\ntext = "t"\ndeviation = "d"\nnot_checkable = "n"\n'
        'source = { spec = "facts", section = "s" }', "no observed deviation"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_claims_file_that_says_too_little_is_refused(tmp_path: Path, name: str) -> None:
    entry, message = BAD[name]
    path = tmp_path / "suite" / "claims.toml"
    path.parent.mkdir()
    path.write_text(f"[[claim]]\n{entry}\n")
    with pytest.raises(CatalogueError, match=message) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_an_id_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "suite" / "claims.toml"
    path.parent.mkdir()
    path.write_text('[[claim]]\nid = "io_submit.x"\ntext = "t"\n'
                    'source = { spec = "facts", section = "s" }\n' * 2)
    with pytest.raises(CatalogueError, match=r"'io_submit\.x' listed twice"):
        load(path)


def _item(path: Path, *cited: str) -> Any:
    marks = [pytest.mark.claim(c).mark for c in cited]
    return SimpleNamespace(path=path, nodeid=f"{path.name}::test_x",
                           iter_markers=lambda name: iter(marks if name == "claim" else []))


def test_a_scenario_citing_an_unknown_claim_stops_the_collection() -> None:
    """scenarios/conftest.py: prose, or a misspelt id, where a listed id belongs."""
    here = SCENARIOS / "aio" / "test_x.py"
    scenarios_conftest.pytest_collection_modifyitems([_item(here, "io_submit.bad_ctx")])
    for bad in ("io_submit.bad_ctxx", "io_submit: an invalid ctx_id fails with EINVAL"):
        message = re.escape(f"test_x.py::test_x cites claim {bad!r}")
        with pytest.raises(pytest.UsageError, match=message):
            scenarios_conftest.pytest_collection_modifyitems([_item(here, bad)])
    # A suite of the user's cites what it likes.
    scenarios_conftest.pytest_collection_modifyitems([_item(REPO / "t" / "test_x.py", "x")])


def test_deviations_are_the_catalogue_s() -> None:
    assert {c.id: c.deviation for c in catalogue() if c.deviation} == DEVIATIONS
    assert all(by_id()[cid].checkable for cid in DEVIATIONS)


def test_the_legacy_table_maps_every_old_text_and_key_to_a_listed_claim() -> None:
    """Runs of results format 2 cite prose: every text and key the repository's catalogues
    ever held maps to a claim listed today, and today's texts to their own claims."""
    data = json.loads(audit_mod.LEGACY_FILE.read_text())
    ids = by_id()
    assert set(data["by_text"].values()) | set(data["by_key"].values()) <= set(ids)
    for c in catalogue():
        if c.text in data["by_text"]:
            assert data["by_text"][c.text] == c.id, c.id


def test_every_checkable_claim_is_cited_and_none_other(
        collected: list[tuple[str, list[str]]]) -> None:
    cited = Counter(cid for _, ids in collected for cid in ids)
    claims = catalogue()
    ids = {c.id: c for c in claims}
    assert not set(cited) - set(ids), "cited but not listed: " + repr(set(cited) - set(ids))
    uncited = [c.id for c in claims if c.checkable and c.id not in cited]
    assert not uncited, f"checkable claims no scenario cites: {uncited}"
    wrongly = [c.id for c in claims if not c.checkable and c.id in cited]
    assert not wrongly, f"claims listed as not checkable but cited: {wrongly}"
    double_read = [n for n, c in collected if c == ["io_uring.sqe_double_read"]]
    assert double_read and all("test_sqe_double_read.py" in n for n in double_read)


def test_each_scenario_cites_exactly_one_claim(collected: list[tuple[str, list[str]]]) -> None:
    for nodeid, ids in collected:
        name = nodeid.split("::", 1)[1].split("[")[0]
        if name in UNCITED_OK:
            assert not ids, nodeid
            continue
        assert len(ids) == 1, (nodeid, ids)


def test_claim_as_dict_is_what_the_audit_reads() -> None:
    c = Claim("io_submit.k", "t", Source("facts", "s", "EINVAL"), deviation="d", suite="aio")
    assert c.as_dict() == {"id": "io_submit.k", "text": "t", "deviation": "d",
                           "not_checkable": "", "suite": "aio",
                           "source": {"spec": "facts", "section": "s", "error": "EINVAL",
                                      "file": "scenarios/specs/facts.md"}}
    assert audit_mod.claim_id(c.as_dict()) == "io_submit.k"


def test_a_run_written_before_ids_audits_and_renders_by_today_s_ids(
        collected: list[tuple[str, list[str]]], tmp_path: Path) -> None:
    """A run directory main's code wrote (results format 2: records citing the claim's
    text, claims.json with keys): each record joins the claim its test cites today, by
    its own claims.json and by today's catalogue (the legacy table), and the report
    shows the ids."""
    assert json.loads((GOLDEN_RUN / "matrix.json").read_text())["format"] == 2
    run = report.load_run(GOLDEN_RUN)
    assert run.claims is not None and all("key" in c and "id" not in c for c in run.claims)
    cites = dict(collected)
    for catalogue_ in (run.claims, [c.as_dict() for c in catalogue()]):
        ids = audit_mod.cited_ids(catalogue_)
        assert all(r.claim not in by_id() for r in run.records)  # prose, not ids
        assert {r.test: [ids[r.claim]] for r in run.records} == \
            {r.test: cites[r.test] for r in run.records}
        audit = audit_mod.audit(run.records, catalogue_)
        assert not audit["uncatalogued"], audit["uncatalogued"]
        decided = {ids[r.claim] for r in run.records if r.verdict in TESTED}
        assert audit["counts"]["checked"] == len(decided) == len(run.records) - 1  # enosys SKIPs
    copy = tmp_path / "run"
    shutil.copytree(GOLDEN_RUN, copy)
    page = report.write(copy, today=date(2026, 12, 7)).read_text()
    assert 'data-id="io_uring.sqe_double_read"' in page and 'data-id="io_submit.bad_ctx"' in page

