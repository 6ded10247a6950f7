"""What pytest makes of a run's selection, found before anything is fetched or written.

``-k``, ``-m`` and pytest's own options after ``--`` are pytest's to read: a typo in
one, or an expression that selects nothing, would otherwise show only after the
kernels were fetched (or built), as pytest's usage text, 149 NOTRUN records or an
empty run directory.  So `lab run` first collects with the run's own arguments
(``--collect-only``, in a child process: the scenarios are imported there, not in
the lab's process) into a temporary directory, and turns pytest's refusal into
one line.  Nothing is booted: collection only parametrizes the tests by the specs.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import proc
from lab.errors import UserError
from lab.paths import in_scenarios

TIMEOUT = 300.0
# pytest's refusals: "ERROR: Wrong expression passed to '-k': ...", and argparse's
# "<prog>: error: unrecognized arguments: --x" (after an "ERROR: usage: ..." line).
_REFUSAL = re.compile(r"^(?:ERROR: (?!usage:)|\S.*?: error: )(?P<why>.+)$")


def needed(keyword: str | None, pytest_args: list[str], *, suite: Path) -> bool:
    """Whether pytest reads anything of the user's beyond node ids (lab.run.select
    checks those): a selection, pytest's options, or a suite of the user's."""
    return bool(keyword) or bool(pytest_args) or not in_scenarios(suite)


def check(args_for: Callable[[Path], list[str]], *, keyword: str | None, extra: list[str],
          suite: Path) -> None:
    """Collect with the run's pytest arguments (``args_for(run_dir)``; ``extra`` the
    user's among them); a UserError when pytest refuses them or they select no test."""
    with tempfile.TemporaryDirectory(prefix="lab-preflight-") as tmp:
        argv = args_for(Path(tmp))
        res = proc.run([sys.executable, "-m", "pytest", *argv, "--collect-only", "-q"],
                       phase="preflight", log_path=Path(tmp) / "preflight.log",
                       timeout=TIMEOUT, check=False)
    if res.returncode == pytest.ExitCode.NO_TESTS_COLLECTED:
        if keyword:
            raise UserError(f"no scenario matches -k {keyword!r}; give an expression of "
                            "words in the test ids (file, test, parameters, cell), e.g. "
                            "-k cancel")
        if extra:
            raise UserError(f"pytest's arguments {' '.join(extra)!r} select no scenario; "
                            "check them against the tests' ids and markers")
        raise UserError(f"no scenarios collected from {suite}; give --suite the directory "
                        "(or file) of pytest tests, named test_*.py")
    if res.returncode == pytest.ExitCode.INTERRUPTED and not in_scenarios(suite):
        # A suite of the user's that does not import (the run would say "interrupted").
        raise UserError(f"collecting {suite} failed: {collection_error(res.stdout)}; "
                        f"python -m pytest --collect-only {suite} shows all of it")
    if res.returncode != pytest.ExitCode.USAGE_ERROR:
        return  # collected (or failed otherwise: the run itself says how, with its log)
    why = refusal(res.stdout)
    if keyword and "'-k'" in why:
        raise UserError(bad_keyword(keyword, why))
    raise UserError(f"pytest: {why} (after `--`, give node ids and pytest's own options: "
                    "python -m pytest --help)")



def refusal(output: str) -> str:
    """pytest's reason for a usage error, from its output (the last one it printed)."""
    found = [m["why"].strip() for m in map(_REFUSAL.match, output.splitlines()) if m]
    return found[-1] if found else "refused its arguments"


def bad_keyword(keyword: str, why: str) -> str:
    """The one line for a -k expression pytest cannot parse."""
    return (f"-k {keyword!r} is not a pytest expression ({why}); write one such as "
            "-k 'cancel and not poll'")


def collection_error(output: str) -> str:
    """The file that failed to import and pytest's last ``E`` line about it."""
    where = re.search(r"ERROR collecting (\S+)", output)
    errors = [ln[1:].strip() for ln in output.splitlines() if ln.startswith("E ")]
    what = errors[-1] if errors else "an error during collection"
    return f"{where[1]}: {what}" if where else what
