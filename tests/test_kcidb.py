"""The KCIDB export, validated by kcidb-io's own schema (v5.3)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from kcidb_io.schema import LATEST
from records import rec, splat

from lab.commands import export_kcidb
from lab.results.claims import claim_id, load_catalogue
from lab.results.kcidb import STATUS, export, kcidb_path
from lab.results.record import read_records
from lab.results.verdict import VERDICTS

GOLDEN_RUN = Path(__file__).resolve().parent / "golden" / "format2-run"
RECORDS = [
    rec("test_ok", "PASS", claim="io_submit: nr = 0 returns 0"),
    rec("test_ok", "SKIP", "debian:6.1", reason="lacks CONFIG_IO_URING"),
    rec("test_boom", "CRASH", reason="CRASH: the kernel died", excerpt="Oops: 0000 [#1]",
        splats=[splat("KASAN: use-after-free in io_submit_one", "KASAN")]),
    rec("test_warn", "FAIL", "debian-src:7.3/debug", param="io_setup",
        splats=[splat("WARNING in io_destroy")]),
    rec("test_known", "XFAIL", data={"known_issue": {"url": "https://example.org/1",
                                                     "test": "*test_known*", "verdict": "FAIL"}}),
    rec("test_lost", "MISS", reason="MISS: no shard reported it"),
]


def test_export_validates_against_the_latest_schema() -> None:
    data = export(RECORDS, run="20261201-000000-debian_7.2")
    assert (LATEST.major, LATEST.minor) == (5, 3)
    LATEST.validate(data)
    assert data["version"] == {"major": 5, "minor": 3}
    assert len(data["tests"]) == 6
    assert len(data["builds"]) == 3  # one per cell
    assert len(data["checkouts"]) == 3
    assert {t["status"] for t in data["tests"]} == {"PASS", "SKIP", "FAIL", "MISS"}
    titles = {i.get("report_subject") for i in data["issues"]}
    assert {"KASAN: use-after-free in io_submit_one", "WARNING in io_destroy"} <= titles
    assert any(i.get("report_url") == "https://example.org/1" for i in data["issues"])
    tests = {t["id"] for t in data["tests"]}
    issues = {i["id"] for i in data["issues"]}
    assert len(data["incidents"]) == 3
    assert all(i["test_id"] in tests and i["issue_id"] in issues for i in data["incidents"])


def test_ids_are_stable_and_the_schema_catches_a_broken_document() -> None:
    a, b = export(RECORDS, run="r"), export(RECORDS, run="r")
    assert a == b
    broken = copy.deepcopy(a)
    broken["tests"][0]["status"] = "CRASH"  # not a KCIDB status: the mapping exists for this
    with pytest.raises(jsonschema.ValidationError):
        LATEST.validate(broken)


def test_every_verdict_has_a_status_and_paths_leave_the_cell_out() -> None:
    assert set(STATUS) == set(VERDICTS)
    assert kcidb_path("scenarios/aio/t.py::test_x[io_setup-debian-src:7.3/debug]",
                      "debian-src:7.3/debug") == "kernel_lab.aio.t.test_x.io_setup"
    assert kcidb_path("scenarios/aio/t.py::test_x[debian:7.2]", "debian:7.2") == \
        "kernel_lab.aio.t.test_x"


def test_a_format2_run_exports_claim_ids(tmp_path: Path) -> None:
    """`lab export --kcidb` of a run whose records cite their claim's text (results format
    2) gives each test the claim's id, as a new run's export does."""
    run = tmp_path / "20261207-000000-debian_7.2"
    shutil.copytree(GOLDEN_RUN, run)
    cited = {r.claim for r in read_records(run) if r.claim}
    assert cited and all(" " in c for c in cited)  # prose, as the old lab wrote
    out = tmp_path / "kcidb.json"
    assert export_kcidb(run, out, origin="kernel_lab") == 0
    data = json.loads(out.read_text())
    LATEST.validate(data)
    ids = {claim_id(c) for c in load_catalogue(run) or []}
    exported = {t["misc"]["claim"] for t in data["tests"] if "claim" in t["misc"]}
    assert len(exported) == len(cited) and exported <= ids
    assert "io_submit.bad_ctx" in exported
