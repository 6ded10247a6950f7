"""The report: its context on hand-made records, the HTML (escaped, self-contained) and
the text of `lab compare`, and the page as headless Chromium builds it."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from browser import dump_dom, parse
from records import rec, splat

from lab.results import known, report
from lab.results.matrix import Matrix, write
from lab.results.record import Record

TODAY = dt.date(2026, 12, 1)
EXPIRED = known.parse('[[issue]]\ntest = "*test_gone*"\nurl = "https://example.org/old"\n'
                      'expires = 2026-11-01\n', origin="k")


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


def test_context_is_plain_data(tmp_path: Path) -> None:
    new = report.load_run(run_dir(tmp_path, "new", NEW))
    base = report.load_run(run_dir(tmp_path, "base", BASE))
    ctx = report.context(new, baseline=base, issues=EXPIRED, today=TODAY)
    json.dumps(ctx)  # nothing but plain data reaches the templates
    assert [c["label"] for c in ctx["cells"]] == ["debian:6.1", "debian:7.2"]
    assert [r["name"] for r in ctx["grid"]] == ["test_ok", "test_breaks", "test_new"]
    (failure,) = ctx["failures"]
    assert failure["verdict"] == "FAIL" and failure["splats"][0]["title"] == "WARNING in io_destroy"
    assert failure["reproducer"] == ("cd /src && lab run --kernel debian:7.2 --suite "
                                     "scenarios/aio/t.py -k 'test_breaks[debian:7.2]'")
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
    assert report.reproducer(r) == ("lab run --kernel debian-src:7.3 --variant debug --suite "
                                    "scenarios/aio/t.py -k 'test_x[io_setup-debian-src:7.3/debug]'")


def test_html_is_escaped_and_self_contained(tmp_path: Path) -> None:
    d = run_dir(tmp_path, "new", NEW)
    base = run_dir(tmp_path, "base", BASE)
    html = report.write(d, baseline=base, issues=EXPIRED, today=TODAY).read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    page = parse(html)
    assert not page.find_all("script") and not page.find_all("link")
    assert not [n for n in page.find_all() if n.attrs.get("src")]
    assert "<style>" in html


def test_text_difference(tmp_path: Path) -> None:
    new = report.load_run(run_dir(tmp_path, "new", NEW))
    base = report.load_run(run_dir(tmp_path, "base", BASE))
    text = report.render_text(report.context(new, baseline=base, issues=EXPIRED, today=TODAY))
    assert "regressions (PASS -> FAIL/CRASH/HANG): 1" in text
    assert "PASS -> FAIL  scenarios/aio/t.py::test_breaks on debian:7.2" in text
    assert "reproduce: cd /src && lab run --kernel debian:7.2" in text
    assert "WARNING in io_destroy" in text and "expired known issue" in text
    assert text.rstrip().endswith("REGRESSION")
    assert "\n\n" not in text  # one line per item, sections one after the other
    assert "&lt;" not in text  # plain text is not escaped


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
