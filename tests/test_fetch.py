"""Fetching kernels: apt output, resolution, atomic cache entries, path specs.

(Debian's version order and deb822 parsing: tests/test_deb822.py.)

Apt is replaced at ``lab.apt.run_tool`` (the process seam) by fakes that
serve golden `apt-cache show` output captured from the private configuration
(tests/golden/apt/).  One test marked ``network`` fetches a real kernel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from lab import atomic
from lab.errors import InfraError, UserError
from lab.kernel import apt as aptlib
from lab.kernel import debian
from lab.kernel.apt import Apt
from lab.kernel.artifact import Kernel
from lab.kernel.catalogue import load_catalogue
from lab.kernel.deb822 import parse_stanzas
from lab.kernel.debian import resolve
from lab.kernel.resolve import image_release, list_kernels, resolve_kernel
from lab.proc import ProcessError

GOLDEN = Path(__file__).parent / "golden" / "apt"


# --- resolution on golden apt output --------------------------------------------------------


VERSIONED = GOLDEN / "versioned"  # the lists with both backports suites (2026-12-01)


class FakeApt:
    """Stands in for run_tool: serves golden `apt-cache` output, records every argv.

    ``show NAME=VERSION`` reads one golden file per package; ``pkgnames``,
    ``madison`` and ``show`` of bare image names (what lab.kernel.versions asks)
    answer from the captured backports lists when ``versioned`` is set, else as
    lists without versioned kernels would.
    """

    def __init__(self, golden: Path = GOLDEN, *, versioned: bool = False) -> None:
        self.golden = golden
        self.versioned = versioned
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], **kw: object) -> str:
        self.calls.append(list(argv))
        args = list(argv[3:])  # drop "apt-cache -c CONF"
        if argv[0] != "apt-cache" or args[:1] not in (["show"], ["pkgnames"], ["madison"]):
            raise AssertionError(f"unexpected command {argv}")
        if args[0] == "pkgnames":
            return (VERSIONED / "pkgnames-linux.txt").read_text() if self.versioned else ""
        if args[0] == "madison":
            return (VERSIONED / "madison-images.txt").read_text()
        if "=" not in args[1] and not (self.golden / f"{args[1]}.txt").exists():
            # versions.py: every image package at once
            stanzas = (VERSIONED / "show-images.txt").read_text().split("\n\n")
            return "\n\n".join(t for t in stanzas
                                if any(f"Package: {n}\n" in t + "\n" for n in args[1:]))
        out = []
        for name in args[1:]:
            f = self.golden / (name.replace("=", "_") + ".txt")
            if not f.exists():
                raise ProcessError(argv, returncode=100, tail="E: No packages found",
                                   phase=str(kw.get("phase")), log_path=None)
            out.append(f.read_text())
        return "".join(out)


@pytest.fixture
def fake_apt(monkeypatch: pytest.MonkeyPatch) -> FakeApt:
    fake = FakeApt()
    monkeypatch.setattr(aptlib, "run_tool", fake)
    return fake


def _apt(cache: Path) -> Apt:
    return Apt(cache, load_catalogue())


def test_resolve_6_1_style_is_one_image_package(tmp_path: Path, fake_apt: FakeApt) -> None:
    plan = resolve(_apt(tmp_path), series="6.1", exact=None, label="debian:6.1")
    assert plan.version == "6.1.176-1"
    assert [p.name for p in plan.packages] == ["linux-image-6.1.0-50-amd64"]
    (pkg,) = plan.packages
    assert pkg.sha256 == "7b5597492a0a65aee61985a492e6bcc3f2cde830072a0e3b3d8c7e1b90279bd3"
    assert pkg.size == 70305560


def test_resolve_6_12_does_not_match_6_1(tmp_path: Path, fake_apt: FakeApt) -> None:
    plan = resolve(_apt(tmp_path), series="6.12", exact=None, label="debian:6.12")
    assert [(p.name, p.version) for p in plan.packages] == [
        ("linux-image-6.12.107+deb13-amd64", "6.12.107-1")
    ]


@pytest.mark.parametrize(
    ("series", "version", "abi"),
    [("7.2", "7.2.13-1", "7.2.13+deb14-amd64"), ("7.3", "7.3~rc7-1~exp1", "7.3-amd64")],
)
def test_resolve_7_x_follows_pinned_depends(
    tmp_path: Path, fake_apt: FakeApt, series: str, version: str, abi: str
) -> None:
    plan = resolve(_apt(tmp_path), series=series, exact=None, label=f"debian:{series}")
    assert plan.version == version
    assert plan.image_package == f"linux-image-{abi}"
    assert {p.name for p in plan.packages} == {
        f"linux-{kind}-{abi}" for kind in ("image", "binary", "modules", "base")
    }
    assert all(p.version == version and len(p.sha256) == 64 for p in plan.packages)
    assert plan.size > 100_000_000  # the modules package dominates


def test_resolve_exact_version(tmp_path: Path, fake_apt: FakeApt) -> None:
    plan = resolve(_apt(tmp_path), series=None, exact="7.2.13-1", label="debian:7.2.13-1")
    assert plan.image_package == "linux-image-7.2.13+deb14-amd64"


def test_resolve_unknown_exact_version_lists_available(tmp_path: Path, fake_apt: FakeApt) -> None:
    with pytest.raises(UserError) as exc:
        resolve(_apt(tmp_path), series=None, exact="7.2.99-1", label="debian:7.2.99-1")
    msg = str(exc.value)
    assert "7.2.99-1" in msg and "7.3~rc7-1~exp1, 7.2.13-1, 6.12.107-1, 6.1.176-1" in msg


# --- versioned kernels (backports keep older ABIs as their own packages) -------------------


def test_versioned_kernels_from_the_backports_lists() -> None:
    from lab.kernel import versions

    kernels = versions.parse((VERSIONED / "pkgnames-linux.txt").read_text(),
                             (VERSIONED / "show-images.txt").read_text(),
                             (VERSIONED / "madison-images.txt").read_text(), flavour="amd64")
    usable = [k.upstream for k in kernels if k.usable]
    backports = [k for k in kernels if k.usable and "~bpo" in k.package_version]
    assert len(backports) == 25 and backports[0].upstream == "6.12.43"
    assert backports[-1].upstream == "7.3.4" and backports[-1].suite == "trixie-backports"
    # Version order, a release candidate before its release.
    assert usable.index("6.18.15") + 1 == usable.index("7.2.6")
    assert usable[-2:] == ["7.3~rc7", "7.3.4"]
    # 6.19-7.1 kept only linux-binary-*: unusable, and the listing says why.
    gone = [k for k in kernels if not k.usable]
    assert {k.upstream.rsplit(".", 1)[0] for k in gone} == {"6.19", "7.0", "7.1"}
    assert all("linux-modules-" in k.why_unusable for k in gone)
    # 6.18 lost its linux-base-* package but carries its own config: still usable.
    (k618,) = [k for k in kernels if k.upstream == "6.18.15"]
    assert k618.usable and k618.spec == "debian:6.18.15-1~bpo13+1"
    assert not any("cloud" in k.image_package or "-rt-" in k.image_package for k in kernels)


def test_resolve_a_versioned_backports_kernel(tmp_path: Path) -> None:
    fake = FakeApt(versioned=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aptlib, "run_tool", fake)
        apt = _apt(tmp_path)
        plan = resolve(apt, series=None, exact="6.12.43-1~bpo12+1", label="debian:6.12.43")
        assert [p.name for p in plan.packages] == ["linux-image-6.12.43+deb12-amd64"]
        # 6.18.15's linux-base-* is gone from the index; the image package alone is fetched.
        plan = resolve(apt, series=None, exact="6.18.15-1~bpo13+1", label="debian:6.18.15")
        assert [p.name for p in plan.packages] == ["linux-image-6.18.15+deb13-amd64"]
        with pytest.raises(UserError, match=r"cannot boot here: linux-base-7\.0\.4.*modules"):
            resolve(apt, series=None, exact="7.0.4-1~bpo13+1", label="debian:7.0.4")


def test_series_7_3_means_the_released_7_3_4() -> None:
    stanzas = parse_stanzas((VERSIONED / "linux-image-amd64-with-backports.txt").read_text())
    assert debian.pick_version([s["Version"] for s in stanzas], series="7.3",
                               exact=None) == "7.3.4-1~bpo13+1"
    assert debian.pick_version([s["Version"] for s in stanzas], series="6.12",
                               exact=None) == "6.12.117-1"  # trixie's, above bookworm-backports'


# --- fetch orchestration with fakes -----------------------------------------------------------


def _bzimage(release: str, *, pointer: int = 0x100) -> bytes:
    """A minimal file with the x86 setup header's magic and a kernel_version string."""
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, 0x020F)  # boot protocol version
    struct.pack_into("<H", data, 0x20E, pointer)
    text = f"{release} (builder@example) #1 SMP PREEMPT_DYNAMIC".encode() + b"\0"
    data[0x200 + pointer:0x200 + pointer + len(text)] = text
    return bytes(data)


