"""Known issues (``known-issues.toml``): failures that are expected, narrowly, until a date.

Each ``[[issue]]`` names the test (a node id, with or without its ``[cell]``, or a
glob), the cell, the verdicts it covers and optionally a glob on the title of a
splat the record must show; whether the failure is intermittent, a URL where it is
tracked and an expiry date at most a year ahead, as SQUAD's known issues do.  A
record whose verdict, test, cell (and splat) an unexpired entry covers becomes
XFAIL: it is listed, it does not fail the run.  Anything else stays what it is: an
entry for NVMe timeouts (FAIL) never hides a KASAN report (CRASH) on the same test.
A glob (``*`` or ``?``) in the test or the cell needs a stated ``wildcard_reason``.
An intermittent entry also cancels a "fix" in a comparison (a flaky test that passed
once is not fixed).  An expired entry matches nothing and is reported, and so is an
entry that matched nothing in a run, so the list cannot rot::

    [[issue]]
    test = "scenarios/uring/test_fio.py::test_fio_passthrough[debian:6.1]"
    cell = "debian:6.1"                        # the cell label, or a glob
    verdicts = ["FAIL"]                        # of FAIL, CRASH, HANG
    splat = "WARNING in nvme_*"                # optional: a splat title glob
    intermittent = true
    url = "https://bugzilla.kernel.org/show_bug.cgi?id=1"
    expires = 2027-03-01                       # at most a year ahead
    note = "what it is, in a few words"        # optional
    wildcard_reason = "..."                    # needed when test or cell is a glob
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lab.errors import UserError
from lab.paths import KNOWN_ISSUES
from lab.results.cell import scenario_of
from lab.results.record import Record
from lab.results.verdict import FAILED, FAILED_ORDER, Verdict

FILE = "known-issues.toml"
_KEYS = {"test", "cell", "verdicts", "splat", "intermittent", "url", "expires", "note",
         "wildcard_reason"}
_REQUIRED = ("test", "cell", "verdicts", "url", "expires")
_COVERABLE = tuple(v.value for v in FAILED_ORDER)
# The longest an entry may stand before someone looks at it again.
MAX_AHEAD = dt.timedelta(days=366)


def _is_glob(pattern: str) -> bool:
    # "[...]" alone is a node id's parameters (tried literally first), not a wildcard.
    return "*" in pattern or "?" in pattern


def _match(value: str, pattern: str) -> bool:
    """A literal (a node id with its "[cell]") first, then the glob."""
    return value == pattern or fnmatch.fnmatchcase(value, pattern)


@dataclass(frozen=True)
class KnownIssue:
    test: str
    url: str
    expires: dt.date
    cell: str
    verdicts: tuple[str, ...] = ("FAIL",)
    splat: str = ""  # a glob on a splat title the record must show ("" any or none)
    intermittent: bool = False
    note: str = ""
    wildcard_reason: str = ""

    def matches(self, test: str, cell: str) -> bool:
        """Whether the entry names this test on this cell (whatever its verdict)."""
        scenario = scenario_of(test, cell)
        return _match(cell, self.cell) and (_match(test, self.test)
                                             or _match(scenario, self.test))

    def covers(self, record: Record, cell: str) -> bool:
        """Whether the entry expects this record: its verdict, test, cell and splat."""
        if record.verdict not in self.verdicts or not self.matches(record.test, cell):
            return False
        if not self.splat:
            return True
        titles = [str(s.get("title") or "") for s in record.splats if isinstance(s, dict)]
        return any(fnmatch.fnmatchcase(t, self.splat) for t in titles)

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["expires"] = self.expires.isoformat()
        data["verdicts"] = list(self.verdicts)
        return data

    def same(self, data: Any) -> bool:
        """Whether ``data`` (a record's ``known_issue``) is this entry."""
        return isinstance(data, dict) and all(
            data.get(k) == v for k, v in self.to_dict().items()
            if k in ("test", "cell", "url", "expires"))


def from_dict(data: dict[str, Any]) -> KnownIssue:
    """An entry as ``to_dict`` wrote it (summary.json, a record's ``known_issue``)."""
    return KnownIssue(
        test=str(data.get("test", "")), url=str(data.get("url", "")),
        expires=dt.date.fromisoformat(str(data.get("expires") or "1970-01-01")),
        cell=str(data.get("cell", "")),
        verdicts=tuple(str(v) for v in data.get("verdicts") or ()),
        splat=str(data.get("splat") or ""), intermittent=bool(data.get("intermittent")),
        note=str(data.get("note") or ""), wildcard_reason=str(data.get("wildcard_reason") or ""))


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


def _check_date(value: Any, where: str, today: dt.date) -> dt.date:
    date: dt.date | None = None
    if isinstance(value, dt.datetime):
        date = value.date()
    elif isinstance(value, dt.date):
        date = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            date = dt.date.fromisoformat(value)
    if date is None:
        raise UserError(f"{where}: expires {value!r} is not a date; write expires = YYYY-MM-DD "
                        "(e.g. 2027-03-01)")
    if date > today + MAX_AHEAD:
        raise UserError(f"{where}: expires {date} is more than a year ahead; give a date by "
                        f"{today + MAX_AHEAD} and renew it then if the issue is still open")
    return date


def _check_verdicts(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v in _COVERABLE for v in value):
        raise UserError(f"{where}: verdicts {value!r} must list the verdicts it covers, of "
                        f"{', '.join(_COVERABLE)} (e.g. verdicts = [\"FAIL\"])")
    return tuple(v for v in _COVERABLE if v in value)


def parse(text: str, *, origin: str, today: dt.date | None = None) -> list[KnownIssue]:
    """The entries of a known-issues file; UserError naming the entry and the field."""
    today = today or dt.date.today()
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
        for key in _REQUIRED:
            if key not in entry:
                raise UserError(f"{where}: {key} is missing ({', '.join(_REQUIRED)} are "
                                "needed)")
        url = entry["url"]
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise UserError(f"{where}: url {url!r} must be an http(s) URL where it is tracked")
        intermittent = entry.get("intermittent", False)
        if not isinstance(intermittent, bool):
            raise UserError(f"{where}: intermittent must be true or false")
        test = _check_glob(entry["test"], where, "test")
        cell = _check_glob(entry["cell"], where, "cell")
        reason = entry.get("wildcard_reason", "")
        if not isinstance(reason, str):
            raise UserError(f"{where}: wildcard_reason must be a sentence")
        wild = [k for k, v in (("test", test), ("cell", cell)) if _is_glob(v)]
        if wild and not reason.strip():
            raise UserError(f"{where}: {wild[0]} {entry[wild[0]]!r} is a wildcard; name the "
                            "test and cell, or say why every match is this issue in "
                            "wildcard_reason = \"...\"")
        splat_glob = entry.get("splat", "")
        if splat_glob != "":
            splat_glob = _check_glob(splat_glob, where, "splat")
        out.append(KnownIssue(
            test=test, cell=cell, verdicts=_check_verdicts(entry["verdicts"], where),
            splat=splat_glob, url=url, expires=_check_date(entry["expires"], where, today),
            intermittent=intermittent, note=str(entry.get("note", "")),
            wildcard_reason=reason))
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


def match(issues: list[KnownIssue], record: Record, *,
          today: dt.date) -> KnownIssue | None:
    """The first unexpired entry that covers ``record`` (lab.results.compare's cell)."""
    cell = record.cell
    return next((i for i in issues if not i.expired(today) and i.covers(record, cell)), None)


def expired(issues: list[KnownIssue], today: dt.date) -> list[KnownIssue]:
    return [i for i in issues if i.expired(today)]


def expired_line(issue: KnownIssue) -> str:
    """The line a run prints for an expired entry."""
    return (f"known issue expired on {issue.expires}: {issue.test} on {issue.cell} "
            f"({issue.url}); it matches nothing now: renew or remove it in {FILE}")


def unmatched(issues: Sequence[KnownIssue], records: Iterable[Record], *,
              today: dt.date) -> list[KnownIssue]:
    """The unexpired entries no record of the run was turned into XFAIL by."""
    used = [r.data.get("known_issue") for r in records if r.verdict == Verdict.XFAIL]
    return [i for i in issues if not i.expired(today) and not any(i.same(u) for u in used)]


def unmatched_line(issue: KnownIssue) -> str:
    """The line a run prints for an entry that matched nothing in it."""
    return (f"known issue matched nothing in this run: {issue.test} on {issue.cell} "
            f"({'/'.join(issue.verdicts)}{', splat ' + issue.splat if issue.splat else ''}; "
            f"{issue.url}): fixed, or narrower than it says? remove or correct it in {FILE}")


def apply(record: Record, issues: list[KnownIssue], *, today: dt.date) -> Record:
    """``record`` with a failure that a known issue covers turned into XFAIL.

    The original verdict and the entry stay in ``data["known_issue"]``.
    """
    if record.verdict not in FAILED:
        return record
    issue = match(issues, record, today=today)
    if issue is None:
        return record
    data = {**record.data, "known_issue": {**issue.to_dict(), "verdict": record.verdict}}
    return replace(record, verdict=Verdict.XFAIL.value, data=data,
                   reason=f"known issue {issue.url}: {record.verdict}: {record.reason}")
