"""The report: its context on hand-made records, the HTML (escaped, self-contained) and
the text of `lab compare`, and the page as headless Chromium builds it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from browser import Node, dump_dom, parse
from records import rec, splat

from lab.results import claims, known, report
from lab.results.matrixfile import Matrix, write
from lab.results.record import Record

TODAY = dt.date(2026, 12, 1)
EXPIRED = known.parse('[[issue]]\ntest = "*test_gone*"\ncell = "debian:7.2"\n'
                      'verdicts = ["FAIL"]\nwildcard_reason = "gone"\n'
                      'url = "https://example.org/old"\nexpires = 2026-11-01\n', origin="k",
                      today=TODAY)


def run_dir(tmp_path: Path, name: str, records: list[Record]) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "results.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))
    (d / "phases.jsonl").write_text(json.dumps({"phase": "boot", "seconds": 12.5,
                                                "kernel": "debian:7.2"}) + "\n")
    (d / "command.txt").write_text("cd /src && lab run --kernel debian:7.2\n")
    cells = sorted({r.cell for r in records})
    write(d, Matrix(cells=[{"label": c, "spec": c.split("/")[0], "variant": None}
                           for c in cells], suite=["scenarios"],
                    expected=[(r.cell, r.test) for r in records],
                    assigned=[(r.cell, r.test) for r in records], rootdir="/src"))
    return d


BASE = [rec("test_ok", "PASS"), rec("test_ok", "PASS", "debian:6.1"),
        rec("test_breaks", "PASS"), rec("test_breaks", "PASS", "debian:6.1")]
NEW = [rec("test_ok", "PASS"), rec("test_ok", "PASS", "debian:6.1"),
       rec("test_breaks", "FAIL", reason="assert <script>alert(1)</script>",
           splats=[splat("WARNING in io_destroy")]),
       rec("test_breaks", "PASS", "debian:6.1"),
       rec("test_new", "SKIP", "debian:6.1", reason="lacks CONFIG_IO_URING",
           deviations=["io_cancel(2) says EAGAIN; the kernel returns EINVAL"]),
       rec("test_new", "PASS", deviations=["io_cancel(2) says EAGAIN; the kernel returns EINVAL"],
           observed=["aio-nr rises by exactly nr_events"])]


CATALOGUE = [
    {"id": "a.holds", "text": "io_submit with nr 0 <returns> 0", "suite": "aio",
     "deviation": "", "not_checkable": "",
     "source": {"spec": "kapi-io_submit", "section": "return value", "error": ""}},
    {"id": "a.dev", "text": "io_cancel of a finished iocb fails", "suite": "aio",
     "not_checkable": "", "deviation": "io_cancel(2) says EAGAIN; the kernel returns EINVAL",
     "source": {"spec": "io_cancel(2)", "section": "ERRORS", "error": "EAGAIN"}},
    {"id": "a.never", "text": "io_destroy waits for every iocb", "suite": "aio",
     "deviation": "", "not_checkable": "",
     "source": {"spec": "io_destroy(2)", "section": "DESCRIPTION", "error": ""}},
    {"id": "a.internal", "text": "the ctx lock is held across the cancel", "suite": "aio",
     "deviation": "", "not_checkable": "the lock is internal to the kernel",
     "source": {"spec": "kapi-io_cancel", "section": "locking", "error": ""}},
]
# The same catalogue as a lab of results format 2 wrote it (a key; the source's "text").
CATALOGUE_FORMAT2 = [
    {**{k: v for k, v in c.items() if k not in ("id", "source")}, "key": c["id"],
     "source": {"text": c["source"]["spec"], "section": c["source"]["section"],
                "error": c["source"]["error"]}} for c in CATALOGUE]
DEV = "io_cancel(2) says EAGAIN; the kernel returns EINVAL"
AUDITED = [
    rec("test_nr0", "PASS", claim=CATALOGUE[0]["id"]),
    rec("test_nr0", "FAIL", "debian:6.1", claim=CATALOGUE[0]["id"], reason="returned -22"),
    rec("test_nr0", "SKIP", "debian-src:7.3/debug", claim=CATALOGUE[0]["id"],
        reason="no such thing"),
    rec("test_cancel", "PASS", claim=CATALOGUE[1]["id"], deviations=[DEV]),
    rec("test_cancel", "PASS", "debian:6.1", claim=CATALOGUE[1]["id"]),
    rec("test_stray", "PASS", claim="a claim nobody listed"),
    rec("test_race", "INCONCLUSIVE", file="scenarios/races/r.py",
        reason="the calls overlapped in 3 of 10000 iterations (floor 100)",
        data={"overlap": {"rounds": 10000, "overlapped": 3, "floor_rounds": 100,
                          "floor_rate": 0.01, "power": 0.271, "power_p": 0.1}}),
    rec("test_race", "PASS", "debian:6.1", file="scenarios/races/r.py",
        data={"overlap": {"rounds": 300, "overlapped": 29, "floor_rounds": 5,
                          "floor_rate": 0.003, "power": 0.9529, "power_p": 0.1}}),
    rec("test_race2", "INCONCLUSIVE", "debian-src:7.3/debug", file="scenarios/races/r.py",
        reason="overlap 0.1% < floor 1%"),
]


def audited_run(tmp_path: Path, *, catalogue: bool = True, format2: bool = False) -> Path:
    """A run with a claims catalogue; ``format2``: as a lab of results format 2 wrote it,
    its records citing each claim's text (the audit and the page are the same)."""
    text = {c["id"]: c["text"] for c in CATALOGUE}
    recs = [replace(r, claim=text.get(r.claim, r.claim)) for r in AUDITED] if format2 \
        else AUDITED
    d = run_dir(tmp_path, "audited", recs)
    if catalogue:
        (d / claims.CLAIMS_FILE).write_text(json.dumps(
            {"claims": CATALOGUE_FORMAT2 if format2 else CATALOGUE}))
    return d


