"""Records are checked where they are read: a torn or invalid line, or an unknown verdict,
is one line naming FILE:LINE and exit 2 in every reader (merge, compare, report, export,
rerun), never a blank cell and exit 0; a shard's torn last line (a killed run) is MISS in
a merge, and said so."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from records import rec

from lab import cli
from lab.errors import EXIT_INFRA_ERROR, EXIT_USER_ERROR, UserError
from lab.results.matrixfile import Matrix, write
from lab.results.record import append_record, read_records

CELLS = [{"label": "debian:7.2", "spec": "debian:7.2", "variant": None}]
RECORDS = [rec(f"test_{n}", "PASS") for n in range(3)]


def run_dir(where: Path, name: str, *, shard: str | None = None) -> Path:
    """A run directory as `lab run` leaves it, its records written by the lab's writer."""
    d = where / name
    d.mkdir()
    for r in RECORDS:
        append_record(d, r)
    (d / "command.txt").write_text("lab run\n")
    expected = [(r.cell, r.test) for r in RECORDS]
    write(d, Matrix(cells=CELLS, suite=["scenarios/aio"], expected=expected,
                    assigned=expected, shard=shard))
    return d


def _line(record: dict[str, object]) -> str:
    return json.dumps(record, sort_keys=True)


GOOD = asdict(RECORDS[1])
# What goes in place of the second record (line 2), and what the error must say.
BAD = {
    "invalid JSON": (_line(GOOD)[:40], "not a JSON record"),
    "unknown verdict": (_line({**GOOD, "verdict": "GREEN"}), "unknown verdict 'GREEN'"),
    "lower-case verdict": (_line({**GOOD, "verdict": "pass"}), "unknown verdict 'pass'"),
    "no test id": (_line({k: v for k, v in GOOD.items() if k != "test"}), "no test id"),
    "not an object": (_line([GOOD]), "not a JSON record"),
    "wrong type": (_line({**GOOD, "kernel": "debian:7.2"}), "kernel must be"),
}


def corrupt(d: Path, text: str) -> None:
    lines = (d / "results.jsonl").read_text().splitlines()
    lines[1] = text
    (d / "results.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kind", sorted(BAD))
def test_an_invalid_record_is_an_error_naming_file_and_line(tmp_path: Path, kind: str) -> None:
    d = run_dir(tmp_path, "run")
    text, words = BAD[kind]
    corrupt(d, text)
    with pytest.raises(UserError) as err:
        read_records(d)
    message = str(err.value)
    assert message.startswith(f"{d / 'results.jsonl'}:2: ") and words in message, message
    assert "\n" not in message


def test_a_binary_file_is_an_error_too(tmp_path: Path) -> None:
    d = run_dir(tmp_path, "run")
    (d / "results.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(UserError, match=r"results\.jsonl:1: .*not a JSON record"):
        read_records(d)


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["merge", "compare", "compare-base", "report",
                                     "report-baseline", "export", "rerun"])
@pytest.mark.parametrize("kind", ["invalid JSON", "unknown verdict"])
def test_every_reader_refuses_it_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, command: str,
                                             kind: str) -> None:
    monkeypatch.chdir(tmp_path)
    good, bad = run_dir(tmp_path, "good"), run_dir(tmp_path, "bad")
    corrupt(bad, BAD[kind][0])
    argv = {"merge": ["merge", str(bad), "--into", str(tmp_path / "merged")],
            "compare": ["compare", str(good), str(bad)],
            "compare-base": ["compare", str(bad), str(good)],
            "report": ["report", str(bad)],
            "report-baseline": ["report", str(good), "--baseline", str(bad)],
            "export": ["export", "--kcidb", str(bad), "-o", str(tmp_path / "out.json")],
            "rerun": ["rerun", str(bad), "--failed"]}[command]
    code, out, err = _main(capsys, *argv)
    assert code == EXIT_USER_ERROR, (out, err)
    assert err.count("\n") == 1 and f"{bad / 'results.jsonl'}:2: " in err, err
    assert "Traceback" not in err and out == ""
    # Nothing half-written: no merged run, no export, no report of the bad run.
    assert not (tmp_path / "merged").exists() and not (tmp_path / "out.json").exists()
    assert not (bad / "report.html").exists()


def test_a_shards_torn_last_line_is_miss_in_a_merge(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    d = run_dir(tmp_path, "shard", shard="1/1")
    path = d / "results.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 30])  # killed in the middle of its last write
    with pytest.raises(UserError, match=r"results\.jsonl:3: .*torn"):
        read_records(d)  # a reader without a matrix to fall back on: an error
    code, out, _ = _main(capsys, "merge", str(d), "--into", str(tmp_path / "merged"))
    assert code == EXIT_INFRA_ERROR, out
    assert f"{path}:3: a torn last line (the run was killed while writing it)" in out
    merged = read_records(tmp_path / "merged")
    assert [r.verdict for r in merged] == ["PASS", "PASS", "MISS"]
