"""The run report: ``report.html``, one self-contained file, and the same difference as text.

Everything shown is first put in one plain context dict (strings, numbers,
lists), then rendered by jinja2 with autoescape on: an HTML template for
``lab report`` and a text template for ``lab compare`` (as SQUAD renders its
notifications).  The HTML carries its CSS inline and loads nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from lab import atomic
from lab.errors import UserError
from lab.options import GuestOptions
from lab.results import claims as claims_mod
from lab.results import known as known_mod
from lab.results import matrixfile, reproduce
from lab.results.cell import scenario_of
from lab.results.compare import Comparison, Key, Status, cell_of, compare, key_of, table
from lab.results.compare import exit_code as compare_exit_code
from lab.results.record import Record, read_lines, read_records
from lab.results.summary import bugs, describe_accel
from lab.results.text import printable
from lab.results.verdict import FAILED, UNTESTED, VERDICTS, Verdict, exit_code, worst

REPORT = "report.html"
# Shown in the failure list: what a person has to look at.
_NOTABLE = {v.value for v in FAILED | UNTESTED} | {Verdict.XFAIL.value}


@dataclass
class Run:
    """A run directory read back: records, phases, matrix, command, claims catalogue."""

    path: Path
    records: list[Record]
    phases: list[dict[str, Any]]
    matrix: matrixfile.Matrix | None
    command: str
    claims: list[dict[str, Any]] | None = None  # claims.json; None when the run wrote none


def load_run(path: Path, *, what: str = "run directory") -> Run:
    """A run directory's contents; a UserError when ``path`` is not one."""
    if not path.is_dir() or not ((path / "results.jsonl").is_file()
                                 or (path / matrixfile.MATRIX).is_file()):
        raise UserError(f"{what} {path} is not a lab run directory (no results.jsonl); "
                        "give a directory that `lab run` or `lab merge` wrote")
    matrixfile.check_format(path, what=what)
    command = (path / "command.txt").read_text().strip() if (path / "command.txt").is_file() \
        else ""
    try:
        catalogue = claims_mod.load_catalogue(path)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path / claims_mod.CLAIMS_FILE} is not a claims catalogue ({e}); "
                        "remove it or write it again with `lab run`") from e
    return Run(path=path, records=read_records(path), phases=read_lines(path / "phases.jsonl"),
               matrix=matrixfile.read(path), command=command, claims=catalogue)


# -- the context -------------------------------------------------------------------------


def _cells(run: Run) -> list[dict[str, Any]]:
    """The run's cells in the order given, with what their records say about the kernel."""
    order = run.matrix.cell_labels() if run.matrix else []
    seen: dict[str, list[Record]] = {label: [] for label in order}
    for r in run.records:
        seen.setdefault(cell_of(r), []).append(r)
    out = []
    for label, recs in seen.items():
        kernels = [r.kernel for r in recs if r.kernel]
        counts = Counter(r.verdict for r in recs)
        out.append({
            "label": label,
            "spec": next((str(k.get("spec")) for k in kernels), label),
            "variant": next((str(k.get("variant")) for k in kernels), ""),
            "releases": sorted({str(k.get("release")) for k in kernels if k.get("release")}),
            "config_hashes": sorted({str(k.get("config_hash")) for k in kernels
                                     if k.get("config_hash")}),
            # What the cell's guests ran on and why (two after a single-threaded retry).
            "accelerators": list(dict.fromkeys(describe_accel(r.accel) for r in recs
                                               if r.accel)),
            "counts": [{"verdict": v, "n": counts[v]} for v in VERDICTS if counts[v]],
            "worst": next((v for v in VERDICTS if counts[v]), ""),
        })
    return out


# What a failure entry's reproducer is made by: the record → the command.
Reproducer = Callable[[Record], str]


def reproducer(record: Record, *, guest: GuestOptions | None = None) -> str:
    """The command that runs this one test on this one cell again (lab.results.reproduce:
    the kernel pinned, the accelerator that ran, the guest's options, the node id)."""
    return reproduce.for_record(record, guest=guest or GuestOptions())