@pytest.mark.parametrize("format2", [False, True], ids=["ids", "format2-prose"])
def test_context_has_the_spec_audit_per_cell(tmp_path: Path, format2: bool) -> None:
    ctx = report.context(report.load_run(audited_run(tmp_path, format2=format2)), today=TODAY)
    json.dumps(ctx)
    audit = ctx["audit"]
    assert audit["columns"] == ["debian-src:7.3/debug", "debian:6.1", "debian:7.2"]
    rows = {r["id"]: r for r in audit["claims"]}
    assert list(rows) == ["a.holds", "a.dev", "a.never", "a.internal"]  # catalogue order
    holds = rows["a.holds"]
    assert holds["source_ref"] == "kapi-io_submit, return value"
    assert [c and c["verdict"] for c in holds["cells"]] == ["SKIP", "FAIL", "PASS"]
    assert holds["verdict"] == "FAIL" and holds["deviations"] == []
    # the FAIL cell links to its failure entry, which the page has
    assert holds["cells"][1]["anchor"] in {f["anchor"] for f in ctx["failures"]}
    assert holds["cells"][2]["anchor"] == ""
    dev = rows["a.dev"]
    assert [c and c["verdict"] for c in dev["cells"]] == [None, "PASS", "PASS"]
    assert dev["deviations"] == [{"note": DEV, "cells": ["debian:7.2"]}]
    assert dev["source_ref"] == "io_cancel(2), ERRORS, EAGAIN"
    assert rows["a.never"]["verdict"] == claims.NOT_RUN
    assert rows["a.never"]["cells"] == [None, None, None]
    internal = rows["a.internal"]
    assert internal["verdict"] == claims.NOT_CHECKABLE
    assert internal["verdict_class"] == "NOT-CHECKABLE"
    assert internal["not_checkable"] == "the lock is internal to the kernel"
    assert audit["counts"] == {"claims": 4, "checkable": 3, "not_checkable": 1, "checked": 2,
                               "not_run": 1, "deviations": 1, "failed": 1}
    assert audit["uncatalogued"] == [{"claim": "a claim nobody listed",
                                      "tests": ["scenarios/aio/t.py::test_stray[debian:7.2]"]}]


