"""`lab merge` on hand-made shard directories: MISS, refusals, duplicates, JUnit per cell."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from records import rec

from lab.errors import UserError
from lab.results import claims, junit, report
from lab.results.evidence import KEY, Evidence, PhaseOutcome, encode
from lab.results.matrixfile import Matrix, read, write
from lab.results.merge import merge
from lab.results.record import Record, read_records
from lab.results.summary import summarize

REPO = Path(__file__).resolve().parents[1]
CELLS = [{"label": "debian:7.2", "spec": "debian:7.2", "variant": None},
         {"label": "debian:6.1", "spec": "debian:6.1", "variant": None}]
ALL = [rec(f"test_{n}", "PASS", cell) for n in range(6) for cell in ("debian:7.2", "debian:6.1")]
EXPECTED = [(r.cell, r.test) for r in ALL]


def junit_xml(records: list[Record]) -> str:
    cases = "".join(
        f'<testcase classname="{junit.address(r.test)[0]}" name="{junit.address(r.test)[1]}" '
        f'time="0.5">' + ('<failure message="boom">trace</failure>' if r.verdict in
                          ("FAIL", "XFAIL") else "") + "</testcase>" for r in records)
    return (f'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{len(records)}">'
            f"{cases}</testsuite></testsuites>")


def shard(tmp_path: Path, index: int, total: int, records: list[Record], *,
          suite: str = "scenarios/aio", name: str | None = None) -> Path:
    d = tmp_path / (name or f"shard{index}")
    d.mkdir()
    (d / "results.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))
    (d / "phases.jsonl").write_text(json.dumps({"phase": "boot", "seconds": 10.0,
                                                "kernel": "debian:7.2"}) + "\n")
    (d / "console-gw0-7.2.13.log").write_text(f"console of shard {index}\n")
    (d / "junit.xml").write_text(junit_xml(records))
    (d / "command.txt").write_text(f"lab run --shard {index}/{total}\n")
    write(d, Matrix(cells=CELLS, suite=[suite], expected=EXPECTED,
                    assigned=[(r.cell, r.test) for r in records], shard=f"{index}/{total}"))
    return d


def test_merge_fills_in_miss_for_a_missing_shard(tmp_path: Path) -> None:
    one = shard(tmp_path, 1, 3, ALL[:4])
    two = shard(tmp_path, 2, 3, ALL[4:8])
    done = merge([two, one], tmp_path / "merged", command="lab merge")
    assert done.missing_shards == ["3/3"] and done.miss == 4 and done.records == 12
    recs = read_records(done.path)
    assert [(r.cell, r.test) for r in recs] == EXPECTED  # in the matrix's order
    miss = [r for r in recs if r.verdict == "MISS"]
    assert {r.test for r in miss} == {r.test for r in ALL[8:]}
    assert all("shard" in r.reason and "3/3" in r.reason for r in miss)
    assert all(r.kernel["spec"] == r.cell for r in miss)  # identity from the cell's records
    m = read(done.path)
    assert m is not None and m.shard is None and len(m.merged_from) == 2
    logs = sorted(p.name for p in done.path.glob("console-*.log"))
    assert logs == ["console-s1of3-gw0-7.2.13.log", "console-s2of3-gw0-7.2.13.log"]
    phases = [json.loads(x) for x in (done.path / "phases.jsonl").read_text().splitlines()]
    assert [p["shard"] for p in phases] == ["1/3", "2/3"]
    suites = ET.parse(done.path / "junit.xml").getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["debian:7.2", "debian:6.1"]
    assert [s.get("tests") for s in suites] == ["6", "6"]
    assert [s.get("errors") for s in suites] == ["2", "2"]  # the MISS cases


def test_a_shard_that_stopped_early_leaves_miss_for_its_own_tests(tmp_path: Path) -> None:
    one = shard(tmp_path, 1, 2, ALL[:6])
    two = shard(tmp_path, 2, 2, ALL[6:9])
    m = read(two)
    assert m is not None
    m.assigned = [(r.cell, r.test) for r in ALL[6:]]
    write(two, m)
    done = merge([one, two], tmp_path / "merged", command="lab merge")
    assert done.missing_shards == [] and done.miss == 3
    assert all("stopped before it" in r.reason for r in read_records(done.path)
               if r.verdict == "MISS")


def test_duplicates_are_skipped_by_content(tmp_path: Path) -> None:
    one = shard(tmp_path, 1, 2, ALL[:6])
    copy = tmp_path / "copy-of-one"
    shutil.copytree(one, copy)
    two = shard(tmp_path, 2, 2, ALL[6:])
    done = merge([one, copy, two], tmp_path / "merged", command="lab merge")
    # Inputs are read in sorted order: the later of two identical ones is the duplicate.
    assert done.duplicates == [one.resolve()] and done.inputs == [copy.resolve(), two.resolve()]
    assert done.miss == 0 and done.records == 12


def test_several_results_for_one_test_never_resolve_by_majority(tmp_path: Path) -> None:
    """FAIL, PASS, PASS for one (cell, test) from three inputs: the FAIL wins, marked
    flaky with its counts, and the merged run fails (issue 23, item 14)."""
    firsts = [rec("test_0", v) for v in ("FAIL", "PASS", "PASS")]
    for n, r in enumerate(firsts):
        r.duration = 1.0 + n  # three runs of the shard, not one artifact thrice
    runs = [shard(tmp_path, 1, 1, [r, *ALL[1:]], name=f"run{n}") for n, r in enumerate(firsts)]
    done = merge(runs, tmp_path / "merged", command="lab merge")
    (r,) = [r for r in read_records(done.path) if r.test == ALL[0].test]
    assert r.verdict == "FAIL"
    assert r.data["merged"] == {"results": 3, "verdicts": ["FAIL", "PASS", "PASS"],
                                "flaky": "FAIL 1/3"}
    assert summarize(done.path)["exit_code"] == 1
    # The report counts each of the three results.
    ctx = report.context(report.load_run(done.path))
    (failure,) = [f for f in ctx["failures"] if f["test"] == ALL[0].test]
    assert failure["flaky"] == "FAIL 1/3"


def _repeated(tmp_path: Path, name: str, index: int, total: int, verdicts: dict[int, str],
              *, repeat: int = 4) -> Path:
    """A shard of a `--repeat` run: test_0 of debian:7.2 repeated, with ``verdicts``
    (repetition → verdict) the repetitions this shard reported."""
    recs = [rec("test_0", v, repeat=n) for n, v in verdicts.items()]
    d = shard(tmp_path, index, total, recs, name=name)
    m = read(d)
    assert m is not None
    test = ALL[0].test
    m.cells, m.options = CELLS[:1], {"repeat": repeat}
    m.expected = [("debian:7.2", test)] * repeat
    m.assigned = [("debian:7.2", test)] * len(verdicts)
    write(d, m)
    return d


def test_repetitions_are_separate_results_and_a_fail_among_them_stays(tmp_path: Path) -> None:
    """PASS, PASS, FAIL, PASS of one test split over two inputs: four records, the FAIL
    among them, exit 1, and the report lists the failure as flaky ("FAIL 1/4")."""
    one = _repeated(tmp_path, "one", 1, 2, {1: "PASS", 2: "PASS"})
    two = _repeated(tmp_path, "two", 2, 2, {3: "FAIL", 4: "PASS"})
    done = merge([one, two], tmp_path / "merged", command="lab merge")
    recs = read_records(done.path)
    assert sorted((r.repeat, r.verdict) for r in recs) == [
        (1, "PASS"), (2, "PASS"), (3, "FAIL"), (4, "PASS")]
    assert all("merged" not in r.data for r in recs)
    assert summarize(done.path)["exit_code"] == 1
    ctx = report.context(report.load_run(done.path))
    (failure,) = ctx["failures"]
    assert failure["verdict"] == "FAIL" and failure["flaky"] == "FAIL 1/4"
    (row,) = ctx["grid"]
    assert row["cells"][0]["verdict"] == "FAIL" and row["cells"][0]["shown"] == "FAIL 1/4"
    assert "FAIL 1/4" in report.render_html(ctx)


def test_a_missing_repetition_is_miss(tmp_path: Path) -> None:
    done = merge([_repeated(tmp_path, "one", 1, 1, {1: "PASS", 3: "PASS"}, repeat=3)],
                 tmp_path / "merged", command="lab merge")
    recs = read_records(done.path)
    assert sorted((r.repeat, r.verdict) for r in recs) == [(1, "PASS"), (2, "MISS"),
                                                           (3, "PASS")]


def test_runs_with_another_repeat_count_are_not_shards_of_one_matrix(tmp_path: Path) -> None:
    one = _repeated(tmp_path, "one", 1, 2, {1: "PASS", 2: "PASS"}, repeat=2)
    two = _repeated(tmp_path, "two", 2, 2, {1: "PASS", 2: "PASS"}, repeat=2)
    m = read(two)
    assert m is not None
    m.options = {"repeat": 2, "guest": {"cpus": 4}}
    write(two, m)
    with pytest.raises(UserError, match="guest options"):
        merge([one, two], tmp_path / "merged", command="lab merge")
    m.options = {"repeat": 3}
    write(two, m)
    with pytest.raises(UserError, match="--repeat: 2 vs 3"):
        merge([one, two], tmp_path / "merged", command="lab merge")


def test_xfail_becomes_skipped_in_junit() -> None:
    r = rec("test_0", "XFAIL", reason="known issue https://x: FAIL: boom")
    out = ET.fromstring(junit.regroup(junit.cases(junit_xml([r])), [r], cell_order=["debian:7.2"]))
    case = out.find("testsuite/testcase")
    assert case is not None and case.find("failure") is None
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("type") == "lab.xfail"
    assert "trace" in (skipped.text or "")


def test_junit_carries_the_notes_not_the_evidence() -> None:
    """A case keeps the readable properties f684c55's junit.xml had (a deviation, an
    observation, a measurement each) and not the Recorder's whole evidence, which made a
    default run's junit.xml 302 KB instead of 66 KB; regrouped again (lab merge), once."""
    r = rec("test_0", "PASS", deviations=["man says EFAULT; the kernel says EINVAL"],
            observed=["fork does not copy the ring"],
            data={"cancel": {"errno": "EINVAL"}, "ring_id": 0})
    classname, name = junit.address(r.test)
    evidence = encode(Evidence(phases=(PhaseOutcome("call", "passed"),), data=r.data))
    xml = (f'<testsuites><testsuite><testcase classname="{classname}" name="{name}" '
           f'time="1"><properties><property name="{KEY}" value={quoteattr(evidence)}/>'
           '</properties></testcase></testsuite></testsuites>')
    once = junit.regroup(junit.cases(xml), [r], cell_order=["debian:7.2"])
    twice = junit.regroup(junit.cases(once), [r], cell_order=["debian:7.2"])
    for text in (once, twice):
        props = [(p.get("name"), p.get("value"))
                 for p in ET.fromstring(text).iter("property")]
        assert props == [
            ("lab_deviation", "man says EFAULT; the kernel says EINVAL"),
            ("lab_observed", "fork does not copy the ring"),
            ("lab_data", "{'cancel': {'errno': 'EINVAL'}}"),
            ("lab_data", "{'ring_id': 0}")]
        assert KEY not in text