REL = "7.2.13+deb14-amd64"
VER = "7.2.13-1"
DEB_CONTENT = {f"linux-{kind}-{REL}": f"fake {kind} deb".encode()
               for kind in ("image", "binary", "modules", "base")}


def _stanza(name: str, depends: str, content: bytes) -> str:
    return (f"Package: {name}\nVersion: {VER}\nArchitecture: amd64\nDepends: {depends}\n"
            f"Filename: pool/main/l/linux/{name}_{VER}_amd64.deb\nSize: {len(content)}\n"
            f"SHA256: {hashlib.sha256(content).hexdigest()}\n\n")


class FakeDebianHost:
    """run_tool for a whole fetch of a 7.x-style kernel: apt, dpkg-deb and depmod faked."""

    def __init__(self, *, fail_on: str | None = None, corrupt: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.corrupt = corrupt
        pinned = ", ".join(f"linux-{k}-{REL} (= {VER})" for k in ("base", "binary", "modules"))
        self.index = {
            "linux-image-amd64": _stanza("linux-image-amd64", f"linux-image-{REL} (= {VER})",
                                         b"meta"),
            f"linux-image-{REL}": _stanza(f"linux-image-{REL}", f"kmod, {pinned}",
                                          DEB_CONTENT[f"linux-image-{REL}"]),
        }
        for kind in ("binary", "modules", "base"):
            name = f"linux-{kind}-{REL}"
            self.index[name] = _stanza(name, f"linux-base-{REL} (= {VER})", DEB_CONTENT[name])

    def __call__(self, argv: Sequence[str], *, cwd: Path | None = None, **kw: object) -> str:
        argv = list(argv)
        self.calls.append(argv)
        tool = Path(argv[0]).name
        if self.fail_on is not None and self.fail_on in argv:
            raise ProcessError(argv, returncode=1, tail="E: simulated", phase="fake",
                               log_path=None)
        if tool == "apt-get" and argv[3] == "update":
            (Path(argv[2]).parent / "lists" / "deb.debian.org_sid_Packages.lz4").write_bytes(b"")
            return ""
        if tool == "apt-cache":
            return "".join(self.index[a.split("=")[0]] for a in argv[4:])
        if tool == "apt-get" and argv[3] == "download":
            assert cwd is not None
            for a in argv[4:]:
                name = a.split("=")[0]
                body = DEB_CONTENT[name] + (b"!" if self.corrupt else b"")
                (cwd / f"{name}_{VER}_amd64.deb").write_bytes(body)
                if self.fail_on == "KeyboardInterrupt-after-download":
                    raise KeyboardInterrupt
            return ""
        if tool == "dpkg-deb":
            deb, root = Path(argv[2]), Path(argv[3])
            mod = root / "usr/lib/modules" / REL
            mod.mkdir(parents=True, exist_ok=True)
            (root / "usr/share/doc" / deb.name).mkdir(parents=True, exist_ok=True)
            if deb.name.startswith("linux-binary"):
                (mod / "vmlinuz").write_bytes(_bzimage(REL))
            elif deb.name.startswith("linux-modules"):
                (mod / "kernel").mkdir(exist_ok=True)
                (mod / "kernel" / "nvme.ko.xz").write_bytes(b"xz")
            elif deb.name.startswith("linux-base"):
                (mod / "config").write_text("CONFIG_AIO=y\n")
            return ""
        if tool == "depmod":
            root, rel = Path(argv[3]), argv[4]
            (root / "lib/modules" / rel / "modules.dep").write_text("kernel/nvme.ko.xz:\n")
            return ""
        raise AssertionError(f"unexpected command {argv}")

    def tools(self) -> list[str]:
        return [" ".join(c[:1] + c[3:4]) if c[0] in ("apt-get", "apt-cache") else Path(c[0]).name
                for c in self.calls]


@pytest.fixture
def host_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fakes do the work; only the presence check must pass on any host.
    monkeypatch.setattr(debian, "_check_tools", lambda: "/usr/sbin/depmod")


def _install(monkeypatch: pytest.MonkeyPatch, fake: Callable[..., str]) -> None:
    monkeypatch.setattr(aptlib, "run_tool", fake)


def _entries(cache: Path) -> list[str]:
    base = debian.kernels_dir(cache)
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def test_fetch_builds_a_whole_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tools: None
) -> None:
    fake = FakeDebianHost()
    _install(monkeypatch, fake)
    k = resolve_kernel("debian:7.2", cache=tmp_path)
    entry = debian.kernels_dir(tmp_path) / f"{VER}-amd64"
    assert _entries(tmp_path) == [entry.name]
    assert (k.release, k.package_version, k.source) == (REL, VER, "debian")
    assert k.image == entry / "root/usr/lib/modules" / REL / "vmlinuz"
    # lib -> usr/lib: virtme-ng finds <root>/lib/modules/<release> next to the image.
    assert (entry / "root/lib").is_symlink()
    assert k.modules == entry / "root/lib/modules" / REL
    assert (k.modules / "modules.dep").is_file()
    assert k.config_option("AIO") == "y"
    assert not (entry / "root/usr/share/doc").exists()
    assert not (entry / "debs").exists()
    sums = (entry / debian.SHA256SUMS).read_text()
    assert hashlib.sha256(DEB_CONTENT[f"linux-modules-{REL}"]).hexdigest() in sums
    on_disk = Kernel.from_json((entry / "kernel.json").read_text(), entry)
    assert on_disk.image == k.image and len(on_disk.packages) == 4
    assert fake.tools() == ["apt-get update", "apt-cache show", "apt-cache show",
                            "apt-cache show", "apt-get download", "dpkg-deb", "dpkg-deb",
                            "dpkg-deb", "dpkg-deb", "depmod"]

    # Both spec forms are now cache hits that start no process.
    def no_process(*a: object, **kw: object) -> str:
        raise AssertionError(f"ran {a}")

    _install(monkeypatch, no_process)
    assert resolve_kernel("debian:7.2", cache=tmp_path).image == k.image
    assert resolve_kernel(f"debian:{VER}", cache=tmp_path).spec == f"debian:{VER}"
    cached, available = list_kernels(tmp_path)
    assert [c.release for c in cached] == [REL]
    assert available == [("7.2", VER, "sid")]


