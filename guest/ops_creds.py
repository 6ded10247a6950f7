"""creds.call: run one op in a fresh thread with capabilities dropped.

Linux credentials are per task (thread).  capset(2) with header.pid = 0
changes only the calling thread, so a short-lived thread can drop
capabilities, run the inner op, and exit, while the agent's main thread keeps
its privileges.  glibc/libcap helpers are avoided on purpose: set*id-style
wrappers broadcast credential changes to every thread of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from guest import native


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
    # Imported here: protocol imports this module to build its op table.
    from guest.protocol import lookup

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


OPS: dict[str, Callable[..., Any]] = {"creds.call": creds_call}
