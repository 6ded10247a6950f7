"""known-issues.toml: parsing, bad entries as one-line user errors, XFAIL, expiry."""

from __future__ import annotations

import datetime as dt

import pytest
from records import rec

from lab.errors import UserError
from lab.results import known

TODAY = dt.date(2026, 12, 1)
GOOD = '''
[[issue]]
test = "scenarios/aio/t.py::test_flaky*"
cell = "debian:6.*"
intermittent = true
url = "https://bugzilla.kernel.org/show_bug.cgi?id=1"
expires = 2027-01-31
note = "NVMe timeouts under load"

[[issue]]
test = "*test_old"
url = "https://example.org/2"
expires = "2026-11-30"
'''


def test_parse_and_expiry() -> None:
    issues = known.parse(GOOD, origin="k.toml")
    assert [i.expires for i in issues] == [dt.date(2027, 1, 31), dt.date(2026, 11, 30)]
    assert issues[0].intermittent and not issues[1].intermittent and issues[1].cell == "*"
    assert known.expired(issues, TODAY) == [issues[1]]
    assert "renew or remove" in known.expired_line(issues[1])


def test_a_matching_failure_becomes_xfail_and_keeps_its_verdict() -> None:
    issues = known.parse(GOOD, origin="k.toml")
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
    assert known.apply(rec("test_old", "CRASH"), issues,
                       today=dt.date(2026, 11, 30)).verdict == "XFAIL"


@pytest.mark.parametrize("entry, needle", [
    ('test = "a[b"\nurl = "https://x"\nexpires = 2027-01-01', "'[' without ']'"),
    ('test = ""\nurl = "https://x"\nexpires = 2027-01-01', "non-empty glob"),
    ('test = "a"\nurl = "https://x"\nexpires = "next week"', "not a date"),
    ('test = "a"\nurl = "https://x"\nexpires = "2027-02-30"', "not a date"),
    ('test = "a"\nurl = "ftp://x"\nexpires = 2027-01-01', "http(s) URL"),
    ('test = "a"\nexpires = 2027-01-01', "url is missing"),
    ('test = "a"\nurl = "https://x"\nexpires = 2027-01-01\nkernel = "x"', "unknown key 'kernel'"),
    ('test = "a"\nurl = "https://x"\nexpires = 2027-01-01\nintermittent = "yes"',
     "true or false"),
])
def test_bad_entries_are_user_errors_naming_the_entry(entry: str, needle: str) -> None:
    with pytest.raises(UserError) as exc:
        known.parse(f"[[issue]]\n{entry}\n", origin="known-issues.toml")
    assert "known-issues.toml: issue 1" in str(exc.value) and needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_not_toml() -> None:
    with pytest.raises(UserError, match="not valid TOML"):
        known.parse("[[issue]\n", origin="k.toml")
