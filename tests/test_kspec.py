"""Kernel spec parsing: valid forms, and one-line errors that list them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import UserError
from lab.kernel.catalogue import load_catalogue
from lab.kernel.spec import DebianSpec, PathSpec, parse_spec, valid_forms


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.2", "7.3"])
def test_debian_series(series: str) -> None:
    assert parse_spec(f"debian:{series}") == DebianSpec(series=series, exact=None)


@pytest.mark.parametrize(
    "version", ["7.2.13-1", "6.1.176-1", "7.3~rc7-1~exp1", "6.12.107-1", "1:7.2.13-1"]
)
def test_debian_exact(version: str) -> None:
    assert parse_spec(f"debian:{version}") == DebianSpec(series=None, exact=version)


def test_catalogue_series_are_the_known_ones() -> None:
    assert list(load_catalogue().series) == ["6.1", "6.12", "7.2", "7.3"]
    # 7.3 is the released 7.3.4 from trixie-backports; experimental's rc stays listed.
    assert load_catalogue().series["7.3"] == "trixie-backports"
    assert {"experimental", "bookworm-backports", "trixie-backports"} <= set(
        load_catalogue().suites)


def test_path_spec_plain_and_with_modules(tmp_path: Path) -> None:
    assert parse_spec("/boot/vmlinuz-6.1.0-50-amd64") == PathSpec(
        image=Path("/boot/vmlinuz-6.1.0-50-amd64"), modules=None
    )
    spec = parse_spec(f"{tmp_path}/bzImage,modules={tmp_path}/lib/modules/7.2.0")
    assert spec == PathSpec(image=tmp_path / "bzImage", modules=tmp_path / "lib/modules/7.2.0")
    assert parse_spec("./arch/x86/boot/bzImage") == PathSpec(Path("arch/x86/boot/bzImage"))


def test_existing_bare_file_is_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bzImage").write_bytes(b"x")
    assert parse_spec("bzImage") == PathSpec(Path("bzImage"))


def _one_line_listing_forms(exc: pytest.ExceptionInfo[UserError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert "debian:SERIES (6.1, 6.12, 7.2, 7.3)" in msg
    assert "IMAGE[,modules=DIR]" in msg
    return msg


@pytest.mark.parametrize("text", ["6.1", "bzimage", "debian", "foo:bar", "ubuntu:24.04"])
def test_unknown_forms(text: str) -> None:
    with pytest.raises(UserError) as exc:
        parse_spec(text)
    assert repr(text) in _one_line_listing_forms(exc)


def test_unknown_debian_series_lists_known_series() -> None:
    with pytest.raises(UserError) as exc:
        parse_spec("debian:5.10")
    msg = str(exc.value)
    assert "\n" not in msg and "6.1, 6.12, 7.2, 7.3" in msg and "'debian:5.10'" in msg


def test_incomplete_debian_spec() -> None:
    with pytest.raises(UserError) as exc:
        parse_spec("debian:")
    _one_line_listing_forms(exc)


@pytest.mark.parametrize("text", ["git:/src/linux@v7.2", "tree:/src/linux", "debian-src:7.2"])
def test_built_kinds_are_valid_forms(text: str) -> None:
    # Parsed (lab/kernel/spec.py); their parsing is tested in tests/test_kconfig.py.
    parse_spec(text)
    assert text.split(":", 1)[0] + ":" in valid_forms()
