"""Debian's version order (as dpkg compares) and deb822 stanzas, on golden apt output."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.kernel.deb822 import compare_versions, in_series, parse_depends, parse_stanzas

GOLDEN = Path(__file__).parent / "golden" / "apt"

# --- Debian versions ----------------------------------------------------------------------

VERSION_CASES = [
    ("7.2.13-1", "7.2.9-1", 1),
    ("7.3~rc7-1~exp1", "7.2.13-1", 1),
    ("7.3~rc7-1~exp1", "7.3-1", -1),  # a release candidate sorts before the release
    ("7.3~rc7-1~exp1", "7.3~rc7-1", -1),  # ~exp1 revision before the plain one
    ("7.3~rc6-1~exp1", "7.3~rc7-1~exp1", -1),
    ("1.0~~", "1.0~", -1),
    ("1.0~", "1.0", -1),
    ("1.0", "1.0a", -1),
    ("1.0a", "1.0+", -1),  # letters sort before other characters
    ("6.12.107+deb13", "6.12.107", 1),
    ("7.2.13+deb14-1", "7.2.13-1", 1),
    ("6.1.176-1", "6.1.176-1+deb12u1", -1),
    ("6.1.0-50", "6.1.0-9", 1),
    ("6.12.107-1", "6.1.176-1", 1),
    ("1:1.0-1", "2.0-1", 1),  # the epoch wins
    ("0:7.2.13-1", "7.2.13-1", 0),
    ("1.00", "1.0", 0),
    ("1.0-2", "1.0-10", -1),
    ("1.0-1", "1.0-1.1", -1),
    ("10.0", "9.99", 1),
]


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


@pytest.mark.parametrize(("a", "b", "expected"), VERSION_CASES)
def test_compare_versions(a: str, b: str, expected: int) -> None:
    assert _sign(compare_versions(a, b)) == expected
    assert _sign(compare_versions(b, a)) == -expected


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg to compare with")
def test_compare_versions_agrees_with_dpkg() -> None:
    for a, b, _ in VERSION_CASES:
        for op, want in (("lt", -1), ("eq", 0), ("gt", 1)):
            dpkg = subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0
            assert dpkg == (_sign(compare_versions(a, b)) == want), (a, op, b)


@pytest.mark.parametrize(
    ("version", "series", "expected"),
    [
        ("6.1.176-1", "6.1", True),
        ("6.12.107-1", "6.1", False),
        ("6.12.107-1", "6.12", True),
        ("7.3~rc7-1~exp1", "7.3", True),
        ("7.3-1", "7.3", True),
        ("7.30.1-1", "7.3", False),
        ("7.2.13-1", "7.3", False),
    ],
)
def test_in_series(version: str, series: str, expected: bool) -> None:
    assert in_series(version, series) is expected


# --- deb822 --------------------------------------------------------------------------------


def test_parse_golden_metapackage_stanzas() -> None:
    stanzas = parse_stanzas((GOLDEN / "linux-image-amd64.txt").read_text())
    assert [s["Version"] for s in stanzas] == [
        "7.3~rc7-1~exp1", "7.2.13-1", "6.12.107-1", "6.1.176-1"
    ]
    assert all(s["Package"] == "linux-image-amd64" for s in stanzas)
    assert stanzas[3]["Depends"] == "linux-image-6.1.0-50-amd64 (= 6.1.176-1)"
    assert len(stanzas[0]["SHA256"]) == 64


def test_parse_stanzas_continuations_and_noise() -> None:
    text = (
        "Package: a\nVersion: 1\nDescription: short\n long line\n .\n more\n\n"
        "N: a note from apt\n\n"
        "Package: b\nVersion: 2\n"
    )
    a, b = parse_stanzas(text)
    assert a["Description"] == "short\nlong line\n.\nmore"
    assert b == {"Package": "b", "Version": "2"}


def test_parse_depends() -> None:
    entries = parse_depends(
        "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, "
        "linux-base-7.3-amd64 (= 7.3~rc7-1~exp1), kmod:any"
    )
    assert [[r.name for r in alts] for alts in entries] == [
        ["dracut", "initramfs-tools", "linux-initramfs-tool"], ["linux-base-7.3-amd64"], ["kmod"]
    ]
    assert (entries[0][1].op, entries[0][1].version) == (">=", "0.120+deb8u2")
    assert (entries[1][0].op, entries[1][0].version) == ("=", "7.3~rc7-1~exp1")
