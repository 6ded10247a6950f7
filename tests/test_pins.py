"""Pinned kernel specs: what a reproducer names parses back to the same kernel.

Image paths with odd characters, an image hashed when it was resolved (not when a
record is written), a Debian source's exact version, a plain tree's content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from test_fetch import _bzimage

from lab.errors import UserError
from lab.kernel import artifact
from lab.kernel.artifact import Kernel
from lab.kernel.resolve import resolve_kernel
from lab.kernel.spec import PathSpec, parse_spec
from lab.vm import session
from lab.vm.vm import VmConfig

SHA = "ab" * 32

# Directory names an image (and its modules) may live under; each must round-trip.
ODD = ["linux,kasan", "with space", "at@sign", "a=b", "c,d=e", "x,modules-y", "k,sha256=zz/deeper",
       "trailing,", "debian:7.2", "~tilde", "modules=m", "sha256=" + SHA]


@pytest.mark.parametrize("odd", ODD)
def test_a_pinned_image_path_round_trips(tmp_path: Path, odd: str) -> None:
    image = tmp_path / odd / "bzImage"
    image.parent.mkdir(parents=True)
    image.write_bytes(_bzimage("7.2.0"))
    modules = tmp_path / odd / "lib" / "modules" / "7.2.0"
    modules.mkdir(parents=True)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    for given in (str(image), f"{image},modules={modules}", f"{image},sha256={digest}",
                  f"{image},sha256={digest},modules={modules}",
                  f"{image},modules={modules},sha256={digest.upper()}"):
        k = resolve_kernel(given, cache=tmp_path / "cache")
        assert k.image == image
        want_modules = modules if "modules=" in given.removeprefix(str(image)) else None
        assert k.modules == want_modules, given
        pinned = k.pinned_spec()
        assert parse_spec(pinned) == PathSpec(image, want_modules, digest), pinned
        again = resolve_kernel(pinned, cache=tmp_path / "cache")
        assert (again.image, again.modules, again.release) == (image, want_modules, "7.2.0")
        assert again.pinned_spec() == pinned


def test_a_path_with_a_comma_is_a_path() -> None:
    assert parse_spec("/data/linux,kasan/bzImage") == PathSpec(Path("/data/linux,kasan/bzImage"))
    assert parse_spec("linux,kasan/bzImage") == PathSpec(Path("linux,kasan/bzImage"))
    assert parse_spec(f"/d/a,b/bzImage,modules=/d/a,b/lib/modules/7.2,sha256={SHA}") == PathSpec(
        Path("/d/a,b/bzImage"), Path("/d/a,b/lib/modules/7.2"), SHA)
    assert parse_spec(f"/d/a,b/bzImage,sha256={SHA},modules=/m,n/7.2") == PathSpec(
        Path("/d/a,b/bzImage"), Path("/m,n/7.2"), SHA)


@pytest.mark.parametrize("text, needle", [
    ("/d/x,modules=y/bzImage,modules=/m/7.2", "',modules=' more than once"),
    (f"/d/bzImage,sha256={SHA},sha256={SHA}", "',sha256=' more than once"),
    (f"/d/bzImage,sha256={SHA[:-1]}", "not a SHA-256"),
    ("/d/bzImage,sha256=xyz", "not a SHA-256"),
    ("/d/bzImage,modules=", "bad kernel spec"),
    (",modules=/m/7.2", "bad kernel spec"),
])
def test_options_that_cannot_be_told_from_the_path_are_one_line(text: str, needle: str) -> None:
    with pytest.raises(UserError) as exc:
        parse_spec(text)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_an_image_reached_through_a_path_that_cannot_be_named_is_refused(tmp_path: Path) -> None:
    # The pin names the resolved file: a link may hide a ',modules=' the pin cannot carry.
    real = tmp_path / "x,modules=y" / "bzImage"
    real.parent.mkdir()
    real.write_bytes(_bzimage("7.2.0"))
    link = tmp_path / "bzImage"
    link.symlink_to(real)
    with pytest.raises(UserError, match="cannot be named") as exc:
        resolve_kernel(str(link), cache=tmp_path / "cache")
    assert "\n" not in str(exc.value)


def test_a_missing_image_with_a_comma_says_the_comma_is_part_of_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist") as exc:
        resolve_kernel(f"{tmp_path}/bzImage,modulse=/m", cache=tmp_path)
    assert ",modules=DIR" in str(exc.value)


# -- an image is hashed once, when it is resolved --------------------------------------------


def _image(tmp_path: Path, release: str = "7.2.0") -> Path:
    image = tmp_path / "linux" / "arch" / "x86" / "boot" / "bzImage"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(_bzimage(release))
    return image


def test_the_pin_names_the_image_as_it_was_resolved(tmp_path: Path) -> None:
    image = _image(tmp_path)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    k = resolve_kernel(str(image), cache=tmp_path / "cache")
    assert k.image_sha256 == digest
    # `make` during a long run: records written after it still name what was resolved.
    image.write_bytes(_bzimage("7.2.0") + b"rebuilt")
    assert k.pinned_spec() == f"{image},sha256={digest}"
    assert k.identity()["pinned"] == f"{image},sha256={digest}"
    assert k.identity()["image_sha256"] == digest
    # The cache entry's round trip keeps it.
    assert Kernel.from_json(k.to_json(tmp_path), tmp_path).image_sha256 == digest


def _machine(k: Kernel, tmp_path: Path) -> session.Machine:
    return session.Machine(k, run_dir=tmp_path, cache=tmp_path / "cache",
                           config=VmConfig(accel="tcg"), name="t", call_timeout=10,
                           max_reboots=3)


def test_a_guest_is_not_booted_from_an_image_that_changed_since(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _image(tmp_path)
    k = resolve_kernel(str(image), cache=tmp_path / "cache")
    booted: list[Path] = []
    monkeypatch.setattr(session.Machine, "_start_or_retry",
                        lambda self: booted.append(self.kernel.image))
    machine = _machine(k, tmp_path)
    machine.start()  # the same file: boots
    assert booted == [image]
    image.write_bytes(_bzimage("7.2.1"))  # a guest replaced after a crash would boot this
    new = hashlib.sha256(image.read_bytes()).hexdigest()
    with pytest.raises(session.ImageChanged) as exc:
        machine.start()
    assert booted == [image]
    msg = str(exc.value)
    assert "\n" not in msg and str(image) in msg and k.image_sha256 in msg and new in msg
    # The run stops where a crash loop stops it (lab.run.plugin catches RebootLimit).
    assert isinstance(exc.value, session.RebootLimit)


def test_a_kernel_of_the_lab_s_cache_is_not_rehashed_at_boot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _image(tmp_path)
    k = Kernel(spec="debian:7.2", release="7.2.0", image=image, source="debian",
               package_version="7.2.13-1")
    monkeypatch.setattr(session.Machine, "_start_or_retry", lambda self: None)
    monkeypatch.setattr(artifact, "file_sha256", lambda path: pytest.fail("hashed"))
    _machine(k, tmp_path).start()