def test_context_lists_the_inconclusive_tests(tmp_path: Path) -> None:
    ctx = report.context(report.load_run(audited_run(tmp_path)), today=TODAY)
    assert [(i["cell"], i["scenario"], i["reasons"]) for i in ctx["inconclusive"]] == [
        ("debian-src:7.3/debug", "scenarios/races/r.py::test_race2", ["overlap 0.1% < floor 1%"]),
        ("debian:7.2", "scenarios/races/r.py::test_race",
         ["the calls overlapped in 3 of 10000 iterations (floor 100)"])]
    assert not [f for f in ctx["failures"] if f["verdict"] == "INCONCLUSIVE"]
    grid = {r["name"]: r["cells"] for r in ctx["grid"]}
    linked = {c["anchor"] for c in grid["test_race"] if c and c["anchor"]}
    assert linked == {ctx["inconclusive"][1]["anchor"]}


@pytest.mark.parametrize("format2", [False, True], ids=["ids", "format2-prose"])
def test_html_shows_the_audit_and_the_inconclusive_tests(tmp_path: Path, format2: bool) -> None:
    page = parse(report.write(audited_run(tmp_path, format2=format2), today=TODAY).read_text())
    _check_audit_page(page)


def _check_audit_page(page: Node) -> None:
    table = page.one("table", id="audit")
    assert [th.all_text() for th in table.find_all("th", cls="cell")] == [
        "debian-src:7.3/debug", "debian:6.1", "debian:7.2"]
    rows = {r.attrs["data-id"]: r for r in table.find_all("tr", cls="claim")}
    assert list(rows) == ["a.holds", "a.dev", "a.never", "a.internal"]
    holds = rows["a.holds"]
    assert "io_submit with nr 0 <returns> 0" in holds.one("td", cls="claim").all_text()
    assert holds.one("td", cls="source").all_text() == "kapi-io_submit, return value"
    cells = holds.find_all("td", cls="v")
    assert [(td.attrs["class"], td.all_text()) for td in cells] == [
        ("v v-SKIP", "SKIP"), ("v v-FAIL", "FAIL"), ("v v-PASS", "PASS")]
    (link,) = cells[1].find_all("a")
    assert page.find_all(id=link.attrs["href"][1:])  # the failure entry it points at
    dev = rows["a.dev"]
    assert [td.all_text() for td in dev.find_all("td", cls="v")] == ["\N{EN DASH}", "PASS", "PASS"]
    assert dev.one("td", cls="deviation").all_text() == f"{DEV} (debian:7.2)"
    assert "NOT RUN" in rows["a.never"].one("td", cls="verdict").all_text()
    internal = rows["a.internal"].one("td", cls="verdict").all_text()
    assert "NOT CHECKABLE" in internal and "the lock is internal" in internal
    counts = page.one(id="audit-counts").all_text()
    assert counts == ("4 claims listed: 2 checked, 1 with a deviation from their source, "
                      "1 not checkable from userspace, 1 not run, 1 failed.")
    assert "a claim nobody listed" in page.one(id="audit-uncatalogued").all_text() + \
        page.one(id="spec-audit").all_text()
    section = page.one("section", id="inconclusive")
    items = section.find_all("tr", cls="item")
    assert [i.find_all("code")[0].all_text() for i in items] == [
        "scenarios/races/r.py::test_race2", "scenarios/races/r.py::test_race"]
    assert "3 of 10000 iterations (floor 100)" in items[1].all_text()
    grid = page.one("table", id="grid")
    race = next(r for r in grid.find_all("tr", cls="row")
                if r.attrs["data-scenario"] == "scenarios/races/r.py::test_race")
    (a,) = race.find_all("a")
    assert a.attrs["href"] == "#" + items[1].attrs["id"]


