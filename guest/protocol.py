"""JSON-lines request loop, op dispatch and handshake.

stdout carries protocol lines only: the real stdout fd is kept private and
fd 1 / sys.stdout are pointed at stderr, so a stray print (ours or a
library's) cannot corrupt the stream the lab parses.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from typing import IO, Any

from guest import PROTOCOL_VERSION, native
from guest.registry import OPS, RequestError, areas, load, lookup, register


def _traceback() -> str:
    import traceback  # only an op that raised needs it

    return traceback.format_exc(limit=20)


class _Exit(Exception):
    pass


def agent_ping() -> str:
    return "pong"


def agent_exit() -> None:
    raise _Exit


def agent_ops() -> list[str]:
    """Every op of every area (imports them all)."""
    for area in areas():
        load(area)
    return sorted(OPS)


register("agent", {"agent.ping": agent_ping, "agent.exit": agent_exit, "agent.ops": agent_ops})


def handle(request: Any) -> tuple[dict[str, Any], bool]:
    """Run one request; return (reply, exit_after_reply)."""
    rid = request.get("id") if isinstance(request, dict) else None
    try:
        if not isinstance(request, dict):
            raise RequestError("request must be a JSON object")
        handler = lookup(str(request.get("op")))
        args = request.get("args") or {}
        if not isinstance(args, dict):
            raise RequestError("args must be an object")
    except RequestError as exc:
        return {"id": rid, "ok": False, "error": str(exc)}, False
    except ImportError as exc:  # the op's area cannot be imported: the agent's bug
        return {"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": _traceback()}, False
    start = time.monotonic_ns()
    try:
        value = handler(**args)
    except _Exit:
        return {
            "id": rid,
            "ok": True,
            "value": None,
            "elapsed_ns": time.monotonic_ns() - start,
        }, True
    except OSError as exc:
        elapsed = time.monotonic_ns() - start
        if exc.errno is None:
            return {"id": rid, "ok": False, "error": f"OSError: {exc}",
                    "traceback": _traceback()}, False
        return {
            "id": rid,
            "ok": False,
            "errno": errno.errorcode.get(exc.errno, str(exc.errno)),
            "message": exc.strerror or os.strerror(exc.errno),
            "elapsed_ns": elapsed,
        }, False
    except Exception as exc:
        # The lab records the traceback with the test: an op that raises is the test's
        # (or the agent's) bug, which a person needs to see, not the machinery's.
        return {"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": _traceback()}, False
    return {
        "id": rid,
        "ok": True,
        "value": value,
        "elapsed_ns": time.monotonic_ns() - start,
    }, False


def _send(out: IO[str], message: dict[str, Any]) -> None:
    try:
        line = json.dumps(message)
    except (TypeError, ValueError) as exc:
        line = json.dumps(
            {
                "id": message.get("id"),
                "ok": False,
                "error": f"unserialisable reply: {exc}",
            }
        )
    out.write(line + "\n")
    out.flush()


def _private_stdout() -> IO[str]:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _log_clock(now: float) -> None:
    """Put CLOCK_MONOTONIC in the kernel log, whose timestamps are another clock: the
    lab's boot timeline places the hello's times by this line (lab.vm.timeline)."""
    try:
        fd = os.open("/dev/kmsg", os.O_WRONLY)
    except OSError:
        return  # not root, or no /dev/kmsg (a hand-run agent): the timeline guesses
    try:
        os.write(fd, f"<6>kernel-lab: agent clock {now:.6f}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def main(started: float | None = None, *, zygote: bool = False) -> int:
    """Serve requests until EOF; ``started`` is when the interpreter came up (for the
    boot timeline: the hello says how long the agent's own start took), or when the
    zygote that was already up took the handoff (``zygote``: guest/zygote.py)."""
    out = _private_stdout()
    try:
        native.load()
    except ImportError as exc:
        _send(out, {"hello": {"protocol": PROTOCOL_VERSION, "error": str(exc)}})
        return 1
    now = time.monotonic()
    _log_clock(now)
    _send(
        out,
        {
            "hello": {
                "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(),
                "release": os.uname().release,
                "python": sys.version.split()[0],  # platform.python_version(), unimported
                "areas": areas(),
                "zygote": zygote,
                "clock": {"python": started if started is not None else now,
                          "imports": now},
            }
        },
    )
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0  # EOF: the lab closed our stdin
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            _send(out, {"id": None, "ok": False, "error": f"bad JSON: {exc}"})
            continue
        reply, stop = handle(request)
        _send(out, reply)
        if stop:
            return 0
