"""The splat kinds table and the golden logs hold each other: an entry is one kind, and
each kind (each of its forms) is shown by at least one real report in tests/golden/splats."""

from __future__ import annotations

import functools
import json
import string
from pathlib import Path

import pytest

from lab.results.splat import line_body
from lab.results.splat_kinds import (
    HANG_KINDS,
    TABLE,
    Form,
    Kind,
    detectors_off,
    match_first_line,
)

GOLDEN = Path(__file__).parent / "golden" / "splats"
LOGS = sorted(GOLDEN.glob("*.log"))
FORMS = [(kind, form) for kind in TABLE for form in kind.forms]


def _golden_kinds() -> dict[str, set[str]]:
    """Golden log name -> the kinds its .json says it holds."""
    return {log.stem: set(json.loads(log.with_suffix(".json").read_text(encoding="utf-8"))
                          ["kinds"]) for log in LOGS}


def _kinds_without_a_log(table: tuple[Kind, ...], golden: dict[str, set[str]]) -> list[str]:
    shown = set().union(*golden.values())
    return [kind.name for kind in table if kind.name not in shown]


@functools.cache
def _first_lines() -> list[tuple[str, Kind, Form]]:
    """Every golden line that is some kind's first line, with the form it fits."""
    found = []
    for log in LOGS:
        for line in log.read_text(encoding="utf-8").splitlines():
            hit = match_first_line(line_body(line))
            if hit is not None:
                found.append((log.stem, hit[0], hit[1]))
    return found


def test_every_entry_has_a_golden_log() -> None:
    assert _kinds_without_a_log(TABLE, _golden_kinds()) == []


def test_every_golden_logs_kind_has_an_entry() -> None:
    names = {kind.name for kind in TABLE}
    for log, kinds in _golden_kinds().items():
        assert kinds <= names, f"{log}.json names kinds with no entry: {sorted(kinds - names)}"


def test_an_entry_without_a_log_is_found() -> None:
    new = Kind("NEW", (Form(r"^NEW: (?P<what>.*)", "NEW: {what}", "{what}"),))
    assert _kinds_without_a_log((*TABLE, new), _golden_kinds()) == ["NEW"]


@pytest.mark.parametrize(("kind", "form"), FORMS,
                         ids=[f"{k.name}:{f.title}" for k, f in FORMS])
def test_every_form_has_a_golden_log(kind: Kind, form: Form) -> None:
    assert any(f is form for _, _, f in _first_lines()), (
        f"no golden log has a first line of {kind.name}'s form {form.pattern!r}")


def test_no_golden_first_line_fits_two_forms() -> None:
    # Table order breaks ties; on real reports there are none to break.
    for log in LOGS:
        for line in log.read_text(encoding="utf-8").splitlines():
            body = line_body(line).lstrip()
            fits = [f.pattern for _, f in FORMS if f.regex.match(body)]
            assert len(fits) <= 1, (log.name, line, fits)


def _fields(fmt: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}


@pytest.mark.parametrize(("kind", "form"), FORMS,
                         ids=[f"{k.name}:{f.title}" for k, f in FORMS])
def test_formats_name_only_the_patterns_groups(kind: Kind, form: Form) -> None:
    groups = set(form.regex.groupindex)
    assert _fields(form.title) <= groups | {"rw"}, form.title
    if isinstance(form.detail, str):
        assert _fields(form.detail) <= groups, form.detail
    if form.skip_in_stack:
        assert form.skip, "skip_in_stack without frames to skip"


def test_names_are_unique_and_kinds_that_echo_a_crash_count() -> None:
    assert len({kind.name for kind in TABLE}) == len(TABLE)
    for kind in TABLE:
        if kind.echoes_crash:
            assert all("count" in f.regex.groupindex for f in kind.forms), kind.name


def test_what_silences_which_detector_is_read_from_the_entries() -> None:
    assert detectors_off({"WARNING", "UBSAN"}, ()) == ("", "")
    assert detectors_off({"KASAN", "WARNING"}, ()) == ("KASAN", "")
    assert detectors_off({"KASAN"}, ["kasan_multi_shot"]) == ("", "LOCKDEP")
    assert detectors_off({"KASAN", "HUNG_TASK"}, ("kasan_multi_shot",)) == ("HUNG_TASK", "")
    assert detectors_off({"WQ_LOCKUP", "LOCKDEP"}, ()) == ("LOCKDEP, WQ_LOCKUP", "")


def test_the_kinds_that_say_a_test_hung_are_the_stalls() -> None:
    """A test cut short whose window shows one of these is HANG (lab.run.records.unfinished)."""
    assert {"HUNG_TASK", "SOFT_LOCKUP", "RCU_STALL", "WQ_LOCKUP"} == HANG_KINDS
