"""Splat traces decoded to file:line by the kernel's own ``scripts/decode_stacktrace.sh``.

A kernel whose kept vmlinux has line tables (the ``debuginfo`` fragment) gets each
splat's excerpt decoded: every ``func+0x1a/0x40`` frame gains its file and line (and the
inlined frames), the ``Code:`` line its instructions.  The decoded text goes beside the
excerpt in the splat's dict (``decoded``), so the record and the report show it.  A
kernel without DWARF, or without the tree's script, gets none, and nothing else changes:
decoding is a help, never a verdict, and a failure of it is logged and left out.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab import proc
from lab.kernel.artifact import Kernel
from lab.kernel.symbols import decode_script, has_dwarf

log = logging.getLogger("lab.kernel.decode")

DECODED = "decoded"  # the key of a splat's dict that holds its decoded excerpt
# addr2line reads a big vmlinux's DWARF once per address: seconds a frame under load.
TIMEOUT = 300.0


def decoder(kernel: Kernel) -> tuple[Path, Path] | None:
    """(decode_stacktrace.sh, vmlinux) for ``kernel``, None when it cannot be decoded."""
    script = decode_script(kernel)
    vmlinux = kernel.vmlinux
    if script is None or vmlinux is None or not vmlinux.is_file() or not has_dwarf(vmlinux):
        return None
    return script, vmlinux


def decode_text(text: str, *, script: Path, vmlinux: Path,
                timeout: float = TIMEOUT) -> str | None:
    """``text`` (kernel log lines) with its frames decoded; None when nothing was (no
    frame the vmlinux knows) or the script failed."""
    with tempfile.TemporaryDirectory(prefix="kernel-lab-decode-") as tmp:
        given = Path(tmp) / "excerpt.txt"
        given.write_text(text if text.endswith("\n") else text + "\n")
        try:
            # "auto": file names relative to the tree the kernel was built in.
            done = proc.run(["bash", str(script), str(vmlinux), "auto"], phase="decode",
                            timeout=timeout, stdin_path=given, cwd=Path(tmp))
        except proc.ProcessError as exc:
            log.warning("decoding a trace with %s failed: %s", script, exc)
            return None
    out = done.stdout
    return out if out.strip() and out.split() != text.split() else None


def decode_splats(kernel: Kernel,
                  splats: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``splats`` (Splat.to_dict's) with each excerpt's decoded text added where it can be
    (a splat decoded before is left as it is)."""
    tools = decoder(kernel)
    if tools is None:
        return [dict(s) for s in splats]
    script, vmlinux = tools
    out: list[dict[str, Any]] = []
    for s in splats:
        excerpt = str(s.get("excerpt") or "")
        decoded = None if DECODED in s or not excerpt else decode_text(
            excerpt, script=script, vmlinux=vmlinux)
        out.append({**s, DECODED: decoded} if decoded is not None else dict(s))
    return out