def test_junit_without_notes_has_no_properties() -> None:
    r = rec("test_0", "PASS")
    classname, name = junit.address(r.test)
    xml = (f'<testsuites><testsuite><testcase classname="{classname}" name="{name}" '
           f'time="1"><properties><property name="{KEY}" value="{{}}"/>'
           '</properties></testcase></testsuite></testsuites>')
    case = ET.fromstring(junit.regroup(junit.cases(xml), [r], cell_order=["debian:7.2"]))
    assert case.find("testsuite/testcase/properties") is None


def test_junit_names_lose_xdist_group_suffix() -> None:
    r = rec("test_0", "PASS")
    classname, name = junit.address(r.test)
    xml = (f'<testsuites><testsuite><testcase classname="{classname}" name="{name}@c0s1" '
           'time="1"/></testsuite></testsuites>')
    (case,) = junit.cases(xml)
    assert case.get("name") == name


@pytest.mark.parametrize("change, needle", [
    ({"suite": ["scenarios/uring"]}, "suite: [\"scenarios/aio\"] vs [\"scenarios/uring\"]"),
    ({"keyword": "cancel"}, "-k expression"),
    ({"shard": "2/3"}, "shard count: 2 vs 3"),
    ({"shard": "2/2:cell"}, "shard split (I/N by test, I/N:cell by cell): \"test\" vs \"cell\""),
    ({"cells": CELLS[:1]}, "cells (--kernel x --variant): [debian:7.2, debian:6.1] vs "
                           "[debian:7.2]"),
    ({"expected": EXPECTED[:-1]}, "expected tests: 1 only in the first"),
])
def test_shards_of_different_matrices_are_refused(tmp_path: Path, change: dict[str, object],
                                                  needle: str) -> None:
    one = shard(tmp_path, 1, 2, ALL[:6])
    two = shard(tmp_path, 2, 2, ALL[6:])
    m = read(two)
    assert m is not None
    for key, value in change.items():
        setattr(m, key, value)
    write(two, m)
    with pytest.raises(UserError) as exc:
        merge([one, two], tmp_path / "merged", command="lab merge")
    assert needle in str(exc.value), str(exc.value)
    assert not (tmp_path / "merged").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_refusals_on_the_command_line(tmp_path: Path) -> None:
    one = shard(tmp_path, 1, 2, ALL[:6])
    two = shard(tmp_path, 2, 2, ALL[6:], suite="scenarios/uring")

    def lab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                              text=True, cwd=REPO, timeout=60)

    for args, needle in [
        (["merge", str(one), str(two), "--into", str(tmp_path / "m")], "suite"),
        (["merge", str(one), str(tmp_path), "--into", str(tmp_path / "m")],
         "not a lab run directory"),
        (["merge", str(one), "--into", str(one)], "exists and is not empty"),
        (["report", str(one), "--baseline", str(tmp_path / "nope")], "--baseline"),
        (["compare", str(tmp_path), str(one)], "BASE"),
    ]:
        res = lab(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr, lines
    assert not (tmp_path / "m").exists() and not (one / "report.html").exists()


def test_miss_of_a_cell_no_shard_ran_names_its_kernel(tmp_path: Path) -> None:
    built = rec("test_0", "PASS", "debian-src:7.3/debug")
    one = shard(tmp_path, 1, 2, ALL)
    m = read(one)
    assert m is not None
    m.cells = [*CELLS, {"label": built.cell, "spec": "debian-src:7.3", "variant": "debug"}]
    m.expected = [*EXPECTED, (built.cell, built.test)]
    write(one, m)
    done = merge([one], tmp_path / "merged", command="lab merge")
    (miss,) = [r for r in read_records(done.path) if r.verdict == "MISS"]
    assert miss.kernel == {"spec": "debian-src:7.3", "variant": "debug"}
    assert done.missing_shards == ["2/2"]


def _claims(d: Path, ids: list[str], *, format2: bool = False) -> None:
    """A shard's claims.json; ``format2``: as a lab of results format 2 wrote it (a key)."""
    (d / "claims.json").write_text(json.dumps({"claims": [
        {"key" if format2 else "id": k, "text": f"claim {k}", "suite": k.split(".")[0]}
        for k in ids]}))


def test_the_shards_claims_are_united_and_a_broken_list_is_refused(tmp_path: Path) -> None:
    # Each shard lists the claims of the suites its own tests are in: only the union
    # covers the matrix, each claim once.
    one, two = shard(tmp_path, 1, 2, ALL[:6]), shard(tmp_path, 2, 2, ALL[6:])
    _claims(one, ["aio.a", "aio.b"])
    _claims(two, ["aio.b", "uring.c"], format2=True)  # an older lab's shard: the same claim
    done = merge([one, two], tmp_path / "merged", command="lab merge")
    got = json.loads((done.path / "claims.json").read_text())["claims"]
    assert [claims.claim_id(c) for c in got] == ["aio.a", "aio.b", "uring.c"]
    (two / "claims.json").write_text("{not json")
    with pytest.raises(UserError, match=r"claims\.json: unreadable"):
        merge([one, two], tmp_path / "merged2", command="lab merge")
    assert not (tmp_path / "merged2").exists()  # nothing half-written


def test_a_split_by_cell_whose_cell_never_ran_is_miss(tmp_path: Path) -> None:
    # The nightly: one shard per cell; debian:6.1's build failed, so its shard uploaded
    # nothing, and its tests are MISS.
    one = shard(tmp_path, 1, 2, [r for r in ALL if r.cell == "debian:7.2"])
    m = read(one)
    assert m is not None
    m.shard = "1/2:cell"
    write(one, m)
    done = merge([one], tmp_path / "merged", command="lab merge")
    miss = [r for r in read_records(done.path) if r.verdict == "MISS"]
    assert {r.cell for r in miss} == {"debian:6.1"} and len(miss) == 6
    assert done.missing_shards == ["2/2"] and all("2/2" in r.reason for r in miss)


def test_results_of_a_newer_format_are_refused_and_older_ones_read(tmp_path: Path) -> None:
    from lab.results.matrixfile import FORMAT

    one = shard(tmp_path, 1, 2, ALL[:6])
    two = shard(tmp_path, 2, 2, ALL[6:])
    assert json.loads((one / "matrix.json").read_text())["format"] == FORMAT
    # Format 1 (no "format" key): read as this lab's.
    old = json.loads((two / "matrix.json").read_text())
    del old["format"]
    (two / "matrix.json").write_text(json.dumps(old))
    done = merge([one, two], tmp_path / "merged", command="lab merge")
    assert json.loads((done.path / "matrix.json").read_text())["format"] == FORMAT
    newer = tmp_path / "newer"
    shutil.copytree(two, newer)
    (newer / "matrix.json").write_text(json.dumps({**old, "format": FORMAT + 1}))

    def lab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                              text=True, cwd=REPO, timeout=60)

    for args in (["merge", str(one), str(newer), "--into", str(tmp_path / "m")],
                 ["compare", str(done.path), str(newer)],
                 ["compare", str(newer), str(done.path)],
                 ["report", str(newer)]):
        res = lab(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, (args, res.stdout, res.stderr)
        assert f"holds results of format {FORMAT + 1}" in lines[0] and str(newer) in lines[0]
    assert not (tmp_path / "m").exists() and not (newer / "report.html").exists()
    res = lab("compare", str(two), str(done.path))  # format 1 against format 2: migrated
    assert res.returncode == 0, res.stdout + res.stderr


def test_merging_format2_runs_cites_claims_by_id(tmp_path: Path) -> None:
    """A merge writes a format-3 directory: records of format-2 shards, which cite their
    claim's text, come out citing the claim's id, and audit as before."""
    old = tmp_path / "old"
    shutil.copytree(REPO / "tests" / "golden" / "format2-run", old)
    before = read_records(old)
    done = merge([old], tmp_path / "merged", command="lab merge")
    assert json.loads((done.path / "matrix.json").read_text())["format"] == 3
    after = {(r.cell, r.test, r.repeat): r for r in read_records(done.path)}
    catalogue = claims.load_catalogue(done.path) or []
    ids = {claims.claim_id(c) for c in catalogue}
    assert any(" " in r.claim for r in before)
    for r in before:
        merged = after[(r.cell, r.test, r.repeat)]
        assert (merged.claim in ids) if r.claim else not merged.claim, merged.claim
        assert merged.claim == claims.cited_ids(catalogue).get(r.claim, r.claim)
    audit = claims.audit(after.values(), catalogue)
    assert audit == claims.audit(before, claims.load_catalogue(old) or [])
