"""The spec audit: each claim of the API texts, its source, its verdict per kernel, and the
deviation the kernel showed, as plain data.

Pure functions over records (lab.results.record.Record, from any number of runs) and
the claims catalogue: plain dicts as scenarios/claim.py's ``Claim.as_dict`` gives them
(id, text, source {spec, section, error, file}, deviation, not_checkable, suite), which a
lab run writes into its run directory as ``claims.json``.  A record cites its claim by
the claim's stable id (``@pytest.mark.claim("io_submit.bad_ctx")``), so rewording a
claim orphans no record.  Runs of results format 2 and older cited the claim's text and
listed it under a ``key``: claims_legacy.json (beside this module, generated once from
every catalogue the repository held) maps those texts and keys to ids, and a run's own
claims.json maps the texts it listed, so an old run directory audits as a new one.  No
pytest, no paramiko: the report, the matrix and the summary call this on records read
back from disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from lab.results.record import Record
from lab.results.verdict import TESTED, Verdict, worst

CLAIMS_FILE = "claims.json"
LEGACY_FILE = Path(__file__).with_name("claims_legacy.json")
NOT_CHECKABLE = "NOT CHECKABLE"
NOT_RUN = "NOT RUN"  # checkable, but no record of this run set cites it


def load_catalogue(run_dir: Path) -> list[dict[str, Any]] | None:
    """The claims a run's suites list (``claims.json``), or None when the run wrote none."""
    path = run_dir / CLAIMS_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    claims: list[dict[str, Any]] = data["claims"]
    return claims


@cache
def _legacy() -> tuple[dict[str, str], dict[str, str]]:
    data = json.loads(LEGACY_FILE.read_text())
    return dict(data["by_text"]), dict(data["by_key"])


def claim_id(claim: Mapping[str, Any]) -> str:
    """A catalogue entry's id: its own, or for an entry of format 2 and older (a ``key``
    and a text) the id its text or key now has (the key itself when neither is known)."""
    if claim.get("id"):
        return str(claim["id"])
    by_text, by_key = _legacy()
    key, text = str(claim.get("key", "")), str(claim.get("text", ""))
    return by_text.get(text) or by_key.get(key) or key


def cited_ids(claims: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """What a record's ``claim`` may say -> the claim's id: every old text (legacy) and the
    texts the given catalogue lists, an id standing for itself (looked up with .get)."""
    by_text, _ = _legacy()
    return {**by_text, **{str(c["text"]): claim_id(c) for c in claims if c.get("text")}}


def kernel_label(kernel: Mapping[str, Any]) -> str:
    """How a kernel is named in the audit: its spec, and the variant of a built one."""
    spec = str(kernel.get("spec") or "?")
    variant = kernel.get("variant")
    return spec if variant in (None, "", "prebuilt") else f"{spec} [{variant}]"


def _source_ref(source: Mapping[str, Any]) -> str:
    # "spec" names the text; format 2 and older called it "text".
    parts = [str(source.get("spec") or source.get("text", "")), str(source.get("section", ""))]
    if source.get("error"):
        parts.append(str(source["error"]))
    return ", ".join(p for p in parts if p)


def _per_kernel(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    by_kernel: dict[str, list[Record]] = {}
    for r in records:
        by_kernel.setdefault(kernel_label(r.kernel), []).append(r)
    for label, recs in sorted(by_kernel.items()):
        deviations = sorted({d for r in recs for d in r.deviations})
        out[label] = {
            "verdict": worst(r.verdict for r in recs),
            "tests": sorted(r.test for r in recs),
            "deviations": deviations,
            "reasons": sorted({r.reason for r in recs if r.reason}),
        }
    return out


def _overall(claim: Mapping[str, Any], kernels: Mapping[str, Mapping[str, Any]]) -> str:
    if claim.get("not_checkable"):
        return NOT_CHECKABLE
    if not kernels:
        return NOT_RUN
    return worst(k["verdict"] for k in kernels.values())


def audit(records: Iterable[Record], claims: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Each claim with its source, verdict per kernel and deviations; and the counts.

    ``checked``: checkable claims that at least one test decided on some kernel (PASS,
    XFAIL, FAIL, CRASH or HANG; a SKIP, INCONCLUSIVE or NOTRUN decides nothing).
    ``deviations``: claims for which a kernel showed a deviation from the source.
    ``uncatalogued``: claims records cite (an id, or an old text no table maps) that the
    catalogue does not list.  Records and catalogue may be of any format (above).
    """
    claims = list(claims)
    ids = cited_ids(claims)
    recs = [r for r in records if r.claim]
    by_id: dict[str, list[Record]] = {}
    for r in recs:
        by_id.setdefault(ids.get(r.claim, r.claim), []).append(r)
    rows: list[dict[str, Any]] = []
    known: set[str] = set()
    for claim in claims:
        cid = claim_id(claim)
        known.add(cid)
        kernels = _per_kernel(by_id.get(cid, []))
        source = dict(claim.get("source") or {})
        rows.append({
            "id": cid,
            "text": str(claim["text"]),
            "suite": claim.get("suite", ""),
            "source": source,
            "source_ref": _source_ref(source),
            "checkable": not claim.get("not_checkable"),
            "not_checkable": claim.get("not_checkable", ""),
            "expected_deviation": claim.get("deviation", ""),
            "kernels": kernels,
            "deviations": sorted({d for k in kernels.values() for d in k["deviations"]}),
            "decided_on": sorted(label for label, k in kernels.items()
                                 if k["verdict"] in TESTED),
            "verdict": _overall(claim, kernels),
        })
    uncatalogued = [{"claim": cid, "tests": sorted({r.test for r in rs})}
                    for cid, rs in sorted(by_id.items()) if cid not in known]
    checkable = [r for r in rows if r["checkable"]]
    return {
        "claims": rows,
        "kernels": sorted({kernel_label(r.kernel) for r in recs}),
        "uncatalogued": uncatalogued,
        "counts": {
            "claims": len(rows),
            "checkable": len(checkable),
            "not_checkable": len(rows) - len(checkable),
            "checked": sum(1 for r in checkable if r["decided_on"]),
            "not_run": sum(1 for r in checkable if r["verdict"] == NOT_RUN),
            "deviations": sum(1 for r in rows if r["deviations"]),
            "failed": sum(1 for r in checkable
                          if r["verdict"] in (Verdict.FAIL, Verdict.CRASH, Verdict.HANG)),
        },
    }


def differing(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The claims whose verdict or deviations differ between the kernels they ran on."""
    out = []
    for row in report["claims"]:
        kernels = row["kernels"]
        seen = {(k["verdict"], tuple(k["deviations"])) for k in kernels.values()}
        if len(seen) > 1:
            out.append({"id": row["id"], "kernels": {
                label: {"verdict": k["verdict"], "deviations": k["deviations"],
                        "reasons": k["reasons"]} for label, k in kernels.items()}})
    return out
