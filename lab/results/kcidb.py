"""A run as KernelCI's KCIDB report data (schema v5.3): checkouts, builds, tests, issues, incidents.

The mapping:

- a checkout per kernel source (a Debian package version, a source tree's release);
- a build per cell (kernel spec x variant, with its config hash): prebuilt
  kernels were built by Debian, the record says which package;
- a test per record, its path the scenario without the cell (``kernel_lab.aio.
  test_io_submit.test_x``), its status by what our verdict says about the code
  and the harness (below);
- an issue per splat signature (its title) and per known issue (its URL), and an
  incident linking each test to each issue it showed.

Verdict → KCIDB status: FAIL, CRASH, HANG and XFAIL are FAIL (the code is
faulty; a known issue is an incident, not a pass); INFRA, MISS, NOTRUN are MISS
(the harness did not run it); INCONCLUSIVE is DONE (ran, decided nothing);
PASS and SKIP are themselves.  IDs are stable hashes, so a resubmission updates
rather than duplicates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from lab.results import claims
from lab.results.cell import PREBUILT, scenario_of
from lab.results.compare import cell_of
from lab.results.record import Record

MAJOR, MINOR = 5, 3
ORIGIN = "kernel_lab"
EXCERPT_MAX = 16384  # the schema's maxLength for log_excerpt

STATUS = {
    "CRASH": "FAIL", "HANG": "FAIL", "FAIL": "FAIL", "XFAIL": "FAIL",
    "INFRA": "MISS", "MISS": "MISS", "NOTRUN": "MISS",
    "INCONCLUSIVE": "DONE", "PASS": "PASS", "SKIP": "SKIP",
}


def _id(origin: str, *parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]
    return f"{origin}:{digest}"


def _time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _clean(text: str) -> str:
    return text.replace("\0", "")


def kcidb_path(test: str, cell: str) -> str:
    """The KCIDB path of a test: dot-separated, [a-zA-Z0-9_-] per node, cell left out."""
    scenario = scenario_of(test, cell)
    file, _, rest = scenario.partition("::")
    parts = [p for p in file.removesuffix(".py").split("/") if p and p != "scenarios"]
    name, bracket, params = rest.partition("[")
    parts += [p for p in name.split("::") if p]
    if bracket:
        parts.append(params.rstrip("]"))
    nodes = [re.sub(r"[^a-zA-Z0-9_-]", "_", p) or "_" for p in [ORIGIN, *parts]]
    return ".".join(nodes)


def _checkout(k: dict[str, Any], origin: str) -> dict[str, Any]:
    source = str(k.get("source") or "path")
    version = str(k.get("package_version") or k.get("release") or "")
    out: dict[str, Any] = {
        "id": _id(origin, "checkout", source, str(k.get("spec")), version),
        "origin": origin,
        "tree_name": "debian" if source == "debian" else source,
        "git_commit_name": _clean(str(k.get("release") or "")),
        "comment": _clean(f"{k.get('spec')} ({version})"),
        "valid": True,
    }
    return out


def _build(k: dict[str, Any], cell: str, checkout_id: str, origin: str) -> dict[str, Any]:
    variant = str(k.get("variant") or PREBUILT)
    return {
        "id": _id(origin, "build", cell, str(k.get("release")), str(k.get("config_hash"))),
        "origin": origin,
        "checkout_id": checkout_id,
        "architecture": "x86_64",
        "config_name": variant,
        "comment": _clean(cell),
        "status": "PASS",  # it booted, or its tests would say INFRA
        "misc": {key: k.get(key) for key in ("spec", "release", "package_version",
                                            "config_hash", "variant", "source")
                 if k.get(key) is not None},
    }


def export(records: list[Record], *, run: str, origin: str = ORIGIN,
           catalogue: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The KCIDB document for a run's records (``run``: the run directory's name;
    ``catalogue``: its claims.json, so a record of format 2, which cites its claim's text,
    is exported with the claim's id as a new run's is)."""
    cited = claims.cited_ids(catalogue)
    checkouts: dict[str, dict[str, Any]] = {}
    builds: dict[str, dict[str, Any]] = {}
    tests: list[dict[str, Any]] = []
    issues: dict[str, dict[str, Any]] = {}
    incidents: list[dict[str, Any]] = []
    for r in records:
        cell = cell_of(r)
        k = r.kernel or {"spec": cell}
        checkout = _checkout(k, origin)
        checkouts.setdefault(checkout["id"], checkout)
        build = _build(k, cell, checkout["id"], origin)
        builds.setdefault(build["id"], build)
        test_id = _id(origin, "test", run, cell, r.test,
                      *([f"repeat{r.repeat}"] if r.repeat else []))
        excerpt = "\n".join(x for x in (r.reason, r.excerpt) if x)
        test: dict[str, Any] = {
            "id": test_id, "origin": origin, "build_id": build["id"],
            "path": kcidb_path(r.test, cell),
            "status": STATUS.get(r.verdict, "ERROR"),
            "duration": float(r.duration),
            "environment": {"comment": _clean(f"QEMU guest, cell {cell}")},
            "misc": {"verdict": r.verdict, "test": r.test, "cell": cell, "run": run,
                     **({"claim": cited.get(r.claim, r.claim)} if r.claim else {}),
                     **({"deviations": r.deviations} if r.deviations else {})},
        }
        if r.finished:
            test["start_time"] = _time(max(0.0, r.finished - r.duration))
        if excerpt:
            test["log_excerpt"] = _clean(excerpt)[:EXCERPT_MAX]
        tests.append(test)
        for s in r.splats:
            title = _clean(str(s.get("title") or s.get("kind") or "splat"))
            issue_id = _id(origin, "splat", title)
            issues.setdefault(issue_id, {
                "id": issue_id, "version": 1, "origin": origin,
                "report_subject": title, "culprit": {"code": True},
                "comment": _clean(f"kernel {s.get('kind', 'splat')} seen by kernel-lab"),
            })
            incidents.append(_incident(origin, test_id, issue_id))
        known = r.data.get("known_issue")
        if isinstance(known, dict) and known.get("url"):
            issue_id = _id(origin, "known", str(known["url"]))
            issues.setdefault(issue_id, {
                "id": issue_id, "version": 1, "origin": origin,
                "report_url": str(known["url"]),
                "report_subject": _clean(str(known.get("note") or known.get("test"))),
                "culprit": {"code": True},
                "comment": "a known issue (known-issues.toml)",
            })
            incidents.append(_incident(origin, test_id, issue_id))
    return {
        "version": {"major": MAJOR, "minor": MINOR},
        "checkouts": list(checkouts.values()),
        "builds": list(builds.values()),
        "tests": tests,
        "issues": list(issues.values()),
        "incidents": incidents,
    }


def _incident(origin: str, test_id: str, issue_id: str) -> dict[str, Any]:
    return {"id": _id(origin, "incident", test_id, issue_id), "origin": origin,
            "issue_id": issue_id, "issue_version": 1, "test_id": test_id, "present": True}