def test_report_shows_the_overlap_of_every_race_test(tmp_path: Path) -> None:
    # A PASS raced as much as an INCONCLUSIVE: both show their overlap and power; a race
    # record from before the power was recorded shows a dash, a non-race test no row.
    d = audited_run(tmp_path)
    old = rec("test_race3", "PASS", file="scenarios/races/r.py",
              data={"overlap": {"rounds": 40, "overlapped": 2, "floor_rounds": 1,
                                "floor_rate": 0.003}})
    with (d / "results.jsonl").open("a") as f:
        f.write(json.dumps(asdict(old)) + "\n")
    ctx = report.context(report.load_run(d), today=TODAY)
    assert [(r["cell"], r["scenario"].split("::")[1], r["verdict"], r["overlapped"],
             r["rounds"], r["rate"], r["power"]) for r in ctx["races"]] == [
        ("debian:6.1", "test_race", "PASS", 29, 300, "9.7%", "95%"),
        ("debian:7.2", "test_race", "INCONCLUSIVE", 3, 10000, "0.03%", "27%"),
        ("debian:7.2", "test_race3", "PASS", 2, 40, "5.0%", "")]
    page = parse(report.write(d, today=TODAY).read_text())
    rows = page.one("section", id="races").find_all("tr", cls="race")
    assert [(r.attrs["data-cell"], r.one("td", cls="overlap").all_text(),
             r.one("td", cls="power").all_text()) for r in rows] == [
        ("debian:6.1", "29 of 300 (9.7%)", "95% (p 0.1)"),
        ("debian:7.2", "3 of 10000 (0.03%)", "27% (p 0.1)"),
        ("debian:7.2", "2 of 40 (5.0%)", "\N{EN DASH}")]
    # the INCONCLUSIVE row links to its entry in the inconclusive list
    (a,) = rows[1].find_all("a")
    assert page.find_all(id=a.attrs["href"][1:])


def test_html_without_claims_json_says_so_in_one_line(tmp_path: Path) -> None:
    html = report.write(audited_run(tmp_path, catalogue=False), today=TODAY).read_text()
    page = parse(html)
    section = page.one("section", id="spec-audit")
    assert not section.find_all("table")
    assert "No claims.json in this run directory" in section.one(id="audit-none").all_text()
    # no claims invented from the records (the failure entry still names its own claim)
    assert "io_submit with nr 0" not in section.all_text()
    assert section.all_text().strip().count("\n") == 1  # the heading and one line


def test_a_broken_claims_json_is_a_user_error(tmp_path: Path) -> None:
    from lab.errors import UserError

    d = audited_run(tmp_path, catalogue=False)
    (d / claims.CLAIMS_FILE).write_text("{not json")
    with pytest.raises(UserError, match="is not a claims catalogue"):
        report.load_run(d)


def test_context_is_plain_data(tmp_path: Path) -> None:
    new = report.load_run(run_dir(tmp_path, "new", NEW))
    base = report.load_run(run_dir(tmp_path, "base", BASE))
    ctx = report.context(new, baseline=base, issues=EXPIRED, today=TODAY)
    json.dumps(ctx)  # nothing but plain data reaches the templates
    assert [c["label"] for c in ctx["cells"]] == ["debian:6.1", "debian:7.2"]
    assert [r["name"] for r in ctx["grid"]] == ["test_ok", "test_breaks", "test_new"]
    (failure,) = ctx["failures"]
    assert failure["verdict"] == "FAIL" and failure["splats"][0]["title"] == "WARNING in io_destroy"
    # The test by its node id without the cell (lab.results.reproduce has the pinning),
    # in the run's suite (a suite of the user's in /src, not the lab's own scenarios/).
    assert failure["reproducer"] == ("cd /src && lab run --kernel debian:7.2 --accel auto "
                                     "--cpus 2 --memory 2G --suite scenarios -- "
                                     "scenarios/aio/t.py::test_breaks")
    assert ctx["deviations"] == [{"scenario": "scenarios/aio/t.py::test_new",
                                  "note": "io_cancel(2) says EAGAIN; the kernel returns EINVAL",
                                  "cells": ["debian:6.1", "debian:7.2"]}]
    assert ctx["observed"][0]["note"] == "aio-nr rises by exactly nr_events"
    assert ctx["expired_issues"][0]["url"] == "https://example.org/old"
    c = ctx["comparison"]
    assert [(e["cell"], e["before"], e["after"]) for e in c["regressions"]] == [
        ("debian:7.2", "PASS", "FAIL")]
    assert c["new_splats"][0]["title"] == "WARNING in io_destroy"
    assert {e["scenario"] for e in c["added"]} == {"scenarios/aio/t.py::test_new"}


