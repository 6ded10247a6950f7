"""The spec audit (lab/results/claims.py) and the summary's claim counts, on in-memory data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.results import claims as audit_mod
from lab.results.record import Record, append_record
from lab.results.summary import claim_counts, summarize, summary_lines

D72 = {"spec": "debian:7.2", "release": "7.2.13", "variant": "prebuilt"}
D61 = {"spec": "debian:6.1", "release": "6.1.176", "variant": "prebuilt"}
DEBUG = {"spec": "debian-src:7.2", "release": "7.2.13", "variant": "debug"}

CATALOGUE: list[dict[str, Any]] = [
    {"id": "a.ok", "text": "A holds", "suite": "aio", "deviation": "", "not_checkable": "",
     "source": {"spec": "kapi-io_submit", "section": "error EINVAL", "error": "EINVAL"}},
    {"id": "a.dev", "text": "A deviates", "suite": "aio", "not_checkable": "",
     "deviation": "text says X, kernel Y",
     "source": {"spec": "io_destroy.2", "section": "ERRORS", "error": "EFAULT"}},
    {"id": "a.never", "text": "A never run", "suite": "aio", "deviation": "",
     "not_checkable": "", "source": {"spec": "facts", "section": "s"}},
    {"id": "a.nc", "text": "A internal", "suite": "aio", "deviation": "",
     "not_checkable": "locking is internal", "source": {"spec": "kapi-io_cancel",
                                                        "section": "lock"}},
]


def as_format2(claim: dict[str, Any]) -> dict[str, Any]:
    """A catalogue entry as a lab of results format 2 wrote it: a key, the source's text."""
    entry = {k: v for k, v in claim.items() if k != "id"}
    source = dict(claim["source"])
    return {**entry, "key": claim["id"], "source": {"text": source.pop("spec"), **source}}


def _rec(test: str, verdict: str, claim: str, kernel: dict[str, Any],
         deviations: list[str] | None = None, reason: str = "") -> Record:
    return Record(test=test, verdict=verdict, duration=0.1, kernel=kernel, claim=claim,
                  deviations=deviations or [], reason=reason)


RECORDS = [
    _rec("t_ok[7.2]", "PASS", "a.ok", D72),
    _rec("t_ok[6.1]", "SKIP", "a.ok", D61, reason="kernel 6.1: RWF_X appeared in 6.9"),
    _rec("t_ok[debug]", "FAIL", "a.ok", DEBUG, reason="KASAN"),
    _rec("t_dev[7.2]", "PASS", "a.dev", D72, ["text says X, kernel Y"]),
    _rec("t_dev[6.1]", "PASS", "a.dev", D61, ["text says X, kernel Y"]),
    _rec("t_stray", "PASS", "not.in_the_catalogue", D72),
    _rec("t_uncited", "PASS", "", D72),
]
TEXT = {c["id"]: c["text"] for c in CATALOGUE}
# The same run as a lab of format 2 recorded it: each record cites its claim's text.
RECORDS_FORMAT2 = [replace(r, claim=TEXT.get(r.claim, r.claim)) for r in RECORDS]


def _row(report: dict[str, Any], cid: str) -> dict[str, Any]:
    row: dict[str, Any] = next(r for r in report["claims"] if r["id"] == cid)
    return row


def test_audit_rows_carry_source_verdict_per_kernel_and_deviation() -> None:
    report = audit_mod.audit(RECORDS, CATALOGUE)
    assert [r["id"] for r in report["claims"]] == ["a.ok", "a.dev", "a.never", "a.nc"]
    ok = _row(report, "a.ok")
    assert ok["source_ref"] == "kapi-io_submit, error EINVAL, EINVAL"
    assert {k: v["verdict"] for k, v in ok["kernels"].items()} == {
        "debian:7.2": "PASS", "debian:6.1": "SKIP", "debian-src:7.2 [debug]": "FAIL"}
    assert ok["verdict"] == "FAIL"  # the worst kernel decides the claim's rollup
    assert ok["decided_on"] == ["debian-src:7.2 [debug]", "debian:7.2"]  # a SKIP decides nothing
    assert ok["kernels"]["debian:6.1"]["reasons"] == ["kernel 6.1: RWF_X appeared in 6.9"]
    dev = _row(report, "a.dev")
    assert dev["deviations"] == ["text says X, kernel Y"]
    assert dev["expected_deviation"] == "text says X, kernel Y" and dev["verdict"] == "PASS"
    assert _row(report, "a.never")["verdict"] == audit_mod.NOT_RUN
    nc = _row(report, "a.nc")
    assert nc["verdict"] == audit_mod.NOT_CHECKABLE and nc["not_checkable"]
    assert not nc["checkable"] and nc["kernels"] == {}