@pytest.mark.parametrize(
    ("fail_on", "exc_type"),
    [
        ("download", InfraError),
        ("KeyboardInterrupt-after-download", KeyboardInterrupt),
        ("-x", InfraError),  # dpkg-deb -x
        ("-b", InfraError),  # depmod -a -b
    ],
)
def test_failure_midway_leaves_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tools: None,
    fail_on: str, exc_type: type[BaseException],
) -> None:
    _install(monkeypatch, FakeDebianHost(fail_on=fail_on))
    with pytest.raises(exc_type):
        resolve_kernel("debian:7.2.13-1", cache=tmp_path)
    assert _entries(tmp_path) == []  # not even a .tmp- dir: removed on the way out


def test_checksum_mismatch_is_an_error_and_leaves_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tools: None
) -> None:
    _install(monkeypatch, FakeDebianHost(corrupt=True))
    with pytest.raises(InfraError, match="SHA256"):
        resolve_kernel("debian:7.2", cache=tmp_path)
    assert _entries(tmp_path) == []


def test_killed_run_leaves_only_a_temp_dir_that_is_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tools: None
) -> None:
    base = debian.kernels_dir(tmp_path)
    dead = base / ".tmp-2147483646-abc"  # a pid that cannot be running
    (dead / "root/boot").mkdir(parents=True)
    (dead / "kernel.json").write_text("{}")  # even a complete-looking one is not an entry
    ours = base / f".tmp-{os.getpid()}-live"
    ours.mkdir()
    assert list_kernels(tmp_path)[0] == []
    assert atomic.clean_stale_temps(base) == [dead]
    assert ours.exists() and not dead.exists()