def test_reproducer_for_a_built_variant() -> None:
    r = rec("test_x", "FAIL", "debian-src:7.3/debug", param="io_setup")
    assert report.reproducer(r) == ("lab run --kernel debian-src:7.3 --variant debug --accel "
                                    "auto --cpus 2 --memory 2G -- "
                                    "'scenarios/aio/t.py::test_x[io_setup]'")


def test_html_is_escaped_and_self_contained(tmp_path: Path) -> None:
    d = run_dir(tmp_path, "new", NEW)
    base = run_dir(tmp_path, "base", BASE)
    html = report.write(d, baseline=base, issues=EXPIRED, today=TODAY).read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    page = parse(html)
    assert not page.find_all("script") and not page.find_all("link")
    assert not [n for n in page.find_all() if n.attrs.get("src")]
    assert "<style>" in html


def test_a_splat_s_decoded_trace_is_shown_under_its_excerpt(tmp_path: Path) -> None:
    """A kernel with DWARF has each splat decoded to file:line (lab.kernel.decode): the
    failure's section shows it, escaped; a splat without one shows none."""
    decoded = {**splat("BUG: KASAN in io_destroy", "KASAN"),
               "decoded": " io_destroy (fs/aio.c:1190) <b>\n"}
    d = run_dir(tmp_path, "new", [
        rec("test_uaf", "FAIL", reason="kasan", splats=[decoded]),
        rec("test_warn", "FAIL", reason="warn", splats=[splat("WARNING in io_submit")])])
    page = parse(report.write(d, today=TODAY).read_text())
    shown = [n.all_text() for n in page.find_all("pre") if "decoded" in n.attrs.get("class", "")]
    assert shown == [" io_destroy (fs/aio.c:1190) <b>\n"], shown
    assert sum("decoded" in n.all_text() for n in page.find_all("p")) == 1


def test_text_difference(tmp_path: Path) -> None:
    new = report.load_run(run_dir(tmp_path, "new", NEW))
    base = report.load_run(run_dir(tmp_path, "base", BASE))
    text = report.render_text(report.context(new, baseline=base, issues=EXPIRED, today=TODAY))
    assert "regressions (anything but a failure, or new -> FAIL/CRASH/HANG): 1" in text
    assert "PASS -> FAIL  scenarios/aio/t.py::test_breaks on debian:7.2" in text
    assert "reproduce: cd /src && lab run --kernel debian:7.2" in text
    assert "WARNING in io_destroy" in text and "expired known issue" in text
    assert text.rstrip().endswith("REGRESSION")
    assert "\n\n" not in text  # one line per item, sections one after the other
    assert "&lt;" not in text  # plain text is not escaped


def test_text_spells_out_the_kernels_control_characters(tmp_path: Path) -> None:
    evil = [replace(r, splats=[splat("WARNING in \x1b]0;pwned\x07io_destroy")])
            if r.splats else r for r in NEW]
    new = report.load_run(run_dir(tmp_path, "new", evil))
    base = report.load_run(run_dir(tmp_path, "base", BASE))
    text = report.render_text(report.context(new, baseline=base, today=TODAY))
    assert "WARNING in \\x1b]0;pwned\\x07io_destroy" in text and "\x1b" not in text


def test_not_a_run_directory(tmp_path: Path) -> None:
    from lab.errors import UserError

    with pytest.raises(UserError, match="is not a lab run directory"):
        report.load_run(tmp_path, what="--baseline")


@pytest.mark.browser
def test_chromium_shows_the_grid_and_the_regressions(tmp_path: Path) -> None:
    d = run_dir(tmp_path, "new", NEW)
    html = report.write(d, baseline=run_dir(tmp_path, "base", BASE), issues=EXPIRED,
                        today=TODAY)
    page = parse(dump_dom(html))
    grid = page.one("table", id="grid")
    header = [th.all_text() for th in grid.find_all("th", cls="cell")]
    assert [h.split("\n")[0].strip()[:10] for h in header] == ["debian:6.1", "debian:7.2"]
    rows = grid.find_all("tr", cls="row")
    assert [r.attrs["data-scenario"].split("::")[1] for r in rows] == [
        "test_ok", "test_breaks", "test_new"]
    breaks = rows[1].find_all("td", cls="v")
    assert [td.attrs["class"] for td in breaks] == ["v v-PASS", "v v-FAIL"]
    regressions = page.one(id="regressions")
    (item,) = regressions.find_all("tr", cls="item")
    assert "test_breaks" in item.all_text() and "FAIL" in item.all_text()
    assert "WARNING in io_destroy" in page.one(id="new-splats").all_text()
    assert "https://example.org/old" in page.one(id="expired-issues").all_text()
    assert not page.one(id="fixes").find_all("tr", cls="item")


