"""The nightly workflow's last step: the night's step summary, its annotations, its verdict.

``python -m lab.results.nightly MERGED --baseline PREVIOUS --merge-status N
--compare-status N`` (.github/workflows/nightly.yml) writes Markdown to
``$GITHUB_STEP_SUMMARY`` (standard output without it): what ``lab merge`` and
``lab compare`` said, the counts per verdict and cell, the regressions and the lost
checks with the command that reproduces each, and where report.html is.  It prints
a ``::error::`` line (a GitHub annotation) for the merge's and the comparison's
failures, for each regression (the first few) and for each cell that lost checks, and
exits 1 when the night failed:
a merge that did not exit 0 (1 a test failed, 3 the machinery, MISS among it; 4
nothing tested; 2 nothing merged) or a comparison that did not exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from lab.errors import RUN_EXIT_CODES, LabError
from lab.results import known
from lab.results import report as report_mod
from lab.results.verdict import VERDICTS

MERGE_WORDS = {**RUN_EXIT_CODES, 2: "nothing was merged (no shard uploaded, or they do not "
                                    "fit together): the log of `lab merge` says why"}


def annotation(title: str, message: str) -> str:
    """A GitHub ``::error::`` line, its properties and message escaped as Actions wants."""
    def esc(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    prop = esc(title).replace(":", "%3A").replace(",", "%2C")
    return f"::error title={prop}::{esc(message)}"


def _status(text: str) -> int | None:
    return int(text) if text.strip().lstrip("-").isdigit() else None


def _counts(records: list[Any]) -> list[str]:
    cells = list(dict.fromkeys(r.cell for r in records))
    seen = [v for v in VERDICTS if any(r.verdict == v for r in records)]
    per = {c: Counter(r.verdict for r in records if r.cell == c) for c in cells}
    total = Counter(r.verdict for r in records)
    lines = ["| cell | " + " | ".join(seen) + " |", "|---" * (len(seen) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(str(per[c][v]) for v in seen) + " |" for c in cells]
    lines.append("| **all** | " + " | ".join(f"**{total[v]}**" for v in seen) + " |")
    return lines


def _listed(title: str, entries: list[dict[str, Any]]) -> list[str]:
    out = [f"### {title}: {len(entries)}", ""]
    for e in entries:
        change = f"{e['before'] or 'none'} → {e['after'] or 'none'}"
        out.append(f"- `{e['scenario']}` on `{e['cell']}`: {change}"
                   + (f": {e['reason']}" if e.get("reason") else ""))
        if e.get("reproducer"):
            out.append(f"  - reproduce: `{e['reproducer']}`")
    return [*out, ""]


# GitHub shows at most 10 error annotations of a step: the rest are in the summary.
MAX_REGRESSIONS = 5


def _annotated(regressions: list[dict[str, Any]], lost: list[dict[str, Any]]) -> list[str]:
    """One annotation per regression (the first few), one per cell that lost checks."""
    out = [annotation(f"regression: {e['cell']}",
                      f"{e['scenario']}: {e['before'] or 'none'} -> {e['after'] or 'none'}"
                      + (f"; reproduce: {e['reproducer']}" if e.get("reproducer") else ""))
           for e in regressions[:MAX_REGRESSIONS]]
    if len(regressions) > MAX_REGRESSIONS:
        out.append(annotation("regressions", f"{len(regressions) - MAX_REGRESSIONS} more "
                              "regressions: see the step summary"))
    for cell in dict.fromkeys(e["cell"] for e in lost):
        mine = [e for e in lost if e["cell"] == cell]
        changes = Counter(f"{e['before'] or 'none'} -> {e['after'] or 'none'}" for e in mine)
        out.append(annotation(f"lost checks: {cell}", f"{len(mine)} checks lost ("
                              + ", ".join(f"{n} {c}" for c, n in changes.items())
                              + f"), e.g. {mine[0]['scenario']}; see the step summary"))
    return out


def night(merged: Path, *, baseline: Path | None, merge_status: int | None,
          compare_status: int | None, issues: list[known.KnownIssue],
          report_at: str = "") -> tuple[str, list[str], bool]:
    """The summary (Markdown), the annotations and whether the night failed."""
    md = ["## kernel-lab nightly", ""]
    errors: list[str] = []
    if merge_status is None:
        md.append("`lab merge` did not run.")
        errors.append(annotation("lab merge", "lab merge did not run"))
    else:
        words = MERGE_WORDS.get(merge_status, "unknown status")
        md.append(f"`lab merge` exited {merge_status}: {words}.")
        if merge_status != 0:
            errors.append(annotation("lab merge", f"lab merge exited {merge_status}: {words}"))
    md.append("")
    run = None
    if (merged / "results.jsonl").is_file():
        run = report_mod.load_run(merged, what="merged run")
        md += [f"{len(run.records)} results:", "", *_counts(run.records), ""]
        at = f"{report_at}: artifact `nightly-merged`, " if report_at else ""
        md += [f"report.html: {at}`{merged.name}/report.html`", ""]
    base_run = None
    if baseline is not None and (baseline / "results.jsonl").is_file():
        base_run = report_mod.load_run(baseline, what="baseline")
    if run is not None and base_run is not None:
        ctx = report_mod.context(run, baseline=base_run, issues=issues)
        comparison = ctx["comparison"]
        md.append(f"Compared with the newest earlier night's merged run ({baseline}).")
        md.append("")
        regressions = comparison.get("regressions") or []
        lost = comparison.get("lost") or []
        md += _listed("Regressions", regressions) + _listed("Lost checks", lost)
        errors += _annotated(regressions, lost)
        counts = ", ".join(f"{len(comparison.get(k) or [])} {words}" for k, words in (
            ("fixes", "fixed"), ("still_failing", "still failing"), ("added", "added"),
            ("removed", "removed")))
        md += [counts + ".", ""]
    elif run is not None:
        md += ["No earlier night left a merged run: nothing to compare with.", ""]
    if compare_status not in (None, 0):
        md.append(f"`lab compare` (or `lab report`) exited {compare_status}.")
        errors.append(annotation("lab compare", f"lab compare exited {compare_status}: "
                                 "see the step `Report and compare`"))
    failed = merge_status != 0 or compare_status not in (None, 0)
    md.append(f"**The night {'failed' if failed else 'passed'}.**")
    return "\n".join(md) + "\n", errors, failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.results.nightly",
                                description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("merged", type=Path)
    p.add_argument("--baseline", type=Path)
    p.add_argument("--merge-status", default="", help="lab merge's exit status ('' not run)")
    p.add_argument("--compare-status", default="",
                   help="the report and compare step's status ('' not run)")
    p.add_argument("--known-issues", type=Path)
    p.add_argument("--report-at", default="", help="where the merged run's artifact is (URL)")
    args = p.parse_args(argv)
    try:
        issues = known.load(known.path_for(args.known_issues))
        text, errors, failed = night(
            args.merged, baseline=args.baseline, merge_status=_status(args.merge_status),
            compare_status=_status(args.compare_status), issues=issues,
            report_at=args.report_at)
    except LabError as exc:
        print(annotation("nightly summary", str(exc)))
        return 1
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text, end="")
    for line in errors:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
