"""Which tests ``-k`` selects, and which of them are marked flaky: a pytest collection.

Run as ``python -m lab.bisect.select --suite DIR -k EXPR --kernel SPEC`` (through
lab.proc, so the bisection's process never imports the scenarios): it prints one
JSON line, ``{"tests": [...], "flaky": [...]}``, with the ids as `lab run`'s
records carry them minus the kernel parameter.  Nothing is booted or built:
collection only parametrizes the tests by the kernel spec.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from lab import proc
from lab.errors import InfraError, UserError
from lab.paths import rootdir_args
from lab.run import preflight

MARK = "kernel-lab-selection: "
USAGE = 2  # the exit status for a -k that pytest refused (its reason in the output)


def selection(suite: Path, keyword: str, *, spec: str, log_path: Path,
              variant: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(selected test ids, those marked flaky); UserError when -k selects nothing.

    Collected with the runs' variant, so that -k sees the cell label the runs' ids
    carry (it matches parameters too)."""
    argv = [sys.executable, "-m", "lab.bisect.select", "--suite", str(suite), "-k", keyword,
            "--kernel", spec, *(["--variant", variant] if variant else [])]
    try:
        # In the caller's directory, as the runs it selects for: a relative --suite means
        # the same there.
        out = proc.run(argv, phase="bisect:collect", log_path=log_path, timeout=300).stdout
    except proc.ProcessError as exc:
        if exc.returncode == USAGE:  # pytest refused -k: the user's mistake, not the lab's
            # The whole output (the tail ends with the plugin's summary): its last refusal.
            output = log_path.read_text(errors="replace") if log_path.is_file() else exc.tail
            raise UserError(preflight.bad_keyword(keyword, preflight.refusal(output))) \
                from None
        raise InfraError(f"collecting {suite} with -k {keyword!r} failed: {exc}",
                         phase="bisect:collect", log=log_path) from None
    line = next((ln for ln in out.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise InfraError(f"collecting {suite} printed no selection", phase="bisect:collect",
                         log=log_path)
    data = json.loads(line[len(MARK):])
    if not data["tests"]:
        raise UserError(f"-k {keyword!r} selects no scenario in {suite}")
    return tuple(data["tests"]), tuple(data["flaky"])


class _Collector:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.tests: list[str] = []
        self.flaky: list[str] = []

    def pytest_collection_finish(self, session: object) -> None:
        from lab.results.cell import scenario_of
        from lab.run.keys import item_cell

        for item in getattr(session, "items", []):
            cell = item_cell(item)
            test = scenario_of(item.nodeid, cell.label if cell is not None else "")
            self.tests.append(test)
            if item.get_closest_marker("flaky") is not None:
                self.flaky.append(test)


def main(argv: list[str] | None = None) -> int:
    import pytest

    p = argparse.ArgumentParser(prog="lab.bisect.select")
    p.add_argument("--suite", type=Path, required=True)
    p.add_argument("-k", dest="keyword", required=True)
    p.add_argument("--kernel", required=True)
    p.add_argument("--variant")
    args = p.parse_args(argv)
    collector = _Collector(args.kernel)
    with tempfile.TemporaryDirectory(prefix="lab-select-") as tmp:
        rc = pytest.main([str(args.suite), *rootdir_args(args.suite), "--collect-only", "-q",
                          "-k", args.keyword, "--lab-kernel", args.kernel, "--lab-run-dir", tmp,
                          *(["--lab-variant", args.variant] if args.variant else []),
                          "-p", "no:cacheprovider",
                          "-W", "ignore::pytest.PytestAssertRewriteWarning"],
                         plugins=[collector])
    if rc == pytest.ExitCode.USAGE_ERROR:
        return USAGE  # pytest printed why
    if rc not in (0, pytest.ExitCode.NO_TESTS_COLLECTED):
        print(f"collection failed with pytest exit {rc}", file=sys.stderr)
        return 3
    print(MARK + json.dumps({"tests": collector.tests, "flaky": collector.flaky}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