def _reproducer(run: Run) -> Reproducer:
    return reproduce.maker(run.records, matrix=run.matrix)


def _anchor(key: Key, prefix: str = "t") -> str:
    return f"{prefix}-" + "".join(ch if ch.isalnum() else "-" for ch in f"{key[0]}--{key[1]}")


def _link(key: Key, st: Status | None) -> str:
    """Where the report says more about this test: its failure entry, its inconclusive
    entry, or nowhere ("")."""
    if st is None:
        return ""
    if st.verdict in _NOTABLE:
        return _anchor(key)
    if st.verdict == Verdict.INCONCLUSIVE.value:
        return _anchor(key, "i")
    return ""


def _entry(key: Key, st: Status, *, repro: Reproducer) -> dict[str, Any]:
    r = st.record
    return {
        "anchor": _anchor(key), "cell": key[0], "scenario": key[1], "test": r.test,
        "verdict": st.verdict, "reason": r.reason, "confidence": st.confidence,
        "results": st.results, "claim": r.claim, "excerpt": r.excerpt,
        # Results that disagree (repetitions, a shard run twice): "FAIL 1/4", and each count.
        "flaky": st.shown if st.flaky else "",
        "counts": [{"verdict": v, "n": n} for v, n in st.counts.items()],
        "splats": [{"kind": str(s.get("kind", "")), "title": str(s.get("title", "")),
                    "excerpt": str(s.get("excerpt", "")),
                    # To file:line, where the kernel had DWARF (lab.kernel.decode).
                    "decoded": str(s.get("decoded") or "")} for s in r.splats],
        "known_issue": r.data.get("known_issue"),
        "reproducer": repro(r),
        "release": str(r.kernel.get("release") or ""),
    }


def _grid(run: Run, statuses: dict[Key, Status], cells: list[str]) -> list[dict[str, Any]]:
    order: dict[str, int] = {}
    if run.matrix:
        for cell, test in run.matrix.expected:
            order.setdefault(scenario_of(test, cell), len(order))
    for key in statuses:
        order.setdefault(key[1], len(order))
    rows: list[dict[str, Any]] = []
    for scenario in sorted(order, key=lambda s: (s.split("::")[0], order[s])):
        row = []
        for cell in cells:
            st = statuses.get((cell, scenario))
            row.append(None if st is None else {
                # the failure list or the inconclusive list has an entry for it
                "verdict": st.verdict, "anchor": _link((cell, scenario), st),
                "shown": st.shown,
                "title": f"{cell}: {st.shown}" + (f": {st.record.reason}"
                                                    if st.record.reason else "")})
        path, _, name = scenario.partition("::")
        first = not rows or rows[-1]["file"] != path
        rows.append({"scenario": scenario, "file": path, "first_in_file": first,
                     "name": name or scenario, "cells": row})
    return rows


def _note_text(note: Any) -> str:
    if isinstance(note, dict):
        return str(note.get("note") or note.get("text") or note)
    return str(note)


