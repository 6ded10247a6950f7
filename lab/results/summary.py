"""A run's summary: counts by verdict, spec deviations, phase times; the closing lines."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab import atomic
from lab.errors import EXIT_NOTHING_TESTED
from lab.results import claims as claims_mod
from lab.results import known, matrixfile, reproduce
from lab.results.record import (
    Record,
    phase_times,
    read_findings,
    read_records,
    read_stop,
    read_timeline,
)
from lab.results.text import printable
from lab.results.verdict import FAILED, TESTED, UNTESTED, VERDICTS, Verdict, exit_code

# The failures the closing lines give a reproducer for (summary.json has them all).
SHOWN_REPRODUCERS = 5


def summarize(run_dir: Path, *, wall: float | None = None,
              issues: Sequence[known.KnownIssue] | None = None) -> dict[str, Any]:
    """Counts by verdict, spec deviations and phase times; also written to summary.json.
    With the run's known ``issues``: those that matched nothing in it, and the expired."""
    records = read_records(run_dir)
    counts = Counter(r.verdict for r in records)
    summary = {
        "run_dir": str(run_dir),
        "counts": {v: counts.get(v, 0) for v in VERDICTS},
        "deviations": _notes(records, "deviations"),
        "phases": phase_times(run_dir),
        "wall": wall,
        "kernels": sorted({r.kernel.get("spec", "?") for r in records}),
        "skip_reasons": dict(Counter(r.reason for r in records
                                     if r.verdict == Verdict.SKIP).most_common()),
        "observed": _notes(records, "observed"),
        "inconclusive": [{"test": r.test, "reason": r.reason} for r in records
                         if r.verdict == Verdict.INCONCLUSIVE],
        "substitutions": sorted({r.kernel["note"] for r in records if r.kernel.get("note")}),
        "stopped": (read_stop(run_dir) or {}).get("reason", ""),
        "accelerators": accelerators(records),
        "repeated": repeated(records),
        "bugs": bugs(records),
        **reproducers(run_dir, records),
        "exit_code": exit_code(r.verdict for r in records),
        "claims": claim_counts(records, claims_mod.load_catalogue(run_dir)),
        # What the kernel printed that no test's verdict holds (lab.run.aftermath).
        "findings": [{k: f.get(k) for k in ("kernel", "title", "test", "why")}
                     for f in read_findings(run_dir)],
    }
    if issues is not None:
        today = dt.date.today()
        summary["known_issues"] = {
            "unmatched": [i.to_dict() for i in known.unmatched(issues, records, today=today)],
            "expired": [i.to_dict() for i in known.expired(list(issues), today)]}
    atomic.write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _notes(records: list[Record], attr: str) -> list[dict[str, Any]]:
    """Each test's deviations (or observed values), once however often it ran (--repeat)."""
    seen: dict[tuple[str, str], Any] = {}
    for r in records:
        for note in getattr(r, attr):
            seen.setdefault((r.test, json.dumps(note, sort_keys=True, default=str)), note)
    return [{"test": test, "note": note} for (test, _), note in seen.items()]


def reproducers(run_dir: Path, records: list[Record]) -> dict[str, Any]:
    """Each failed or unrun test's reproducer (lab.results.reproduce), and the command
    that runs them all again."""
    m = matrixfile.read(run_dir)
    make = reproduce.maker(records, matrix=m)
    bad = {v.value for v in FAILED | UNTESTED}
    out: dict[str, str] = {}
    for r in records:
        if r.verdict in bad and r.test not in out:
            out[r.test] = make(r)
    rerun = f"lab rerun {run_dir} --failed" if out and m is not None else ""
    return {"reproducers": out, "rerun": rerun}