def test_temp_dir_is_removed_on_interrupt(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic.temp_dir(tmp_path) as tmp:
        (tmp / "half").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_publish_keeps_an_entry_that_appeared_meanwhile(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    final.mkdir()
    (final / "kernel.json").write_text("first")
    with atomic.temp_dir(tmp_path) as tmp:
        (tmp / "kernel.json").write_text("second")
        assert atomic.publish(tmp, final) == final
    assert (final / "kernel.json").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def _cached_entry(cache: Path, version: str, release: str) -> Kernel:
    entry = debian.kernels_dir(cache) / f"{version}-amd64"
    image = entry / "root/boot" / f"vmlinuz-{release}"
    image.parent.mkdir(parents=True)
    image.write_bytes(_bzimage(release))
    k = Kernel(spec="debian:7.2", release=release, image=image, source="debian",
               package_version=version)
    (entry / "kernel.json").write_text(k.to_json(entry))
    return k


def test_offline_series_falls_back_to_newest_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tools: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _cached_entry(tmp_path, "7.2.9-1", "7.2.9+deb14-amd64")
    _cached_entry(tmp_path, "7.2.11-1", "7.2.11+deb14-amd64")
    _install(monkeypatch, FakeDebianHost(fail_on="update"))  # no lists, network down
    with caplog.at_level(logging.WARNING, logger="lab.kernel.resolve"):
        k = resolve_kernel("debian:7.2", cache=tmp_path)
    assert (k.package_version, k.spec) == ("7.2.11-1", "debian:7.2")
    assert "newest cached" in caplog.text
    # Not silent: the kernel says it stands in for another, and so does every record.
    assert "fetching failed" in k.note and "7.2.11-1" in k.note
    assert k.identity()["note"] == k.note


def test_checksum_mismatch_never_falls_back_to_a_cached_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tools: None
) -> None:
    _cached_entry(tmp_path, "7.2.9-1", "7.2.9+deb14-amd64")
    _install(monkeypatch, FakeDebianHost(corrupt=True))
    with pytest.raises(InfraError, match="SHA256"):
        resolve_kernel("debian:7.2", cache=tmp_path)


def test_offline_without_cache_is_an_infra_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tools: None
) -> None:
    _install(monkeypatch, FakeDebianHost(fail_on="update"))
    with pytest.raises(InfraError, match="simulated"):
        resolve_kernel("debian:7.2", cache=tmp_path)