def _notes(records: list[Record], attr: str) -> list[dict[str, Any]]:
    """Deviations (or observed expectations) grouped by scenario and note, with their cells."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for r in records:
        for note in getattr(r, attr):
            cell, scenario = key_of(r)
            grouped.setdefault((scenario, _note_text(note)), set()).add(cell)
    return [{"scenario": s, "note": n, "cells": sorted(cells)}
            for (s, n), cells in sorted(grouped.items())]


def _bugs(run: Run, statuses: dict[Key, Status]) -> list[dict[str, Any]]:
    """The kernel's reports by signature (lab.results.summary.bugs), each test with the
    link to its entry (its failure, where it has one)."""
    out = []
    for b in bugs(run.records):
        tests = []
        for t in b["tests"]:
            key = (t["cell"], scenario_of(t["test"], t["cell"]))
            tests.append({**t, "scenario": key[1], "anchor": _link(key, statuses.get(key))})
        out.append({**b, "tests": tests})
    return out


def _inconclusive(run: Run, statuses: dict[Key, Status]) -> list[dict[str, Any]]:
    """Every test with an INCONCLUSIVE result (a race that could not show it raced), with
    its reasons: they fail nothing, so the report lists them (as the summary does)."""
    grouped: dict[Key, list[Record]] = {}
    for r in run.records:
        if r.verdict == Verdict.INCONCLUSIVE.value:
            grouped.setdefault(key_of(r), []).append(r)
    out = []
    for key, recs in sorted(grouped.items()):
        st = statuses[key]
        out.append({"anchor": _anchor(key, "i"), "cell": key[0], "scenario": key[1],
                    "test": recs[0].test, "verdict": st.verdict,
                    "inconclusive": len(recs), "results": st.results,
                    "reasons": sorted({r.reason for r in recs if r.reason}),
                    "release": str(recs[0].kernel.get("release") or "")})
    return out


def _share(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage, with a digit more when it would read 0.0%."""
    if not whole:
        return ""
    rate = part / whole
    return f"{rate:.2%}" if 0 < rate < 0.001 else f"{rate:.1%}"


def _races(run: Run, statuses: dict[Key, Status]) -> list[dict[str, Any]]:
    """Every result that measured how much its racing calls overlapped (a race test's
    ``overlap`` data, scenarios/races/conftest.py), whatever its verdict: how many rounds
    overlapped, the floor it needed, and the run's detection power."""
    out = []
    for r in run.records:
        ov = r.data.get("overlap")
        if not isinstance(ov, dict):
            continue
        key = key_of(r)
        rounds, overlapped = int(ov.get("rounds") or 0), int(ov.get("overlapped") or 0)
        power = ov.get("power")
        out.append({"cell": key[0], "scenario": key[1], "test": r.test,
                    "verdict": r.verdict, "repeat": r.repeat,
                    "anchor": _link(key, statuses.get(key)),
                    "rounds": rounds, "overlapped": overlapped,
                    "rate": _share(overlapped, rounds),
                    "floor": f"{ov.get('floor_rounds', '?')} and "
                             f"{float(ov.get('floor_rate') or 0):.1%}",
                    "power": "" if power is None else f"{float(power):.0%}",
                    "power_p": "" if ov.get("power_p") is None
                               else f"{float(ov['power_p']):g}"})
    return sorted(out, key=lambda e: (e["cell"], e["scenario"], e["repeat"]))


def _audit(run: Run, statuses: dict[Key, Status], cells: list[str]) -> dict[str, Any] | None:
    """The spec audit (lab.results.claims) laid out per cell; None without claims.json."""
    if run.claims is None:
        return None
    a = claims_mod.audit(run.records, run.claims)
    # The audit names a kernel by spec and variant; the report by cell label.
    cell_for = {claims_mod.kernel_label(r.kernel): cell_of(r) for r in run.records if r.claim}
    seen = {cell_for.get(label, label) for label in a["kernels"]}
    columns = [c for c in cells if c in seen] + sorted(seen - set(cells))
    rows = []
    for row in a["claims"]:
        per: dict[str, list[dict[str, Any]]] = {}
        for label, k in row["kernels"].items():
            per.setdefault(cell_for.get(label, label), []).append(k)
        verdicts: dict[str, dict[str, Any]] = {}
        for cell, ks in per.items():
            verdict = worst(k["verdict"] for k in ks)
            tests = sorted({t for k in ks for t in k["tests"]})
            reasons = sorted({x for k in ks for x in k["reasons"]})
            links = [link for t in tests if (link := _link(
                (cell, scenario_of(t, cell)), statuses.get((cell, scenario_of(t, cell)))))]
            verdicts[cell] = {
                "verdict": verdict, "anchor": links[0] if links else "",
                "title": f"{cell}: {verdict}" + "".join(f"\n{t}" for t in tests)
                         + "".join(f"\n{x}" for x in reasons)}
        deviations: dict[str, set[str]] = {}
        for cell, ks in per.items():
            for k in ks:
                for d in k["deviations"]:
                    deviations.setdefault(d, set()).add(cell)
        rows.append({
            "id": row["id"], "text": row["text"], "suite": row["suite"],
            "source_ref": row["source_ref"], "verdict": row["verdict"],
            "verdict_class": str(row["verdict"]).replace(" ", "-"),
            "not_checkable": row["not_checkable"],
            "expected_deviation": row["expected_deviation"],
            "deviations": [{"note": d, "cells": [c for c in columns if c in cs]}
                           for d, cs in sorted(deviations.items())],
            "cells": [verdicts.get(c) for c in columns],
        })
    return {"columns": columns, "claims": rows, "counts": a["counts"],
            "uncatalogued": a["uncatalogued"]}


