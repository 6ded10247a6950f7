"""`lab run --keep-on-failure` on a real guest: the run waits at its first FAIL with the
guest up, `lab shell --attach RUN_DIR` gets into it, and Ctrl-C ends the run with the
run's own exit status, the rest NOTRUN and no QEMU left.  One boot of debian:7.2."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from labrun import REPO, lab_cmd, qemus_of

pytestmark = [pytest.mark.vm]

SUITE = '''
from typing import Any


def test_a_passes(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"


def test_b_fails(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EBADF"


def test_c_after(agent: Any) -> None:
    pass
'''


def _start(tmp_path: Path, suite_text: str, *args: str
           ) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_kept.py").write_text(textwrap.dedent(suite_text))
    child = subprocess.Popen(lab_cmd(tmp_path, "--suite", str(suite), "--keep-on-failure",
                                     *args),
                             cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    assert child.stdout is not None
    out = child.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
    return child, lines


def _until(child: subprocess.Popen[str], lines: queue.Queue[str], seen: list[str],
           pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=5)
        except queue.Empty:
            assert child.poll() is None, "".join(seen)[-4000:]
            continue
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError("".join(seen)[-4000:])


PANIC = '''
from typing import Any


def test_1_panic(agent: Any) -> None:
    agent.call("sys.write_text", path="/proc/sysrq-trigger", text="c")


def test_2_after(agent: Any) -> None:
    pass
'''


def test_a_panicked_guest_is_kept_paused(tmp_path: Path) -> None:
    child, lines = _start(tmp_path, PANIC)
    seen: list[str] = []
    try:
        _until(child, lines, seen, r"test_1_panic.*: CRASH \(in its call\)")
        _until(child, lines, seen, r"the kernel panicked: .*the guest is paused")
        _until(child, lines, seen, r"no longer answers over SSH: no shell")
        _until(child, lines, seen, r"waiting; Ctrl-C ends the run")
        run_dir = next((tmp_path / "results").glob("*"))
        assert qemus_of(run_dir), "a panicked guest kept under panic=0 outlives its panic"
        res = subprocess.run([sys.executable, "-m", "lab.cli", "shell", "--attach",
                              str(run_dir), "--", "true"], capture_output=True, text=True,
                             timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)
        assert res.returncode == 2 and "no kept guest there" in res.stderr
        os.killpg(child.pid, signal.SIGINT)
        child.wait(timeout=300)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    text = "".join(seen + iter_queue(lines))
    assert child.returncode == 1, text[-4000:]
    assert not qemus_of(run_dir)
    records = {r["test"].split("::")[1].split("[")[0]: r for r in
               map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    assert records["test_1_panic"]["verdict"] == "CRASH"
    assert records["test_2_after"]["verdict"] == "NOTRUN"


def test_the_first_failure_keeps_its_guest_for_an_attached_shell(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_kept.py").write_text(textwrap.dedent(SUITE))
    child = subprocess.Popen(lab_cmd(tmp_path, "--suite", str(suite), "--keep-on-failure"),
                             cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    assert child.stdout is not None
    out = child.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in out], daemon=True).start()
    try:
        run_dir = Path(_until(child, lines, seen,
                              r"get in with: lab shell --attach (\S+)").group(1))
        text = "".join(seen)
        assert "test_b_fails" in text and "FAIL (in its call)" in text, text[-4000:]
        started = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "lab.cli", "shell", "--attach",
                              str(run_dir), "--", "uname", "-r"], capture_output=True,
                             text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)
        attach_s = time.monotonic() - started
        assert res.returncode == 0, res.stderr[-3000:]
        release = res.stdout.strip()
        assert re.fullmatch(r"\d+\.\d+\.\d+\S*", release), res.stdout
        assert qemus_of(run_dir), "the kept guest's QEMU is gone"
        os.killpg(child.pid, signal.SIGINT)
        child.wait(timeout=300)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    time.sleep(0.5)
    seen += list(iter_queue(lines))
    text = "".join(seen)
    assert child.returncode == 1, text[-4000:]  # a test failed: the run's own status
    assert not qemus_of(run_dir)
    assert not (run_dir / "attach.sock").exists()
    records = {r["test"].split("::")[1].split("[")[0]: r for r in
               map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    assert records["test_a_passes"]["verdict"] == "PASS"
    assert records["test_b_fails"]["verdict"] == "FAIL"
    assert records["test_b_fails"]["kernel"]["release"] == release
    assert records["test_c_after"]["verdict"] == "NOTRUN"
    assert "--keep-on-failure" in records["test_c_after"]["reason"]
    print(f"attach -- uname -r took {attach_s:.2f} s")


def iter_queue(lines: queue.Queue[str]) -> list[str]:
    out = []
    while True:
        try:
            out.append(lines.get_nowait())
        except queue.Empty:
            return out
