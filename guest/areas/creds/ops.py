"""creds.call / creds.run: run ops with other credentials than the agent's.

creds.call: one op in a fresh thread with capabilities dropped.

Linux credentials are per task (thread).  capset(2) with header.pid = 0
changes only the calling thread, so a short-lived thread can drop
capabilities, run the inner op, and exit, while the agent's main thread keeps
its privileges.  glibc/libcap helpers are avoided on purpose: set*id-style
wrappers broadcast credential changes to every thread of the process.

creds.run: a sequence of ops in a forked child with a chosen uid, groups,
capability set and RLIMIT_MEMLOCK (a uid change needs a process of its own:
the user's accounting — locked_vm — is per user, and it must be the child's
credentials, not the agent's, that the kernel sees).  The child may drop
more capabilities between ops; the result reports the credentials in effect.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import os
import resource
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from guest import native
from guest.areas.sys.ops import thread_status
from guest.registry import RequestError, lookup


def cap_number(name: str) -> int:
    lib = native.lib()
    full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
    if not hasattr(lib, full):
        raise ValueError(f"unknown capability {name!r}")
    return int(getattr(lib, full))


def _capget() -> tuple[Any, Any]:
    ffi, lib = native.ffi(), native.lib()
    hdr = ffi.new(
        "struct __user_cap_header_struct *",
        {"version": lib._LINUX_CAPABILITY_VERSION_3, "pid": 0},
    )
    data = ffi.new("struct __user_cap_data_struct[]", lib._LINUX_CAPABILITY_U32S_3)
    native.check(int(lib.lab_capget(hdr, data)))
    return hdr, data


def drop_caps_this_thread(caps: list[int]) -> None:
    """Clear caps from this thread's effective and permitted sets."""
    hdr, data = _capget()
    for cap in caps:
        word, bit = divmod(cap, 32)
        mask = ~(1 << bit) & 0xFFFFFFFF
        data[word].effective &= mask
        data[word].permitted &= mask
    try:
        native.check(int(native.lib().lab_capset(hdr, data)))
    except OSError as exc:
        # Not the inner op's errno: report as an agent error, not an errno reply.
        raise RuntimeError(f"capset failed: {exc}") from exc
    _, after = _capget()
    for cap in caps:
        word, bit = divmod(cap, 32)
        if (after[word].effective | after[word].permitted) >> bit & 1:
            raise RuntimeError(f"capability {cap} still set after capset")


def creds_call(drop: list[str], op: str, args: dict[str, Any] | None = None) -> Any:
    handler = lookup(op)
    caps = [cap_number(name) for name in drop]
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            drop_caps_this_thread(caps)
            box["value"] = handler(**(args or {}))
        except BaseException as exc:
            box["exc"] = exc

    thread = threading.Thread(target=worker, name=f"creds.call {op}")
    thread.start()
    thread.join()
    if "exc" in box:
        raise box["exc"]
    return box.get("value")


def _set_caps_this_thread(keep: list[int]) -> None:
    """Make effective = permitted = ``keep`` (inheritable cleared)."""
    hdr, data = _capget()
    words = [0] * int(native.lib()._LINUX_CAPABILITY_U32S_3)
    for cap in keep:
        word, bit = divmod(cap, 32)
        words[word] |= 1 << bit
    for i, mask in enumerate(words):
        data[i].effective = mask
        data[i].permitted = mask
        data[i].inheritable = 0
    native.check(int(native.lib().lab_capset(hdr, data)))


def current_creds() -> dict[str, Any]:
    """The credentials the kernel applies to this task, as /proc reports them."""
    fields = thread_status()
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return {
        "uid": [int(x) for x in fields["Uid"].split()],
        "gid": [int(x) for x in fields["Gid"].split()],
        "groups": [int(x) for x in fields.get("Groups", "").split()],
        "cap_eff": fields["CapEff"],
        "cap_prm": fields["CapPrm"],
        "memlock": [soft, hard],
    }


# A child that changed uid may no longer read the agent's directory (a 0700
# tmpfs in the guest) or the interpreter's: everything it needs must be
# imported before the fork, codecs included.
codecs.lookup("ascii")


def _resolve(value: Any, results: list[dict[str, Any]]) -> Any:
    """``{"$": i}`` stands for step i's value; ``{"$": i, "key": k}`` for a field of it."""
    if isinstance(value, dict):
        if "$" in value and set(value) <= {"$", "key"}:
            ref = results[int(value["$"])]
            if "value" not in ref:
                raise ValueError(f"step {value['$']} has no value to refer to: {ref}")
            got = ref["value"]
            return got[value["key"]] if "key" in value else got
        return {k: _resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results) for v in value]
    return value


def _run_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for step in steps:
        try:
            if "drop" in step:
                drop_caps_this_thread([cap_number(n) for n in step["drop"]])
                results.append({"value": current_creds()})
                continue
            handler = lookup(str(step["op"]))
            args = _resolve(step.get("args") or {}, results)
            results.append({"value": handler(**args)})
        except OSError as exc:
            if exc.errno is None:
                results.append({"error": f"OSError: {exc}"})
            else:
                results.append({"errno": errno.errorcode.get(exc.errno, str(exc.errno))})
        except Exception as exc:
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    return results


def _child(w: int, uid: int | None, gid: int | None, groups: list[int] | None,
           caps: list[str] | None, memlock: int | None, steps: list[dict[str, Any]]) -> None:
    """The forked child: set credentials (rlimit, groups, ids, caps) then run the steps."""
    try:
        if memlock is not None:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (memlock, memlock))
        if groups is not None:
            os.setgroups(groups)
        if gid is not None:
            os.setresgid(gid, gid, gid)
        if uid is not None and uid != 0 and caps:
            # Keep the permitted set across the uid change; capset trims it below.
            native.check(int(native.lib().lab_prctl(native.lib().PR_SET_KEEPCAPS, 1)))
        if uid is not None:
            os.setresuid(uid, uid, uid)
        if caps is not None:
            _set_caps_this_thread([cap_number(n) for n in caps])
        reply: dict[str, Any] = {"creds": current_creds(), "steps": _run_steps(steps)}
    except BaseException as exc:
        reply = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    data = json.dumps(reply, default=str).encode()
    while data:
        data = data[os.write(w, data):]


def creds_run(steps: list[dict[str, Any]], *, uid: int | None = None, gid: int | None = None,
              groups: list[int] | None = None, caps: list[str] | None = None,
              memlock: int | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Run ``steps`` in a forked child with the given credentials; the agent keeps its own.

    ``caps`` is the exact capability set to hold (effective = permitted),
    None keeps the agent's; a step ``{"drop": [names]}`` drops more later.
    Returns ``{"creds": {...}, "steps": [{"value"}|{"errno"}|{"error"}]}``.
    """
    # The steps' areas are imported here, with the agent's credentials: the child's may
    # not read the agent's files (its directory is root's, mode 0700).
    for step in steps:
        if "op" in step:
            with contextlib.suppress(RequestError):  # the child reports it as the step's
                lookup(str(step["op"]))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            _child(w, uid, gid, groups, caps, memlock, steps)
            code = 0
        finally:
            # Never return into the agent's loop, never flush its buffers twice.
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise OSError(errno.ETIMEDOUT, f"creds.run child did not finish in {timeout} s")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError("creds.run child died without a reply")
    reply: dict[str, Any] = json.loads(b"".join(chunks))
    if "error" in reply:
        raise RuntimeError(f"creds.run child failed: {reply['error']}")
    return reply


OPS: dict[str, Callable[..., Any]] = {"creds.call": creds_call, "creds.run": creds_run}