@pytest.mark.browser
def test_chromium_shows_the_audit_and_the_inconclusive_tests(tmp_path: Path) -> None:
    _check_audit_page(parse(dump_dom(report.write(audited_run(tmp_path), today=TODAY))))


def test_compare_exits_by_which_gate_failed(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """1 a regression, 5 a check lost (and no regression), 0 neither; --help says so."""
    from lab import cli
    from lab.errors import COMPARE_EXIT_CODES

    same = run_dir(tmp_path, "same", BASE)
    skipped = run_dir(tmp_path, "skipped", [
        dataclasses.replace(r, verdict="SKIP") if r.verdict == "PASS" else r for r in BASE])
    base = run_dir(tmp_path, "base", BASE)
    new = run_dir(tmp_path, "new", NEW)
    codes = {name: cli.main(["compare", str(base), str(other)])
             for name, other in (("same", same), ("skipped", skipped), ("new", new))}
    out = capsys.readouterr().out
    assert codes == {"same": 0, "skipped": 5, "new": 1}, out
    assert "CHECKS LOST" in out and "REGRESSION" in out
    assert "no regression, no check lost" in out
    with pytest.raises(SystemExit):
        cli.main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for code, meaning in COMPARE_EXIT_CODES.items():
        assert f"{code} {meaning}" in text, code


UAF = "KASAN: slab-use-after-free Read in aio_complete_rw"
# A debug kernel that kept going on one bug (kasan_multi_shot): four tests hit it, one of
# them twice (--repeat), and one test showed another report.
ONE_BUG = [
    rec("test_poll", "FAIL", "debian-src:7.3/debug", splats=[splat(UAF, "KASAN")]),
    rec("test_read", "FAIL", "debian-src:7.3/debug", splats=[splat(UAF, "KASAN")]),
    rec("test_read", "FAIL", "debian-src:7.3/debug", splats=[splat(UAF, "KASAN")], repeat=2),
    rec("test_cancel", "FAIL", "debian-src:7.3/debug",
        splats=[splat(UAF, "KASAN"), splat("WARNING in io_destroy")]),
    rec("test_write", "FAIL", "debian-src:7.3/debug", splats=[splat(UAF, "KASAN")]),
    rec("test_ok", "PASS", "debian-src:7.3/debug"),
]


def test_reports_are_grouped_by_signature_one_bug_n_tests(tmp_path: Path) -> None:
    from lab.results.summary import summarize, summary_lines

    d = run_dir(tmp_path, "onebug", ONE_BUG)
    ctx = report.context(report.load_run(d), today=TODAY)
    json.dumps(ctx)
    uaf, warn = ctx["bugs"]
    assert (uaf["title"], uaf["n"]) == (UAF, 4) and (warn["title"], warn["n"]) == (
        "WARNING in io_destroy", 1)
    assert [t["scenario"] for t in uaf["tests"]] == [
        "scenarios/aio/t.py::test_poll", "scenarios/aio/t.py::test_read",
        "scenarios/aio/t.py::test_cancel", "scenarios/aio/t.py::test_write"]
    # each links to its failure entry
    assert {t["anchor"] for t in uaf["tests"]} <= {f["anchor"] for f in ctx["failures"]}
    lines = summary_lines(summarize(d))
    assert "kernel reports: 2 distinct (by signature; 5 tests showed one)" in lines
    assert f"  - {UAF}: 4 tests on debian-src:7.3/debug" in lines
    page = parse(report.write(d, today=TODAY).read_text())
    rows = page.one("section", id="bugs").find_all("tr", cls="bug")
    assert [r.find_all("td")[1].all_text() for r in rows] == ["4", "1"]
    assert UAF in rows[0].all_text() and len(rows[0].find_all("a")) == 4