def test_audit_counts_and_uncatalogued() -> None:
    report = audit_mod.audit(RECORDS, CATALOGUE)
    assert report["counts"] == {"claims": 4, "checkable": 3, "not_checkable": 1, "checked": 2,
                                "not_run": 1, "deviations": 1, "failed": 1}
    assert report["uncatalogued"] == [{"claim": "not.in_the_catalogue", "tests": ["t_stray"]}]
    assert report["kernels"] == ["debian-src:7.2 [debug]", "debian:6.1", "debian:7.2"]


def test_a_claim_only_skipped_or_inconclusive_is_not_checked() -> None:
    recs = [_rec("t", "SKIP", "a.ok", D61), _rec("u", "INCONCLUSIVE", "a.dev", D72)]
    counts = audit_mod.audit(recs, CATALOGUE)["counts"]
    assert counts["checked"] == 0 and counts["not_run"] == 1


def test_differing_lists_claims_whose_kernels_disagree() -> None:
    report = audit_mod.audit(RECORDS, CATALOGUE)
    diff = audit_mod.differing(report)
    assert [d["id"] for d in diff] == ["a.ok"]  # a.dev: PASS with the same deviation on both
    assert diff[0]["kernels"]["debian-src:7.2 [debug]"]["reasons"] == ["KASAN"]


def test_kernel_label() -> None:
    assert audit_mod.kernel_label(D72) == "debian:7.2"
    assert audit_mod.kernel_label({"spec": "debian-src:7.2", "variant": "base"}) == \
        "debian-src:7.2 [base]"
    assert audit_mod.kernel_label({}) == "?"


def test_summary_counts_claims_from_the_run_catalogue(tmp_path: Path) -> None:
    for r in RECORDS:
        append_record(tmp_path, r)
    # Without claims.json: only what the records say.
    assert claim_counts(RECORDS, None) == {"checked": 3, "deviations": 1, "not_checkable": None,
                                           "catalogue": False}
    (tmp_path / audit_mod.CLAIMS_FILE).write_text(json.dumps({"claims": CATALOGUE}))
    assert audit_mod.load_catalogue(tmp_path) == CATALOGUE
    summary = summarize(tmp_path)
    assert summary["claims"]["checked"] == 2 and summary["claims"]["not_checkable"] == 1
    lines = summary_lines(summary)
    assert ("claims: 2 checked, 1 with a deviation from their source, 1 not checkable from "
            "userspace (of 4 listed; 1 not run)") in lines
    assert json.loads((tmp_path / "summary.json").read_text())["claims"]["deviations"] == 1


def test_missing_catalogue_is_none(tmp_path: Path) -> None:
    assert audit_mod.load_catalogue(tmp_path) is None


def _without_source(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "claims": [{k: v for k, v in row.items() if k != "source"}
                                 for row in report["claims"]]}


def test_a_format2_run_audits_as_a_new_one() -> None:
    """A run directory a lab of results format 2 wrote (records citing prose, claims.json
    with keys) gives the same audit: the run's own claims.json maps its texts to ids."""
    old = audit_mod.audit(RECORDS_FORMAT2, [as_format2(c) for c in CATALOGUE])
    assert _without_source(old) == _without_source(audit_mod.audit(RECORDS, CATALOGUE))
    assert _row(old, "a.dev")["source_ref"] == "io_destroy.2, ERRORS, EFAULT"


def test_old_prose_maps_to_the_claim_s_id_through_the_legacy_table() -> None:
    """Records citing a text an older catalogue held (reworded since) join today's claim,
    and so do a format-2 catalogue's entries: by text, else by key."""
    by_text = json.loads(audit_mod.LEGACY_FILE.read_text())["by_text"]
    old_text = "io_submit: an invalid ctx_id fails with EINVAL"  # reworded on 2026-12-01
    assert by_text[old_text] == "io_submit.bad_ctx"
    now = [{**CATALOGUE[0], "id": "io_submit.bad_ctx", "text": "io_submit: reworded"}]
    report = audit_mod.audit([_rec("t", "PASS", old_text, D72)], now)
    assert _row(report, "io_submit.bad_ctx")["decided_on"] == ["debian:7.2"]
    assert not report["uncatalogued"]
    assert audit_mod.claim_id({"key": "submit.bad_ctx", "text": "unknown words"}) == \
        "io_submit.bad_ctx"
    assert audit_mod.claim_id({"key": "x.y", "text": old_text}) == "io_submit.bad_ctx"
    assert audit_mod.claim_id({"key": "x.y", "text": "unknown"}) == "x.y"

