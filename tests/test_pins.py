"""Pinned kernel specs: what a reproducer names parses back to the same kernel.

Image paths with odd characters, an image hashed when it was resolved (not when a
record is written), a Debian source's exact version, a plain tree's content.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_fetch import _bzimage
from test_kconfig import FakeMake, _fake_tree
from test_mirror import GitAndFakeMake, _configured

from lab import proc
from lab.errors import UserError
from lab.kernel import apt as aptlib
from lab.kernel import artifact, build, mirror, source
from lab.kernel.apt import Apt
from lab.kernel.artifact import Kernel
from lab.kernel.catalogue import load_catalogue
from lab.kernel.resolve import check, resolve_kernel
from lab.kernel.spec import DebianSrcSpec, PathSpec, TreeSpec, parse_spec, valid_forms
from lab.vm import session
from lab.vm.vmconfig import VmConfig

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


# -- a Debian source's exact version ---------------------------------------------------------


def test_debian_src_takes_an_exact_version() -> None:
    assert parse_spec("debian-src:7.2.13-1") == DebianSrcSpec("7.2", exact="7.2.13-1")
    assert parse_spec("debian-src:7.3.4-1~bpo13+1") == DebianSrcSpec("7.3", "7.3.4-1~bpo13+1")
    assert parse_spec("debian-src:7.2") == DebianSrcSpec("7.2")
    assert "debian-src:VERSION" in valid_forms()
    with pytest.raises(UserError) as exc:
        parse_spec("debian-src:5.10.1-1")
    assert "6.1, 6.12, 7.2, 7.3" in str(exc.value) and "\n" not in str(exc.value)


def test_a_debian_src_kernel_pins_to_its_version() -> None:
    k = Kernel(spec="debian-src:7.2", release="7.2.13", image=Path("/c/bzImage"),
               source="debian-src", variant="base",
               packages=("debian-src:linux-source-7.2=7.2.13-1",))
    assert k.pinned_spec() == "debian-src:7.2.13-1"
    assert parse_spec(k.pinned_spec()) == DebianSrcSpec("7.2", exact="7.2.13-1")


class FakeSourceHost:
    """apt's side of debian-src: lists that hold ``listed`` versions of linux-source-7.2
    (a real .deb of a fake tree behind each); dpkg-deb and tar run for real."""

    def __init__(self, tmp_path: Path, listed: list[str]) -> None:
        self.calls: list[list[str]] = []
        self.debs: dict[str, Path] = {}
        for version in listed:
            self.debs[version] = self._deb(tmp_path / "debs" / version, version)
        self.listed = listed

    @staticmethod
    def _deb(where: Path, version: str) -> Path:
        tree = _fake_tree(where / "linux-source-7.2")
        (tree / "VERSION.txt").write_text(version)
        pkg = where / "pkg"
        (pkg / "DEBIAN").mkdir(parents=True)
        (pkg / "DEBIAN" / "control").write_text(
            f"Package: linux-source-7.2\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: t <t@example.org>\nDescription: t\n")
        (pkg / "usr" / "src").mkdir(parents=True)
        subprocess.run(["tar", "-cJf", str(pkg / "usr/src/linux-source-7.2.tar.xz"), "-C",
                        str(where), "linux-source-7.2"], check=True)
        subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(pkg), str(where / "out.deb")],
                       check=True, capture_output=True)
        return where / "out.deb"

    def __call__(self, argv: Sequence[str], **kw: Any) -> str:
        self.calls.append(list(argv))
        if argv[0] in ("dpkg-deb", "tar"):
            return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        args = list(argv[3:])
        if args[0] == "update":
            lists = tmp_lists(argv)
            lists.mkdir(parents=True, exist_ok=True)
            (lists / "x_Packages").write_text("")
            return ""
        if args[:2] == ["show", "linux-source-7.2"]:
            return "\n".join(
                f"Package: linux-source-7.2\nVersion: {v}\nFilename: pool/l_{v}_all.deb\n"
                f"Size: {self.debs[v].stat().st_size}\n"
                f"SHA256: {hashlib.sha256(self.debs[v].read_bytes()).hexdigest()}\n"
                for v in self.listed)
        if args[0] == "download":
            version = args[1].split("=", 1)[1]
            shutil.copy(self.debs[version], Path(kw["cwd"]) / f"linux-source-7.2_{version}_all.deb")
            return ""
        raise AssertionError(f"unexpected {argv}")

    def tools(self) -> list[str]:
        return [" ".join(c[i] for i in ((0, 3) if c[0].startswith("apt") else (0,)))
                for c in self.calls]


def tmp_lists(argv: Sequence[str]) -> Path:
    return Path(argv[2]).parent / "lists"


def _fresh_lists(cache: Path) -> None:
    apt = Apt(cache, load_catalogue())
    apt.lists.mkdir(parents=True)
    (apt.lists / "x_Packages").write_text("")
    apt.stamp.write_text(apt._sources_digest() + "\n")


def test_an_exact_debian_source_is_that_version_not_the_newest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    fake = FakeSourceHost(tmp_path, ["7.2.13-1", "7.2.14-1"])
    monkeypatch.setattr(aptlib, "run_tool", fake)
    _fresh_lists(cache)
    tree = source.debian_source("7.2", exact="7.2.13-1", cache=cache)
    assert tree.identity == "debian-src:linux-source-7.2=7.2.13-1"
    assert (tree.path / "VERSION.txt").read_text() == "7.2.13-1"
    assert "apt-get download" in fake.tools()
    # The exact one is then served from the cache alone, with no lists read.
    fake.calls.clear()
    assert source.debian_source("7.2", exact="7.2.13-1", cache=cache).path == tree.path
    assert fake.calls == []
    # The series is still its newest in the lists, not an older exact entry of the cache;
    # once cached, it is found from the local lists alone (no update, no download).
    assert source.debian_source("7.2", cache=cache).identity.endswith("=7.2.14-1")
    fake.calls.clear()
    assert source.debian_source("7.2", cache=cache).identity.endswith("=7.2.14-1")
    assert fake.tools() == ["apt-cache show"]


def test_a_pinned_debian_source_builds_that_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(aptlib, "run_tool", FakeSourceHost(tmp_path, ["7.2.13-1", "7.2.14-1"]))
    monkeypatch.setattr(proc, "run", FakeMake())
    _fresh_lists(cache)
    k = resolve_kernel("debian-src:7.2.13-1", cache=cache, variant="base")
    assert k.identity()["source_id"] == "debian-src:linux-source-7.2=7.2.13-1"
    assert k.pinned_spec() == "debian-src:7.2.13-1"
    assert k.image.is_relative_to(build.built_dir(cache))


def test_an_exact_debian_source_neither_cached_nor_listed_names_what_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    fake = FakeSourceHost(tmp_path, ["7.2.14-1", "7.2.15-1"])
    monkeypatch.setattr(aptlib, "run_tool", fake)
    _fresh_lists(cache)
    with pytest.raises(UserError) as exc:
        source.debian_source("7.2", exact="7.2.13-1", cache=cache)
    msg = str(exc.value)
    assert "\n" not in msg and "linux-source-7.2 7.2.13-1" in msg
    assert "7.2.15-1, 7.2.14-1" in msg
    assert "apt-get update" in fake.tools()  # the lists were refreshed before saying so


# -- a plain tree, by its content ------------------------------------------------------------


def _sync(m: mirror.Mirror) -> mirror.Synced:
    with m.synced() as synced:
        return synced


def test_a_tree_s_fingerprint_is_its_content(tmp_path: Path) -> None:
    tree = _configured(tmp_path / "linux")
    m = mirror.Mirror(tree, cache=tmp_path / "cache")
    first = _sync(m).fingerprint
    aio = tree / "fs" / "aio.c"
    aio.write_text("int aio = 1;\n")
    edited = _sync(m).fingerprint
    assert edited != first
    aio.write_text("int aio;\n")  # the edit undone: the same state, the same fingerprint
    assert _sync(m).fingerprint == first
    (tree / "scripts" / "setlocalversion").chmod(0o644)  # what is executable counts
    assert _sync(m).fingerprint != first
    (tree / "scripts" / "setlocalversion").chmod(0o755)
    # A copy made afresh (another cache, or this one cleaned) names the same content alike.
    assert _sync(mirror.Mirror(tree, cache=tmp_path / "other")).fingerprint == first
    shutil.rmtree(m.root)
    assert _sync(m).fingerprint == first


def test_a_tree_pins_to_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _configured(tmp_path / "my@linux")
    cache = tmp_path / "cache"
    monkeypatch.setattr(proc, "run", GitAndFakeMake())
    k = resolve_kernel(f"tree:{tree}", cache=cache)
    fingerprint = k.identity()["source_id"].rpartition("#")[2]
    pinned = k.pinned_spec()
    assert pinned == f"tree:{tree}@{fingerprint}"
    assert parse_spec(pinned) == TreeSpec(tree, pin=fingerprint)
    assert parse_spec(f"tree:{tree}") == TreeSpec(tree)  # an "@" in the path is the path's
    # The cached kernel of that state, whatever the tree holds now.
    (tree / "fs" / "aio.c").write_text("int aio = 1;\n")
    assert resolve_kernel(pinned, cache=cache, variant="base") == dataclasses.replace(
        k, spec=pinned)
    check(pinned, cache=cache, variant="base")
    # Not cached (another variant): the tree must hold exactly that state...
    with pytest.raises(UserError) as exc:
        resolve_kernel(pinned, cache=cache, variant="aio-off")
    msg = str(exc.value)
    assert "\n" not in msg and f"tree:{tree}" in msg and "holds another" in msg
    # ...which it does again once the edit is undone: then it is built.
    (tree / "fs" / "aio.c").write_text("int aio;\n")
    off = resolve_kernel(pinned, cache=cache, variant="aio-off")
    assert off.pinned_spec() == pinned and off.variant == "aio-off"
