"""Known issues (``known-issues.toml``): failures that are expected, until a date.

Each ``[[issue]]`` names a test glob, a cell glob, whether the failure is
intermittent, a URL where it is tracked and an expiry date, as SQUAD's known
issues do.  A FAIL, CRASH or HANG that an unexpired entry matches becomes XFAIL:
it is listed, it does not fail the run.  An intermittent entry also cancels a
"fix" in a comparison (a flaky test that passed once is not fixed).  An expired
entry matches nothing and is reported, so the list cannot rot::

    [[issue]]
    test = "scenarios/uring/test_fio.py::*"   # fnmatch glob on the test id
    cell = "debian:6.1"                        # glob on the cell label (default "*")
    intermittent = true
    url = "https://bugzilla.kernel.org/show_bug.cgi?id=1"
    expires = 2027-03-01
    note = "NVMe timeouts under load"          # optional
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lab.errors import UserError
from lab.paths import KNOWN_ISSUES
from lab.results.cell import scenario_of
from lab.results.record import Record
from lab.results.verdict import FAILED, Verdict

FILE = "known-issues.toml"
_KEYS = {"test", "cell", "intermittent", "url", "expires", "note"}


@dataclass(frozen=True)
class KnownIssue:
    test: str
    url: str
    expires: dt.date
    cell: str = "*"
    intermittent: bool = False
    note: str = ""

    def matches(self, test: str, cell: str) -> bool:
        scenario = scenario_of(test, cell)
        return (fnmatch.fnmatchcase(cell, self.cell)
                and (fnmatch.fnmatchcase(test, self.test)
                     or fnmatch.fnmatchcase(scenario, self.test)))

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["expires"] = self.expires.isoformat()
        return data


def _check_glob(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {key} must be a non-empty glob such as "
                        "\"scenarios/aio/*\"")
    depth = 0
    for ch in value:  # fnmatch reads an unclosed "[" as a literal: almost surely a typo here
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    if depth:
        raise UserError(f"{where}: {key} {value!r} is not a glob: '[' without ']'; "
                        "write [[] for a literal '['")
    return value


def _check_date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise UserError(f"{where}: expires {value!r} is not a date; write expires = YYYY-MM-DD "
                    "(e.g. 2027-03-01)")


def parse(text: str, *, origin: str) -> list[KnownIssue]:
    """The entries of a known-issues file; UserError naming the entry and the field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{origin}: not valid TOML: {exc}") from None
    extra = set(data) - {"issue"}
    if extra:
        raise UserError(f"{origin}: unknown table {sorted(extra)[0]!r}; entries are [[issue]]")
    entries = data.get("issue", [])
    if not isinstance(entries, list):
        raise UserError(f"{origin}: write each entry as [[issue]]")
    out = []
    for n, entry in enumerate(entries, 1):
        where = f"{origin}: issue {n}"
        unknown = set(entry) - _KEYS
        if unknown:
            raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r}; "
                            f"known keys: {', '.join(sorted(_KEYS))}")
        for key in ("test", "url", "expires"):
            if key not in entry:
                raise UserError(f"{where}: {key} is missing (test, url and expires are needed)")
        url = entry["url"]
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise UserError(f"{where}: url {url!r} must be an http(s) URL where it is tracked")
        intermittent = entry.get("intermittent", False)
        if not isinstance(intermittent, bool):
            raise UserError(f"{where}: intermittent must be true or false")
        out.append(KnownIssue(
            test=_check_glob(entry["test"], where, "test"),
            cell=_check_glob(entry.get("cell", "*"), where, "cell"),
            url=url, expires=_check_date(entry["expires"], where),
            intermittent=intermittent, note=str(entry.get("note", ""))))
    return out


# `--known-issues /dev/null`: no known issues at all (what a bisection's runs use unless
# asked: a known issue must not turn the failure being bisected into XFAIL).
NONE = Path(os.devnull)


def path_for(option: Path | None) -> Path:
    """The known-issues file: the one given (it must exist), else ./known-issues.toml when
    the current directory has one (a user's own list, wherever the lab is installed), else
    the lab's own (the checkout's list; in a wheel, a template without entries)."""
    if option is None:
        local = Path(FILE)
        return local.resolve() if local.is_file() else KNOWN_ISSUES
    if option == NONE:
        return NONE
    if not option.is_file():
        what = "is not a file" if option.exists() else "does not exist"
        raise UserError(f"--known-issues {option} {what}; give a {FILE} file")
    return option.resolve()


def load(path: Path | None) -> list[KnownIssue]:
    """The entries of ``path`` (none when it is None or absent)."""
    if path is None or not path.exists():
        return []
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not text (not UTF-8): give a {FILE} file") from None
    return parse(text, origin=str(path))


def match(issues: list[KnownIssue], test: str, cell: str, *,
          today: dt.date) -> KnownIssue | None:
    """The first unexpired entry for ``test`` on ``cell``."""
    return next((i for i in issues if not i.expired(today) and i.matches(test, cell)), None)


def expired(issues: list[KnownIssue], today: dt.date) -> list[KnownIssue]:
    return [i for i in issues if i.expired(today)]


def expired_line(issue: KnownIssue) -> str:
    """The line a run prints for an expired entry."""
    return (f"known issue expired on {issue.expires}: {issue.test} on {issue.cell} "
            f"({issue.url}); it matches nothing now: renew or remove it in {FILE}")


def apply(record: Record, issues: list[KnownIssue], *, today: dt.date) -> Record:
    """``record`` with a failure that a known issue expects turned into XFAIL.

    The original verdict and the entry stay in ``data["known_issue"]``.
    """
    if record.verdict not in FAILED:
        return record
    issue = match(issues, record.test, record.cell, today=today)
    if issue is None:
        return record
    data = {**record.data, "known_issue": {**issue.to_dict(), "verdict": record.verdict}}
    return replace(record, verdict=Verdict.XFAIL.value, data=data,
                   reason=f"known issue {issue.url}: {record.verdict}: {record.reason}")
