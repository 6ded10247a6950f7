"""known-issues.toml: narrow entries (verdicts, splat, cell), wildcards with a reason, a
year at most, unmatched entries listed; bad entries as one-line user errors."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path

import pytest
from records import rec, splat

from lab.errors import UserError
from lab.results import known, summary
from lab.results.matrixfile import Matrix, write

TODAY = dt.date(2026, 12, 1)
GOOD = '''
[[issue]]
test = "scenarios/aio/t.py::test_flaky*"
cell = "debian:6.*"
verdicts = ["FAIL"]
intermittent = true
url = "https://bugzilla.kernel.org/show_bug.cgi?id=1"
expires = 2027-01-31
note = "NVMe timeouts under load"
wildcard_reason = "every parameter of test_flaky times out alike on the 6.x kernels"

[[issue]]
test = "scenarios/aio/t.py::test_old[debian:7.2]"
cell = "debian:7.2"
verdicts = ["CRASH", "FAIL"]
url = "https://example.org/2"
expires = "2026-11-30"
'''


def test_parse_and_expiry() -> None:
    issues = known.parse(GOOD, origin="k.toml", today=TODAY)
    assert [i.expires for i in issues] == [dt.date(2027, 1, 31), dt.date(2026, 11, 30)]
    assert issues[0].intermittent and not issues[1].intermittent
    assert issues[0].verdicts == ("FAIL",) and issues[1].verdicts == ("CRASH", "FAIL")
    assert known.expired(issues, TODAY) == [issues[1]]
    assert "renew or remove" in known.expired_line(issues[1])


def test_a_covered_failure_becomes_xfail_and_keeps_its_verdict() -> None:
    issues = known.parse(GOOD, origin="k.toml", today=TODAY)
    r = known.apply(rec("test_flaky", "FAIL", "debian:6.1", reason="timeout"), issues,
                    today=TODAY)
    assert r.verdict == "XFAIL"
    assert r.data["known_issue"]["verdict"] == "FAIL"
    assert r.data["known_issue"]["url"].endswith("id=1") and "timeout" in r.reason
    # Another cell, a pass, an expired entry: unchanged.
    assert known.apply(rec("test_flaky", "FAIL", "debian:7.2"), issues, today=TODAY).verdict \
        == "FAIL"
    assert known.apply(rec("test_flaky", "PASS", "debian:6.1"), issues, today=TODAY).verdict \
        == "PASS"
    assert known.apply(rec("test_old", "CRASH"), issues, today=TODAY).verdict == "CRASH"
    # A literal node id with its [cell] is the test itself, not a character class.
    assert known.apply(rec("test_old", "CRASH"), issues,
                       today=dt.date(2026, 11, 30)).verdict == "XFAIL"


NVME = '''
[[issue]]
test = "scenarios/uring/test_fio.py::*"
cell = "*"
verdicts = ["FAIL"]
url = "https://example.org/nvme"
expires = 2027-03-01
wildcard_reason = "fio fails on every cell when the emulated NVMe times out"
'''


def test_an_nvme_timeout_entry_never_hides_a_kasan_crash() -> None:
    """Seen when tried: a `test_fio.py::*` entry for NVMe timeouts turned a KASAN CRASH on
    the debug cell into XFAIL."""
    issues = known.parse(NVME, origin="k.toml", today=TODAY)
    cell = "debian-src:7.3/debug"
    kasan = rec("test_fio", "CRASH", cell, file="scenarios/uring/test_fio.py",
                splats=[splat("KASAN: use-after-free in iocb_destroy", "KASAN")])
    assert known.apply(kasan, issues, today=TODAY).verdict == "CRASH"
    timeout = rec("test_fio", "FAIL", cell, file="scenarios/uring/test_fio.py")
    assert known.apply(timeout, issues, today=TODAY).verdict == "XFAIL"


def test_a_splat_glob_narrows_it_further() -> None:
    issues = known.parse('''
[[issue]]
test = "scenarios/aio/t.py::test_w"
cell = "debian:7.2"
verdicts = ["FAIL"]
splat = "WARNING in io_destroy*"
url = "https://example.org/w"
expires = 2027-03-01
''', origin="k.toml", today=TODAY)
    warned = rec("test_w", "FAIL", splats=[splat("WARNING in io_destroy+0x10")])
    other = rec("test_w", "FAIL", splats=[splat("WARNING in free_ioctx")])
    bare = rec("test_w", "FAIL", reason="assert 'EINVAL' == 'EBADF'")
    assert [known.apply(r, issues, today=TODAY).verdict for r in (warned, other, bare)] == [
        "XFAIL", "FAIL", "FAIL"]


def test_an_entry_that_matched_nothing_is_listed(tmp_path: Path) -> None:
    issues = known.parse(GOOD, origin="k.toml", today=TODAY)[:1] + known.parse(
        NVME, origin="k.toml", today=TODAY)
    records = [known.apply(rec("test_flaky", "FAIL", "debian:6.1"), issues, today=TODAY),
               rec("test_fio", "PASS", file="scenarios/uring/test_fio.py")]
    assert known.unmatched(issues, records, today=TODAY) == [issues[1]]
    # In the run's summary (summary.json and the closing lines), as the run wrote it.
    d = tmp_path / "run"
    d.mkdir()
    (d / "results.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))
    write(d, Matrix(cells=[], suite=[], expected=[], assigned=[]))
    got = summary.summarize(d, issues=issues)
    assert [i["url"] for i in got["known_issues"]["unmatched"]] == ["https://example.org/nvme"]
    lines = summary.summary_lines(got)
    assert any(line.startswith("known issue matched nothing in this run: "
                               "scenarios/uring/test_fio.py::* on *") for line in lines), lines


ENTRY = 'test = "a::b"\ncell = "debian:7.2"\nverdicts = ["FAIL"]\nurl = "https://x"\n'


@pytest.mark.parametrize("entry, needle", [
    (ENTRY.replace('"a::b"', '"a[b"') + "expires = 2027-01-01", "'[' without ']'"),
    (ENTRY.replace('"a::b"', '""') + "expires = 2027-01-01", "non-empty glob"),
    (ENTRY + 'expires = "next week"', "not a date"),
    (ENTRY + 'expires = "2027-02-30"', "not a date"),
    (ENTRY + "expires = 2028-01-01", "more than a year ahead"),
    (ENTRY.replace("https://x", "ftp://x") + "expires = 2027-01-01", "http(s) URL"),
    ('test = "a"\ncell = "x"\nverdicts = ["FAIL"]\nexpires = 2027-01-01', "url is missing"),
    (ENTRY.replace('verdicts = ["FAIL"]\n', "") + "expires = 2027-01-01",
     "verdicts is missing"),
    (ENTRY.replace('cell = "debian:7.2"\n', "") + "expires = 2027-01-01", "cell is missing"),
    (ENTRY.replace('["FAIL"]', '["SKIP"]') + "expires = 2027-01-01", "of CRASH, HANG, FAIL"),
    (ENTRY.replace('["FAIL"]', "[]") + "expires = 2027-01-01", "must list the verdicts"),
    (ENTRY.replace('"a::b"', '"a::*"') + "expires = 2027-01-01", "is a wildcard"),
    (ENTRY.replace('"debian:7.2"', '"*"') + "expires = 2027-01-01", "wildcard_reason"),
    (ENTRY + 'expires = 2027-01-01\nkernel = "x"', "unknown key 'kernel'"),
    (ENTRY + 'expires = 2027-01-01\nintermittent = "yes"', "true or false"),
])
def test_bad_entries_are_user_errors_naming_the_entry(entry: str, needle: str) -> None:
    with pytest.raises(UserError) as exc:
        known.parse(f"[[issue]]\n{entry}\n", origin="known-issues.toml", today=TODAY)
    assert "known-issues.toml: issue 1" in str(exc.value) and needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_not_toml() -> None:
    with pytest.raises(UserError, match="not valid TOML"):
        known.parse("[[issue]\n", origin="k.toml")


def test_the_projects_own_list_parses() -> None:
    from lab.paths import KNOWN_ISSUES

    known.load(KNOWN_ISSUES)
