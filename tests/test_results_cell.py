"""Cell labels, and a test's scenario (its id without the cell)."""

from __future__ import annotations

import pytest

from lab.results.cell import cell_label, keyword_for, label_of, scenario_of


def test_labels() -> None:
    assert cell_label("debian:7.2", None) == "debian:7.2"
    assert cell_label("debian:7.2", "prebuilt") == "debian:7.2"
    assert cell_label("debian-src:7.2", "aio-off+debug") == "debian-src:7.2/aio-off+debug"
    assert label_of({"spec": "debian-src:7.2", "variant": "base"}) == "debian-src:7.2/base"
    assert len(cell_label("/very/long/path/to/a/kernel/tree/arch/x86/boot/bzImage", None)) <= 32


@pytest.mark.parametrize("test, cell, want", [
    ("f.py::t[debian:7.2]", "debian:7.2", "f.py::t"),
    ("f.py::t[debian:7.2-io_setup]", "debian:7.2", "f.py::t[io_setup]"),
    ("f.py::t[io_setup-debian-src:7.2/debug]", "debian-src:7.2/debug", "f.py::t[io_setup]"),
    ("f.py::t[a-debian:7.2-b]", "debian:7.2", "f.py::t[a-b]"),
    ("f.py::t[debian:7.2.13-1]", "debian:7.2", "f.py::t[debian:7.2.13-1]"),  # another cell
    ("f.py::t", "debian:7.2", "f.py::t"),
])
def test_scenario_of(test: str, cell: str, want: str) -> None:
    assert scenario_of(test, cell) == want


def test_keyword_splits_what_k_cannot_parse() -> None:
    assert keyword_for("t[io_setup-debian:7.2]") == "t[io_setup-debian:7.2]"
    assert keyword_for("t[git:/src/linux@v7.2]") == "t[git:/src/linux and v7.2]"