def repeated(records: list[Record]) -> list[dict[str, Any]]:
    """Each repeated test (`--repeat N`): its verdict per repetition and, for a race, the
    share of rounds in which the racing calls overlapped (the record's ``overlap``)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r.repeat:
            groups.setdefault((r.cell, r.test), []).append(r)
    out = []
    for (cell, test), recs in groups.items():
        recs.sort(key=lambda r: r.repeat)
        overlap = [r.data.get("overlap", {}).get("rate") if isinstance(
            r.data.get("overlap"), dict) else None for r in recs]
        out.append({"test": test, "cell": cell, "repeats": [r.repeat for r in recs],
                    "verdicts": [r.verdict for r in recs],
                    **({"overlap": overlap} if any(o is not None for o in overlap) else {})})
    return out


def bugs(records: list[Record]) -> list[dict[str, Any]]:
    """The kernel's reports grouped by signature (a splat's title: no addresses, no PIDs),
    each with every test that showed it: one bug, N tests.  The worst first, then the
    most tests; a test's later repetitions count once.  A debug kernel that keeps going
    on a real bug (kasan_multi_shot) fails every test that hits it, and this says it is
    one bug, not N."""
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        for s in r.splats:
            title = str(s.get("title") or s.get("kind") or "?")
            g = groups.setdefault(title, {"title": title, "kind": str(s.get("kind", "")),
                                          "fatal": False, "tests": [], "_seen": set()})
            g["fatal"] = g["fatal"] or bool(s.get("fatal"))
            if (r.cell, r.test) not in g["_seen"]:
                g["_seen"].add((r.cell, r.test))
                g["tests"].append({"test": r.test, "cell": r.cell, "verdict": r.verdict})
    out = []
    for g in groups.values():
        del g["_seen"]
        out.append({**g, "n": len(g["tests"])})
    out.sort(key=lambda g: (not g["fatal"], -g["n"], g["title"]))
    return out


def describe_accel(accel: dict[str, Any]) -> str:
    """A record's accelerator in words: "TCG, multi-threaded: KVM unusable: ..."."""
    return f"{accel.get('mode') or accel.get('name', '?')}: {accel.get('reason', '')}"


