"""``lab merge``: shard run directories combined into one run, as coverage.py combines data.

Inputs are read in sorted order; an input whose records are byte-for-byte
another's (the same artifact downloaded twice) is skipped by content hash; an
input that is not a run directory, or that belongs to another matrix (suite,
cells, selection, shard count), is refused with the difference named, and
nothing is written.  Every test of the matrix that no input reported becomes a
MISS record, so a shard that died or never uploaded is counted, not dropped.
The repetitions of ``--repeat`` are separate results, each its own record; two
inputs that report the same repetition (a shard run twice) never resolve by
majority: a FAIL, CRASH or HANG among them wins, and the record says it is flaky
("FAIL 1/3").
The merged directory is built aside and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lab import atomic
from lab.errors import UserError
from lab.results import claims, junit, matrixfile
from lab.results.cell import PREBUILT
from lab.results.compare import flaky_text, resolve
from lab.results.record import Record, load_records, read_lines
from lab.results.verdict import Verdict


@dataclass(frozen=True)
class Input:
    path: Path
    matrix: matrixfile.Matrix
    records: list[Record]
    digest: str
    torn: str = ""  # a torn last line left out: its test is MISS


@dataclass
class Merged:
    """What ``merge`` did: the directory, and what it skipped or found missing."""

    path: Path
    inputs: list[Path]
    duplicates: list[Path]
    missing_shards: list[str]
    miss: int
    records: int
    torn: list[str] = field(default_factory=list)  # torn last lines left out (MISS)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("results.jsonl", matrixfile.MATRIX):
        f = path / name
        h.update(f.read_bytes() if f.is_file() else b"")
        h.update(b"\0")
    return h.hexdigest()


def _read(path: Path) -> Input:
    if not path.is_dir():
        raise UserError(f"{path} is not a directory; give the run directories of the shards")
    matrixfile.check_format(path, what="shard")
    m = matrixfile.read(path)
    if m is None:
        raise UserError(f"{path} is not a lab run directory with a matrix (no readable "
                        f"{matrixfile.MATRIX}); give directories that `lab run` wrote")
    # A shard killed while writing its last record: that test is MISS (the matrix has
    # it), and the merge says so; any other bad line is an error naming it.
    loaded = load_records(path, torn_end_ok=True)
    return Input(path=path, matrix=m, records=loaded.records, digest=_digest(path),
                 torn=loaded.torn)


def _check_compatible(inputs: list[Input]) -> None:
    first = inputs[0]
    for other in inputs[1:]:
        diffs = first.matrix.differences(other.matrix)
        if diffs:
            raise UserError(f"{first.path} and {other.path} are not shards of one matrix: "
                            f"{diffs[0]}; merge runs of the same `lab run` arguments")


def _miss_record(cell: str, test: str, kernel: dict[str, object], why: str) -> Record:
    return Record(test=test, verdict=Verdict.MISS.value, duration=0.0, kernel=dict(kernel),
                  cell=cell, reason=why, finished=0.0)


Slot = tuple[str, str, int]  # (cell, test, repetition: 0 when not repeated)


def _combine(inputs: list[Input]) -> list[Record]:
    """One record per (cell, test, repetition): a single one as it is; several (a shard
    run twice) as the worst of them, never by majority (lab.results.compare.resolve)."""
    grouped: dict[Slot, list[Record]] = {}
    for inp in inputs:
        for r in inp.records:
            grouped.setdefault((r.cell, r.test, r.repeat), []).append(r)
    out = []
    for recs in grouped.values():
        if len(recs) == 1:
            out.append(recs[0])
            continue
        verdicts = [r.verdict for r in recs]
        verdict, _ = resolve(verdicts)
        chosen = next(r for r in recs if r.verdict == verdict)
        merged: dict[str, object] = {"results": len(recs), "verdicts": sorted(verdicts)}
        if flaky_text(verdicts):
            merged["flaky"] = flaky_text(verdicts)
        out.append(replace(chosen, data={**chosen.data, "merged": merged}))
    return out


def _slots(m: matrixfile.Matrix) -> list[Slot]:
    """Every result the matrix expects: each (cell, test), once per repetition."""
    repeat = int(m.options.get("repeat") or 1)
    reps = range(1, repeat + 1) if repeat > 1 else [0]
    return [(cell, test, n) for cell, test in dict.fromkeys(m.expected) for n in reps]


def merge(paths: list[Path], into: Path, *, command: str) -> Merged:
    """Merge the shard run directories ``paths`` into the new directory ``into``."""
    if not paths:
        raise UserError("give at least one run directory to merge")
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise UserError(f"--into {into} exists and is not empty; give a new directory")
    unique: list[Input] = []
    duplicates: list[Path] = []
    seen: set[str] = set()
    for path in sorted({p.resolve() for p in paths}):
        inp = _read(path)
        if inp.digest in seen:
            duplicates.append(path)
            continue
        seen.add(inp.digest)
        unique.append(inp)
    _check_compatible(unique)
    first = unique[0].matrix
    catalogue = _claims(unique)  # read (and checked) before anything is written
    # A format-2 shard's records cite their claim's text; the merged run is format 3,
    # whose records cite the claim's id (lab.results.claims).
    cited = claims.cited_ids(catalogue or ())
    records = [replace(r, claim=cited.get(r.claim, r.claim)) if r.claim else r
               for r in _combine(unique)]
    reported = {(r.cell, r.test, r.repeat) for r in records}
    present = {inp.matrix.shard_index for inp in unique}
    missing_shards = [f"{i}/{first.shard_total}" for i in range(1, first.shard_total + 1)
                      if i not in present]
    assigned_somewhere = {p for inp in unique for p in inp.matrix.assigned}
    # A MISS record names its kernel as the cell's other records do, or as the matrix does
    # when no shard ran anything of the cell (its reproducer needs the spec and variant).
    kernels = {str(c["label"]): {"spec": c.get("spec"), "variant": c.get("variant") or PREBUILT}
               for c in first.cells}
    kernels.update({r.cell: r.kernel for r in records if r.kernel})
    order = {p: n for n, p in enumerate(dict.fromkeys(first.expected))}
    for cell, test, n in _slots(first):
        if (cell, test, n) in reported:
            continue
        why = ("MISS: in the matrix, but no merged shard reported it "
               + ("(its shard ran, and stopped before it)" if (cell, test) in assigned_somewhere
                  else f"(its shard is missing: shards {', '.join(missing_shards)})"
                  if missing_shards else ""))
        records.append(replace(_miss_record(cell, test, kernels.get(cell, {}), why.strip()),
                               repeat=n))
    records.sort(key=lambda r: (order.get((r.cell, r.test), len(order)), r.cell, r.test,
                                r.repeat))
    miss = sum(1 for r in records if r.verdict == Verdict.MISS.value)

    into.parent.mkdir(parents=True, exist_ok=True)
    with atomic.temp_dir(into.parent) as tmp:
        _write(tmp, unique, records, first, command=command, duplicates=duplicates,
               catalogue=catalogue)
        if into.exists():
            into.rmdir()  # empty (checked above): the rename needs the name free
        atomic.publish(tmp, into)
    return Merged(path=into, inputs=[i.path for i in unique], duplicates=duplicates,
                  missing_shards=missing_shards, miss=miss, records=len(records),
                  torn=[i.torn for i in unique if i.torn])


def _claims(inputs: list[Input]) -> list[dict[str, object]] | None:
    """The claims of every shard's suites, each once.  A shard writes the claims of the
    suites its own tests belong to, so the shards' lists differ and only their union
    covers the matrix (a suite none of whose tests reached any shard is missing)."""
    catalogues = []
    for inp in inputs:
        try:
            catalogue = claims.load_catalogue(inp.path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{inp.path / claims.CLAIMS_FILE}: unreadable ({exc}); "
                            "give run directories that `lab run` wrote") from None
        if catalogue is not None:
            catalogues.append(catalogue)
    if not catalogues:
        return None
    return list({claims.claim_id(c): c for cat in catalogues for c in cat}.values())


def _write(tmp: Path, inputs: list[Input], records: list[Record], first: matrixfile.Matrix,
           *, command: str, duplicates: list[Path],
           catalogue: list[dict[str, object]] | None) -> None:
    (tmp / "results.jsonl").write_text(
        "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in records))
    merged_from = [{"path": str(i.path), "shard": i.matrix.shard, "sha256": i.digest,
                    "records": len(i.records),
                    "command": _text(i.path / "command.txt")} for i in inputs]
    matrixfile.write(tmp, replace(first, shard=None, assigned=list(first.expected),
                                   merged_from=merged_from, format=matrixfile.FORMAT))
    phases = []
    for inp in inputs:
        for p in read_lines(inp.path / "phases.jsonl"):
            phases.append(json.dumps({**p, "shard": inp.matrix.shard}, sort_keys=True) + "\n")
    (tmp / "phases.jsonl").write_text("".join(phases))
    for inp in inputs:
        tag = f"s{inp.matrix.shard_index}of{inp.matrix.shard_total}"
        for log in sorted(inp.path.glob("console-*.log")):
            shutil.copy2(log, tmp / f"console-{tag}-{log.name.removeprefix('console-')}")
    all_cases = []
    for inp in inputs:
        xml = inp.path / "junit.xml"
        if xml.is_file():
            # A shard killed while pytest wrote it: its records still count.
            with contextlib.suppress(ET.ParseError):
                all_cases += junit.cases(xml.read_text())
    (tmp / "junit.xml").write_text(junit.regroup(all_cases, records,
                                                 cell_order=first.cell_labels()))
    stops = {str(i.path): json.loads(_text(i.path / "stopped.json") or "{}")
             for i in inputs if (i.path / "stopped.json").is_file()}
    if stops:
        (tmp / "stopped-shards.json").write_text(json.dumps(stops, indent=1) + "\n")
    if catalogue is not None:
        (tmp / claims.CLAIMS_FILE).write_text(json.dumps({"claims": catalogue}, indent=1) + "\n")
    (tmp / "command.txt").write_text(command + "\n")
    if duplicates:
        (tmp / "duplicates.txt").write_text("".join(f"{d}\n" for d in duplicates))


def _text(path: Path) -> str:
    return path.read_text().strip() if path.is_file() else ""