def test_series_with_cache_and_lists_resolves_without_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_tools: None
) -> None:
    apt = _apt(tmp_path)  # lists "present": a stamp and a Packages file
    apt.lists.mkdir(parents=True)
    (apt.lists / "x_Packages.lz4").write_bytes(b"")
    apt.stamp.write_text("")
    os.utime(apt.stamp, (0, 0))  # very old: still no update with a cached entry
    _cached_entry(tmp_path, VER, REL)
    fake = FakeDebianHost()
    _install(monkeypatch, fake)
    k = resolve_kernel("debian:7.2", cache=tmp_path)
    assert k.package_version == VER
    assert fake.tools() == ["apt-cache show"]


# --- path specs ----------------------------------------------------------------------------


def test_image_release_reads_the_setup_header(tmp_path: Path) -> None:
    f = tmp_path / "bzImage"
    f.write_bytes(_bzimage("7.2.0-rc1+"))
    assert image_release(f) == "7.2.0-rc1+"
    f.write_bytes(_bzimage("7.2.0", pointer=0))
    assert image_release(f) is None


def test_path_spec_not_a_kernel(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello\n" * 200)
    with pytest.raises(UserError) as exc:
        resolve_kernel(str(f), cache=tmp_path)
    assert str(exc.value) == (
        f"{f} is not a Linux kernel image (no bzImage header); give a bzImage or vmlinuz"
    )


def test_path_spec_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="does not exist") as exc:
        resolve_kernel(str(tmp_path / "nope/bzImage"), cache=tmp_path)
    assert "looked in" not in str(exc.value)
    # A relative path is the current directory's: the error says which directory that was
    # (nox, say, runs elsewhere than where it was typed).
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as exc:
        resolve_kernel("./arch/x86/boot/bzImage", cache=tmp_path)
    assert str(exc.value) == (f"arch/x86/boot/bzImage does not exist (or is not a file) "
                              f"(looked in {tmp_path}); give a bzImage or vmlinuz")


