"""A small client of QEMU's machine protocol (QMP) on a unix socket: pause, resume, ask the
state, and write the guest's memory to a file (``dump-guest-memory``).

QEMU listens on ``-qmp unix:PATH,server=on,wait=off`` (lab.vm.vm.qemu_opts); the socket is
QEMU's, made where the lab says, so only the lab's user can connect.  One connection per
use: QMP greets, the client asks for ``qmp_capabilities``, then each command is one JSON
line answered by one ``return`` or ``error`` line, with asynchronous events (STOP,
RESUME, DUMP_COMPLETED) interleaved.

A dump is written by QEMU itself, to a file the lab opens and hands over (``getfd``, an
SCM_RIGHTS message): QEMU needs no path of the host's, and the file is the lab's.  QEMU's
RLIMIT_FSIZE still bounds it (lab.vm.vm: raised to the guest's memory when dumping).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from lab.errors import InfraError

# What QEMU 7.2's dump-guest-memory writes (qapi/dump.json); win-dmp is for Windows guests.
FORMATS = ("elf", "kdump-zlib", "kdump-lzo", "kdump-snappy")
# The longest path a unix socket address holds (sun_path, with its NUL).
SUN_PATH_MAX = 107
# A reply line past this is not QEMU's (its largest, query-qmp-schema, is ~200 KB).
LINE_CAP = 4 << 20


class QmpError(InfraError):
    """QEMU refused a command, went away, or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, phase="qmp")


class Qmp:
    """One QMP connection, capabilities negotiated; use as ``with Qmp(path) as q:``."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(str(path))
            greeting = self._line(time.monotonic() + timeout)
            if "QMP" not in greeting:
                raise QmpError(f"{path}: not QMP's greeting: {str(greeting)[:200]}")
            self.command("qmp_capabilities")
        except OSError as exc:
            self.sock.close()
            raise QmpError(f"cannot reach QEMU's QMP socket {path}: {exc}") from None
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _line(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QmpError(f"QEMU did not answer on {self.path} in time")
            if len(self._buf) > LINE_CAP:
                raise QmpError(f"a QMP line past {LINE_CAP} bytes on {self.path}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise QmpError(f"QMP connection {self.path} failed: {exc}") from None
            if not chunk:
                raise QmpError(f"QEMU closed its QMP socket {self.path} (it exited)")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        value = json.loads(line)
        if not isinstance(value, dict):
            raise QmpError(f"not a QMP message: {line[:200]!r}")
        return value

    def command(self, name: str, *, fds: list[int] | None = None,
                timeout: float | None = None, **arguments: Any) -> Any:
        """Run ``name`` and return its ``return`` value; QmpError with QEMU's words when it
        refuses.  ``fds`` go along as SCM_RIGHTS (``getfd``).  Events that arrive before
        the answer are kept in ``events``."""
        msg: dict[str, Any] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        data = json.dumps(msg).encode() + b"\n"
        try:
            if fds:
                socket.send_fds(self.sock, [data], fds)
            else:
                self.sock.sendall(data)
        except OSError as exc:
            raise QmpError(f"cannot send {name} to QEMU: {exc}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._line(deadline)
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                err = reply["error"]
                raise QmpError(f"QEMU refused {name}: {err.get('desc', err)}")
            elif "return" in reply:
                return reply["return"]

    def event(self, name: str, *, timeout: float) -> dict[str, Any]:
        """The next event called ``name`` (one already seen first)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("event") == name:
                    return self.events.pop(i)
            try:
                self.events.append(self._line(deadline))
            except QmpError as exc:
                raise QmpError(f"no {name} from QEMU: {exc}") from None

    # -- the commands the lab uses ------------------------------------------------------

    def status(self) -> str:
        """The run state: "running", "paused", "guest-panicked", "prelaunch"..."""
        return str(self.command("query-status")["status"])

    def stop(self) -> None:
        """Pause every vCPU (idempotent)."""
        self.command("stop")

    def cont(self) -> None:
        self.command("cont")

    def formats(self) -> list[str]:
        """The dump formats this QEMU was built with."""
        found = self.command("query-dump-guest-memory-capability")["formats"]
        return [str(f) for f in found]

    def dump(self, path: Path, fmt: str = "kdump-zlib", *, timeout: float = 600.0) -> int:
        """The guest's memory written to ``path`` (made here, 0600) in ``fmt``; its size.

        Waits for QEMU to finish and say DUMP_COMPLETED (a running guest is paused for
        the dump and resumed after).  A failed dump leaves
        no file.  ``paging`` is off: the kdump formats refuse it, and drgn and crash read
        the physical memory with the kernel's own page tables.
        """
        if fmt not in FORMATS:
            raise ValueError(f"dump format {fmt!r}: one of {', '.join(FORMATS)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        name = f"dump{os.getpid()}-{fd}"
        try:
            try:
                self.command("getfd", fdname=name, fds=[fd])
            finally:
                os.close(fd)  # QEMU has its own copy
            # Not detached: QEMU 7.2's detached dump can close the next dump's file as
            # it cleans up (a shared state; "failed to sync cache" seen), and the lab
            # waits for the dump anyway.
            self.command("dump-guest-memory", paging=False, protocol=f"fd:{name}",
                         format=fmt, timeout=timeout)
            done = self.event("DUMP_COMPLETED", timeout=timeout)
            error = done.get("data", {}).get("error")
            if error:
                raise QmpError(f"QEMU could not dump the guest's memory to {path}: {error}")
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return path.stat().st_size


def socket_path(vmdir: Path) -> Path:
    """Where QEMU listens: in the VM's directory when the path fits a socket address."""
    return vmdir / "qmp.sock"


def fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= SUN_PATH_MAX
