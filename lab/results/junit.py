"""JUnit with one testsuite per cell, from pytest's junit.xml and the run's records.

pytest writes one ``<testsuite name="pytest">``.  A CI viewer groups by suite,
so the lab regroups the test cases by their record's cell, keeping each case as
pytest wrote it (failure text included), with three changes: the "@group" that
xdist appends to names is dropped, a failure a known issue expects (XFAIL)
becomes ``<skipped type="lab.xfail">`` with the original text, and a test of the
matrix that no shard reported (MISS) gets a case with ``<error type="lab.miss">``.
A case's properties are the readable ones from its record (``lab_deviation`` and
``lab_observed``, one per note, ``lab_data``, one per measurement), never the
whole evidence the Recorder reads (lab.results.evidence: big, and for the lab).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from lab import atomic
from lab.results.cell import split_repeat
from lab.results.evidence import KEY as EVIDENCE_KEY
from lab.results.record import Record
from lab.results.verdict import Verdict

_GROUP_SUFFIX = re.compile(r"@c\d+s\d+$")


def address(test: str) -> tuple[str, str]:
    """(classname, name) that pytest's junitxml gives a test id (mangle_test_address)."""
    path, bracket, params = test.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def cases(xml_text: str) -> list[ET.Element]:
    """Every <testcase> of a JUnit document, names without xdist's "@group"."""
    root = ET.fromstring(xml_text)
    out = []
    for case in root.iter("testcase"):
        case.set("name", _GROUP_SUFFIX.sub("", case.get("name", "")))
        out.append(case)
    return out


def _xfail(case: ET.Element, record: Record) -> None:
    for child in list(case):
        if child.tag in ("failure", "error"):
            case.remove(child)
            skipped = ET.SubElement(case, "skipped", type="lab.xfail",
                                    message=record.reason[:500])
            skipped.text = (child.get("message", "") + "\n" + (child.text or "")).strip()


_NOTES = ("lab_deviation", "lab_observed", "lab_data")


def _properties(case: ET.Element, record: Record | None) -> None:
    """The case's properties as a reader wants them: the evidence out, the notes in."""
    # A case regrouped before (lab merge) has the record's notes already: written anew.
    dropped = {EVIDENCE_KEY, *(_NOTES if record is not None else ())}
    for group in case.findall("properties"):
        for prop in group.findall("property"):
            if prop.get("name") in dropped:
                group.remove(prop)
    if record is not None:
        props = case.find("properties")
        if props is None:
            # Before what pytest puts after properties (failure, output).
            props = ET.Element("properties")
            case.insert(0, props)
        # As pytest wrote the lab's user properties before the evidence (str of each).
        found = [("lab_deviation", text) for text in record.deviations]
        found += [("lab_observed", text) for text in record.observed]
        found += [("lab_data", str({key: value})) for key, value in record.data.items()]
        for name, value in found:
            ET.SubElement(props, "property", name=name, value=value)
    for group in case.findall("properties"):
        if not len(group):
            case.remove(group)


def _miss(record: Record) -> ET.Element:
    classname, name = address(record.test)
    case = ET.Element("testcase", classname=classname, name=name, time="0.000")
    err = ET.SubElement(case, "error", type="lab.miss", message=record.reason[:500])
    err.text = record.reason
    return case


def regroup(all_cases: Iterable[ET.Element], records: list[Record], *,
            cell_order: list[str]) -> str:
    """One JUnit document: a testsuite per cell (in ``cell_order``, then any others)."""
    # A repetition's case is named with its parameter; its record keeps the test's id and
    # says which repetition it is (lab.results.cell.split_repeat).
    by_address = {(*address(r.test), r.repeat): r for r in records}
    suites: dict[str, list[ET.Element]] = {c: [] for c in cell_order}
    seen: set[tuple[str, str]] = set()
    for case in all_cases:
        key = (case.get("classname", ""), case.get("name", ""))
        if key in seen:
            continue  # the same test from two inputs: the record already resolved it
        seen.add(key)
        classname, name = key
        plain, repeat = split_repeat(name)
        record = by_address.get((classname, plain, repeat))
        if record is not None and record.verdict == Verdict.XFAIL.value:
            _xfail(case, record)
        _properties(case, record)
        suites.setdefault(record.cell if record else "", []).append(case)
    for r in records:
        if r.verdict == Verdict.MISS.value and address(r.test) not in seen:
            suites.setdefault(r.cell, []).append(_miss(r))
    root = ET.Element("testsuites")
    for name, members in suites.items():
        if not members:
            continue
        suite = ET.SubElement(root, "testsuite", name=name or "(no cell)")
        counts = {tag: sum(1 for c in members if c.find(tag) is not None)
                  for tag in ("failure", "error", "skipped")}
        suite.set("tests", str(len(members)))
        suite.set("failures", str(counts["failure"]))
        suite.set("errors", str(counts["error"]))
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", f"{sum(float(c.get('time') or 0) for c in members):.3f}")
        suite.extend(members)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def rewrite(run_dir: Path, records: list[Record], *, cell_order: list[str]) -> None:
    """Regroup ``run_dir/junit.xml`` in place (atomically); nothing when pytest wrote none."""
    path = run_dir / "junit.xml"
    if not path.is_file():
        return
    try:
        found = cases(path.read_text())
    except ET.ParseError:
        return  # a run killed while pytest wrote it: keep what is there
    atomic.write_text(path, regroup(found, records, cell_order=cell_order))