def test_path_spec_kernel_and_modules(tmp_path: Path) -> None:
    image = tmp_path / "arch/x86/boot/bzImage"
    image.parent.mkdir(parents=True)
    image.write_bytes(_bzimage("7.2.0"))
    # A tree's .config says which release it configured (lab.kernel.imageconfig): it counts
    # only when that is the image's.
    (tmp_path / ".config").write_text("#\n# Automatically generated file; DO NOT EDIT.\n"
                                      "# Linux/x86 7.2.0 Kernel Configuration\n#\n"
                                      "CONFIG_IO_URING=y\n")
    k = resolve_kernel(str(image), cache=tmp_path)
    assert (k.release, k.source, k.modules) == ("7.2.0", "path", None)
    assert k.config_option("IO_URING") == "y"

    mods = tmp_path / "mods/lib/modules/7.2.0"
    mods.mkdir(parents=True)
    k = resolve_kernel(f"{image},modules={mods}", cache=tmp_path)
    assert k.modules == mods.resolve()


def test_path_spec_modules_problems(tmp_path: Path) -> None:
    image = tmp_path / "vmlinuz-7.2.0"
    image.write_bytes(_bzimage("7.2.0"))
    with pytest.raises(UserError, match="does not exist"):
        resolve_kernel(f"{image},modules={tmp_path}/lib/modules/7.2.0", cache=tmp_path)
    other = tmp_path / "lib/modules/6.1.0"
    other.mkdir(parents=True)
    with pytest.raises(UserError) as exc:
        resolve_kernel(f"{image},modules={other}", cache=tmp_path)
    assert "'6.1.0'" in str(exc.value) and "'7.2.0'" in str(exc.value)


# --- the real thing ----------------------------------------------------------------------------


@pytest.mark.network
def test_fetch_debian_7_2_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = resolve_kernel("debian:7.2", cache=tmp_path)
    assert k.release.startswith("7.2.")
    assert k.image.is_file() and image_release(k.image) == k.release
    assert k.modules is not None and (k.modules / "modules.dep").stat().st_size > 0
    assert k.config is not None and k.config_option("IO_URING") == "y"
    assert any(k.modules.rglob("nvme.ko*"))
    entry = debian.kernels_dir(tmp_path) / f"{k.package_version}-amd64"
    meta = json.loads((entry / "kernel.json").read_text())
    assert meta["release"] == k.release and k.image.is_relative_to(entry)

    def no_process(*a: object, **kw: object) -> str:
        raise AssertionError(f"a cache hit ran {a}")

    monkeypatch.setattr(aptlib, "run_tool", no_process)
    again = resolve_kernel("debian:7.2", cache=tmp_path)
    assert again == k