def _phases(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[tuple[str, str], list[float]] = {}
    for p in phases:
        where = str(p.get("kernel") or "")
        if p.get("variant"):
            where += f"/{p['variant']}"
        totals.setdefault((str(p.get("phase")), where), []).append(float(p.get("seconds", 0)))
    return [{"phase": ph, "kernel": k, "seconds": round(sum(v), 1), "count": len(v),
             "longest": round(max(v), 1)} for (ph, k), v in sorted(totals.items())]


def _keys(keys: Sequence[Key], c: Comparison, *, repro: Reproducer) -> list[dict[str, Any]]:
    out = []
    for key in keys:
        new, base = c.new.get(key), c.base.get(key)
        shown = new or base
        assert shown is not None  # every key comes from one of the two runs
        entry = _entry(key, shown, repro=repro)
        entry["before"] = base.verdict if base else ""
        entry["after"] = new.verdict if new else ""
        entry["before_shown"] = base.shown if base else ""
        entry["after_shown"] = new.shown if new else ""
        out.append(entry)
    return out


def comparison_context(c: Comparison, *, base_name: str,
                       repro: Reproducer = reproducer) -> dict[str, Any]:
    return {
        "baseline": base_name,
        "has_regression": c.has_regression,
        "has_lost_coverage": c.has_lost_coverage,
        "exit_code": compare_exit_code(c),
        "regressions": _keys(c.regressions, c, repro=repro),
        "fixes": _keys(c.fixes, c, repro=repro),
        "cancelled_fixes": _keys(c.cancelled_fixes, c, repro=repro),
        "still_failing": _keys(c.still_failing, c, repro=repro),
        "lost": _keys(c.lost, c, repro=repro),
        "added": _keys(c.added, c, repro=repro),
        "removed": _keys(c.removed, c, repro=repro),
        "new_splats": [{"title": t, "tests": [{"cell": k[0], "scenario": k[1]} for k in keys]}
                       for t, keys in c.new_splats.items()],
        "unstable": [{"cell": k[0], "scenario": k[1], "verdicts": seq}
                     for k, seq in c.unstable.items()],
        "cells_added": c.cells_added,
        "cells_removed": c.cells_removed,
        "releases": [{"cell": cell, "before": b, "after": a}
                     for cell, (b, a) in c.releases.items()],
    }


def context(run: Run, *, baseline: Run | None = None, history: Sequence[Run] = (),
            issues: Sequence[known_mod.KnownIssue] = (), today: dt.date | None = None,
            now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain data."""
    today = today or dt.date.today()
    now = now or dt.datetime.now(dt.UTC)
    statuses = table(run.records)
    cells = _cells(run)
    labels = [c["label"] for c in cells]
    repro = _reproducer(run)
    counts = Counter(r.verdict for r in run.records)
    notable = [_entry(k, st, repro=repro) for k, st in sorted(
        statuses.items(), key=lambda kv: (VERDICTS.index(kv[1].verdict)
                                          if kv[1].verdict in VERDICTS else -1, kv[0]))
        if st.verdict in _NOTABLE]
    skips = Counter(r.reason for r in run.records if r.verdict == Verdict.SKIP.value)
    ctx: dict[str, Any] = {
        "title": f"kernel-lab report: {run.path.name}",
        "run": run.path.name,
        "generated": now.strftime("%Y-%m-%d %H:%M UTC"),
        "command": run.command,
        "shard": run.matrix.shard if run.matrix else None,
        "merged_from": run.matrix.merged_from if run.matrix else [],
        "exit_code": exit_code(r.verdict for r in run.records),
        "total": len(run.records),
        "counts": [{"verdict": v, "n": counts[v]} for v in VERDICTS if counts[v]],
        "verdicts": list(VERDICTS),
        "cells": cells,
        "grid": _grid(run, statuses, labels),
        "failures": notable,
        "audit": _audit(run, statuses, labels),
        "inconclusive": _inconclusive(run, statuses),
        "bugs": _bugs(run, statuses),
        "races": _races(run, statuses),
        "deviations": _notes(run.records, "deviations"),
        "observed": _notes(run.records, "observed"),
        "phases": _phases(run.phases),
        "skips": [{"reason": r, "n": n} for r, n in skips.most_common()],
        "expired_issues": [i.to_dict() for i in known_mod.expired(list(issues), today)],
        "unmatched_issues": [i.to_dict() for i in known_mod.unmatched(issues, run.records,
                                                                       today=today)],
        "comparison": None,
    }
    if baseline is not None:
        c = compare(baseline.records, run.records, issues=issues,
                    history=[h.records for h in history])
        ctx["comparison"] = comparison_context(c, base_name=str(baseline.path), repro=repro)
    return ctx


# -- rendering -----------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lab.results", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )


def render_html(ctx: dict[str, Any]) -> str:
    return _environment().get_template("report.html.j2").render(**ctx)


def render_text(ctx: dict[str, Any]) -> str:
    env = _environment()
    env.autoescape = False  # plain text for a terminal and $GITHUB_STEP_SUMMARY
    return printable(env.get_template("compare.txt.j2").render(**ctx))  # splats quoted


def write(run_dir: Path, *, baseline: Path | None = None, history: Sequence[Path] = (),
          issues: Sequence[known_mod.KnownIssue] = (), today: dt.date | None = None) -> Path:
    """Render ``run_dir/report.html`` (against ``baseline`` when given) and return its path.

    The baseline and history are read before anything is written.
    """
    run = load_run(run_dir)
    base = load_run(baseline, what="--baseline") if baseline is not None else None
    older = [load_run(h, what="--history") for h in history]
    html = render_html(context(run, baseline=base, history=older, issues=issues, today=today))
    return atomic.write_text(run_dir / REPORT, html)


BISECT_FILE = "bisect.json"  # lab.bisect writes it; its "report" entry is this section


def is_bisection(path: Path) -> bool:
    """A bisection's state directory (its journal), not a run directory."""
    return ((path / BISECT_FILE).is_file() or (path / "journal.jsonl").is_file()) and \
        not (path / "results.jsonl").is_file()


def write_bisection(state: Path, *, now: dt.datetime | None = None) -> Path:
    """Render ``state/report.html`` from ``state/bisect.json``: the bisection's section
    (title, summary lines, warnings, the path taken as one table) and its commands."""
    import json

    if not (state / BISECT_FILE).is_file():
        raise UserError(f"{state}: a bisection that has not finished (no {BISECT_FILE}); "
                        f"go on with `lab bisect --resume {state}`")
    try:
        data = json.loads((state / BISECT_FILE).read_text())
        section = data["report"]
        ctx = {"title": section["title"], "summary": list(section["summary"]),
               "warnings": list(section["warnings"]), "table": section["table"],
               "reproducer": data.get("reproducer") or "",
               "next_command": data.get("next_command") or "", "state": str(state),
               "generated": (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")}
        html = _environment().get_template("bisect.html.j2").render(**ctx)
    except (OSError, ValueError, KeyError, TypeError, jinja2.UndefinedError) as exc:
        raise UserError(f"{state / BISECT_FILE}: not a bisection's result ({exc}); "
                        "give a directory `lab bisect` finished in") from None
    return atomic.write_text(state / REPORT, html)
