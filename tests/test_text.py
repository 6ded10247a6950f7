"""Guest text made safe for a terminal (lab.results.text.printable)."""

from __future__ import annotations

from lab.results.text import printable


def test_control_characters_but_newline_and_tab_are_spelled_out() -> None:
    assert printable("a\x1b]0;title\x07b") == "a\\x1b]0;title\\x07b"
    assert printable("\x00\r\x7f\x80\x9b\x9f") == "\\x00\\x0d\\x7f\\x80\\x9b\\x9f"
    assert printable("line\n\tindented é ✓ \xa0") == "line\n\tindented é ✓ \xa0"
