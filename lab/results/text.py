"""Text from a guest made safe for a terminal: its control characters spelled out.

A kernel under test prints what it likes, and its splats, console lines and the agent's
stderr reach failure messages, the closing summary and the runner's lines.  An escape
sequence among them (``\\x1b]0;...\\x07`` sets the terminal's title; others move the
cursor, rewrite what is shown or, in some terminals, answer back as if typed) would act
on the user's terminal.  Records (JSON) keep the raw text; report.html is autoescaped
and a browser shows no control character as one.
"""

from __future__ import annotations

import re

# C0 but newline and tab, DEL, and C1 (U+0080-U+009F: a terminal may take 0x9b for ESC [).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with each control character but newline and tab as ``\\xNN`` text."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
