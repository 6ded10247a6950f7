"""The guest agent as a local child process on the host kernel (no VM), for fast tests.

The agent's ops are real syscalls on whatever kernel runs the tests; these tests check
the agent's plumbing and the syscalls' basic behaviour, the VM tests the rest.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GUEST_SRC = REPO / "guest"
TIMEOUT = 120.0  # generous: the race loops run for seconds


def copy_guest(dest: Path) -> Path:
    shutil.copytree(GUEST_SRC, dest / "guest",
                    ignore=shutil.ignore_patterns("__pycache__", "_labsys*.so"))
    return dest


class Agent:
    def __init__(self, root: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(root))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guest"],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.next_id = 1
        self.hello = self.read()["hello"]

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read(self) -> dict[str, Any]:
        line = self.lines.get(timeout=TIMEOUT)
        assert line is not None, "agent closed stdout"
        msg: dict[str, Any] = json.loads(line)
        return msg

    def send_raw(self, obj: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def request(self, op: str, /, **args: Any) -> dict[str, Any]:
        rid = self.next_id
        self.next_id += 1
        reply = self.send_raw({"id": rid, "op": op, "args": args})
        assert reply["id"] == rid
        return reply

    def ok(self, op: str, /, **args: Any) -> Any:
        reply = self.request(op, **args)
        assert reply["ok"] is True, reply
        assert isinstance(reply["elapsed_ns"], int) and reply["elapsed_ns"] >= 0
        return reply["value"]

    def errno(self, op: str, /, **args: Any) -> str:
        reply = self.request(op, **args)
        assert reply["ok"] is False and "errno" in reply, reply
        assert reply["message"]
        name: str = reply["errno"]
        return name

    def close(self) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