def accelerators(records: list[Record]) -> dict[str, list[str]]:
    """What each cell's guests ran on and why (a cell booted again single-threaded after
    an oops has two), in the order seen; a cell none of whose tests had a guest is absent."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r.accel:
            seen = out.setdefault(r.cell, [])
            text = describe_accel(r.accel)
            if text not in seen:
                seen.append(text)
    return out


# A boot is listed at the end of a run when it took longer than this many times plain
# `vng --exec true` on the host: the lab's own steps (agent, SSH, NVMe) cost that much.
BOOT_GOAL_RATIO = 1.5
# `vng --exec true` on debian:7.2 under TCG here (FACTS.md: 4.9-5.5 s), until
# `nox -s bench` has measured this host (lab.bench writes <cache>/bench/baseline.json).
DEFAULT_VNG_S = 5.2


def slow_boots(run_dir: Path, *, vng_s: float = DEFAULT_VNG_S) -> list[str]:
    """One line per slow boot (see BOOT_GOAL_RATIO): its time to the agent's hello and
    where the time went (its three longest steps)."""
    goal = BOOT_GOAL_RATIO * vng_s
    lines: list[str] = []
    for vm, events in read_timeline(run_dir).items():
        ready = next((e["host_s"] for e in events if e["event"] == "hello"), None)
        if ready is None or ready <= goal:
            continue
        gaps = sorted(((f"{a['event']} -> {b['event']}", b["host_s"] - a["host_s"])
                       for a, b in itertools.pairwise(events)), key=lambda g: -g[1])
        lines.append(f"slow boot {vm}: {ready:.1f} s to the agent (a bare virtme-ng boot "
                     f"takes {vng_s:.1f} s here); longest steps: "
                     + ", ".join(f"{name} {s:.1f} s" for name, s in gaps[:3]))
    return lines


def claim_counts(records: list[Record], catalogue: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Claims checked, with deviations, not checkable (lab.results.claims); without the
    run's catalogue only what the records tell, and ``not_checkable`` None."""
    if catalogue is not None:
        counts: dict[str, Any] = dict(claims_mod.audit(records, catalogue)["counts"])
        counts["catalogue"] = True
        return counts
    cited = [r for r in records if r.claim]
    return {"checked": len({r.claim for r in cited if r.verdict in TESTED}),
            "deviations": len({r.claim for r in cited if r.deviations}),
            "not_checkable": None, "catalogue": False}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The human summary printed at the end of a run."""
    counts = summary["counts"]
    lines = ["verdicts: " + (", ".join(f"{n} {v}" for v, n in counts.items() if n) or "none")]
    if summary["exit_code"] == EXIT_NOTHING_TESTED:
        lines.append("nothing was tested: every selected test was skipped; the reasons:")
        lines += [f"  {n} x {why}" for why, n in summary.get("skip_reasons", {}).items()]
    accels = summary.get("accelerators") or {}
    texts = {t for ts in accels.values() for t in ts}
    if len(texts) == 1:
        lines.append(f"accelerator: {texts.pop()}")
    else:
        lines += [f"accelerator [{cell}]: {'; then '.join(ts)}" for cell, ts in accels.items()]
    phases = summary["phases"]
    if phases:
        lines.append("phases: " + ", ".join(f"{p} {s:.1f}s" for p, s in phases.items()))
    if summary.get("stopped"):
        notrun = counts.get(Verdict.NOTRUN, 0)
        lines.append(f"the run was cut short ({notrun} tests not run): {summary['stopped']}")
    lines += [f"kernel substituted: {note}" for note in summary.get("substitutions", [])]
    claims = summary.get("claims")
    if claims:
        line = (f"claims: {claims['checked']} checked, {claims['deviations']} with a "
                f"deviation from their source")
        if claims.get("not_checkable") is not None:
            line += (f", {claims['not_checkable']} not checkable from userspace "
                     f"(of {claims['claims']} listed; {claims['not_run']} not run)")
        lines.append(line)
    found = summary.get("bugs") or []
    if found:
        lines.append(f"kernel reports: {len(found)} distinct "
                     f"(by signature; {sum(b['n'] for b in found)} tests showed one)")
        for b in found[:SHOWN_REPRODUCERS]:
            cells = sorted({t["cell"] for t in b["tests"]})
            lines.append(f"  - {b['title']}: {b['n']} test{'s' if b['n'] != 1 else ''} "
                         f"on {', '.join(cells)}")
        if len(found) > SHOWN_REPRODUCERS:
            lines.append(f"  ({len(found) - SHOWN_REPRODUCERS} more in summary.json)")
    devs = summary["deviations"]
    lines.append(f"spec deviations: {len(devs)}")
    lines += [f"  - {d['test']}: {d['note']}" for d in devs]
    for rep in summary.get("repeated", []):
        line = (f"repeated {rep['test']} x{len(rep['verdicts'])}: "
                + ", ".join(rep["verdicts"]))
        if "overlap" in rep:
            line += "; overlap " + ", ".join("?" if o is None else f"{o:.1%}"
                                             for o in rep["overlap"])
        lines.append(line)
    found = summary.get("findings", [])
    if found:
        lines.append(f"kernel log findings no test's verdict holds: {len(found)}")
        lines += [f"  - [{f['kernel']}] {f['title']}: {f['why']}" for f in found]
    undecided = summary.get("inconclusive", [])
    if undecided:
        lines.append(f"inconclusive (every check held, but it could not decide): "
                     f"{len(undecided)}")
        lines += [f"  - {d['test']}: {d['reason']}" for d in undecided]
    seen = summary.get("observed", [])
    if seen:
        lines.append(f"observed but unverified: {len(seen)}")
        lines += [f"  - {d['test']}: {d['note']}" for d in seen]
    repros = summary.get("reproducers") or {}
    for test, cmd in list(repros.items())[:SHOWN_REPRODUCERS]:
        lines.append(f"reproduce {test}: {cmd}")
    if len(repros) > SHOWN_REPRODUCERS:
        lines.append(f"({len(repros) - SHOWN_REPRODUCERS} more in summary.json)")
    if summary.get("rerun"):
        lines.append(f"run the failed and unrun tests again: {summary['rerun']}")
    issues = summary.get("known_issues") or {}
    lines += [known.unmatched_line(known.from_dict(i)) for i in issues.get("unmatched", [])]
    lines += [known.expired_line(known.from_dict(i)) for i in issues.get("expired", [])]
    if summary.get("wall") is not None:
        lines.append(f"wall time: {summary['wall']:.1f}s")
    lines.append(f"run directory: {summary['run_dir']}")
    return [printable(line) for line in lines]  # reasons and titles quote the kernel
