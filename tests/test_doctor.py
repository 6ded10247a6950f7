"""`lab doctor` as a normal user: what they lack and the exact command that fixes it.

Run as the user (tests/hostuser.py: labuser under root), with the host's real
/dev/kvm, tools, groups and directory permissions.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostuser import User, normal_user

from lab import commands
from lab.cli import main
from lab.host import doctor, hostdeps

APT = "apt-get install -y --no-install-recommends"


@pytest.fixture(scope="module")
def user() -> User:
    return normal_user()


@pytest.fixture
def home(user: User) -> Iterator[Path]:
    """A directory of the user's, with an empty cache in it."""
    path = user.tmp_dir("lab-doctor-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _printed(fn: object, *args: object) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = fn(*args)  # type: ignore[operator]
    return rc, out.getvalue()


def _doctor(cache: Path) -> tuple[int, str]:
    return _printed(commands.doctor, cache)


def _unwritable_dir(path: Path) -> Path:
    """A directory the user may enter and not write: ours, read-only (and root's under root)."""
    path.mkdir()
    path.chmod(0o555)
    return path


@pytest.fixture(autouse=True)
def _imported(tmp_path: Path) -> None:
    """Whatever doctor and `lab run` import lazily, imported as we are: the user's child
    process may not read root's interpreter (hostuser.User.call).  The run stops at its
    bad --known-issues, after the imports and before anything is written."""
    _doctor(tmp_path / "cache")
    rc, out = _printed(main, ["run", "--cache", str(tmp_path / "cache"), "--known-issues",
                              str(tmp_path / "absent.toml")])
    assert rc == 2, out
    _printed(hostdeps.main, ["dpkg"])


def test_kvm_says_what_the_user_lacks_and_the_command(user: User, home: Path) -> None:
    kvm = user.call(lambda: doctor._kvm(home / "cache", None), cwd=home)
    assert kvm.ok  # TCG works meanwhile: never a reason to stop
    if not doctor.KVM_DEVICE.exists():
        assert kvm.note and "no /dev/kvm" in kvm.detail
    elif not user.in_group(doctor.KVM_DEVICE.group()) and \
            stat.S_IMODE(doctor.KVM_DEVICE.stat().st_mode) & 0o006 == 0:
        st = doctor.KVM_DEVICE.stat()
        group = doctor.KVM_DEVICE.group()
        assert kvm.note
        assert (f"/dev/kvm is {stat.filemode(st.st_mode)} {doctor.KVM_DEVICE.owner()}:{group} "
                f"and {user.name} is not in group {group}") in kvm.detail
        assert "TCG" in kvm.detail
        assert kvm.fix == f"sudo usermod -aG {group} {user.name}, then log in again"
    else:  # the user may open it: the probe boot decides, and there is nothing to fix
        assert not kvm.note


def test_printed_with_its_fix(user: User, home: Path) -> None:
    _, out = user.call(lambda: _doctor(home / "cache"), cwd=home)
    lines = out.splitlines()
    kvm = next(line for line in lines if " KVM: " in line)
    if "usermod" in out:
        assert kvm.startswith("note     KVM: /dev/kvm is ")
        assert f"         fix: sudo usermod -aG kvm {user.name}, then log in again" in out
    assert lines[0] == f"ok       cache: {home / 'cache'} (writable)"
    assert lines[1] == f"ok       results: {home / 'results'} (writable)"
    # The test session installed the host packages.  Not the Python headers: the user's
    # child runs root's interpreter here, which a real user would not (tests/hostuser.py);
    # tests/test_wheel_real.py runs `lab doctor` in a venv of the user's (exit 0).
    missing = [ln for ln in lines if ln.startswith("MISSING") and "Python headers" not in ln]
    assert not missing, out


@pytest.mark.parametrize(("mode", "listed", "has", "why", "fix"), [
    (0o660, False, False, "u is not in group kvm", "sudo usermod -aG kvm u, then log in again"),
    (0o660, True, False, "u was added to group kvm after this login began",
     "log in again (or start a shell with `newgrp kvm`)"),
    (0o600, False, False, "u may not open it",
     "ask root to give u read-write access to /dev/kvm"),
])
def test_kvm_advice(mode: int, listed: bool, has: bool, why: str, fix: str) -> None:
    from lab.host.doctor import DeviceAccess, kvm_advice

    access = DeviceAccess(mode=stat.filemode(stat.S_IFCHR | mode), owner="root", group="kvm",
                          group_rw=mode & 0o060 == 0o060, user="u", listed=listed,
                          has_group=has)
    assert kvm_advice(access, sudo="sudo ") == (why, fix)


def test_missing_tools_give_one_apt_line_with_sudo(user: User, home: Path) -> None:
    """With nothing on PATH the tools in /usr/bin are missing for the lab too (it runs them
    from PATH): each with its package, and one line that installs them all."""
    def doctor_without_path() -> tuple[int, str]:
        os.environ["PATH"] = str(home / "empty")
        return _doctor(home / "cache")

    rc, out = user.call(doctor_without_path, cwd=home)
    assert rc == 2
    assert "MISSING  QEMU: missing" in out
    assert f"         fix: sudo {APT} qemu-system-x86" in out
    assert f"         fix: sudo {APT} fio" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("all the missing Debian"))
    assert line == (f"all the missing Debian packages at once: sudo {APT} qemu-system-x86 "
                    "busybox-static dpkg apt gcc fio")
    # What source builds need is a note with its fix, not among what stops a run.
    assert "note     source builds: git: missing: debian-src:, git:, worktree: and tree: " \
        "kernels cannot be built" in out
    assert f"         fix: sudo {APT} git" in out


def test_source_builds_are_notes_that_name_git(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    found = {c.name: c for c in doctor.build_checks()}
    git = found["source builds: git"]
    assert (git.ok, git.note, git.packages) == (True, True, ())
    assert git.fix.endswith(f"{APT} git") and "tree:" in git.detail
    assert {"source builds: make", "source builds: flex", "source builds: bison",
            "source builds: bc", "source builds: libelf headers"} <= found.keys()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    git = next(c for c in doctor.build_checks() if c.name == "source builds: git")
    assert (git.ok, git.note, git.detail) == (True, False, shutil.which("git"))


def test_nox_installer_names_the_sudo_line(user: User, home: Path) -> None:
    """The nox sessions' installer cannot install without root: it says what root must run."""
    rc, out = user.call(lambda: _printed(hostdeps.main, ["dpkg", "no-such-package-kl"]),
                        cwd=home)
    assert rc == 2
    assert out.strip() == ("lab: missing Debian packages; root must install them: "
                           f"sudo {APT} no-such-package-kl")


def test_unwritable_cache_and_results(user: User, home: Path) -> None:
    ro = _unwritable_dir(home / "ro")
    cache = home / "cache"
    cache.mkdir()
    (cache / "agent").mkdir()
    if user.switch:
        for path in (cache, cache / "agent"):
            os.chown(path, user.uid, user.gid)
    left = _unwritable_dir(cache / "kernels")  # as a run as root leaves it

    checks = user.call(lambda: {c.name: c for c in doctor.checks(cache, results=ro / "results")},
                       cwd=home)
    assert not checks["cache"].ok
    owner = left.owner()
    assert checks["cache"].detail == f"{left} is not writable by {user.name} (owner {owner})"
    chown = f"sudo chown -R {user.name}: {cache}, or " if owner != user.name else ""
    assert checks["cache"].fix == (f"{chown}give a directory of yours: KERNEL_LAB_CACHE=DIR "
                                   "or --cache DIR")
    assert not checks["results"].ok
    assert checks["results"].detail == (f"{ro} is not writable by {user.name}: run "
                                        f"directories go to {ro / 'results'}")

    inside = ro / "cache"  # a cache that does not exist yet, in a directory not the user's
    found = user.call(lambda: doctor.checks(inside), cwd=home)
    assert next(c for c in found if c.name == "cache").detail.startswith(
        f"{inside}: {ro} is not writable by {user.name}")


def test_lab_run_stops_at_once_with_one_line(user: User, home: Path) -> None:
    """Before: a traceback (PermissionError) once the run had started.  The suite and the
    known issues are the user's (the checkout may be out of their reach)."""
    ro = _unwritable_dir(home / "ro")
    issues = home / "known-issues.toml"
    issues.write_text("")
    argv = ["run", "--cache", str(home / "cache"), "--suite", str(home), "--known-issues",
            str(issues), "-k", "cancel"]
    rc, out = user.call(lambda: _printed(main, argv), cwd=ro)
    assert rc == 2, out
    # The first problem, and how many more there are (here maybe the Python headers of
    # root's interpreter, which the user's child runs: see test_printed_with_its_fix).
    assert re.fullmatch(
        re.escape(f"lab: error: results: {ro} is not writable by {user.name}: run "
                  f"directories go to {ro / 'results'}; fix: run from a directory you may "
                  "write to, or give lab run --results DIR")
        + r"( \(and \d+ more: run `lab doctor`\))?\n", out), out
    assert not (home / "cache").exists()  # nothing fetched


def test_a_cache_the_user_may_not_read_is_one_line_not_a_traceback(user: User,
                                                                     home: Path) -> None:
    """A cache a run as root left behind (mode 0700, root's): `lab kernels` says whose
    and what to do, exit 2."""
    cache = home / "cache"
    (cache / "kernels").mkdir(parents=True)
    _printed(main, ["kernels", "--cache", str(cache)])  # its imports, as we are
    (cache / "kernels").chmod(0o000)
    try:
        rc, out = user.call(lambda: _printed(main, ["kernels", "--cache", str(cache)]),
                            cwd=home)
    finally:
        (cache / "kernels").chmod(0o755)
    if not user.switch and os.geteuid() == 0:
        pytest.fail("root reads any directory: this needs a normal user")
    assert rc == 2, out
    assert "Traceback" not in out
    [line] = [ln for ln in out.splitlines() if ln.startswith("lab: error:")]
    assert "Permission denied" in line and str(cache / "kernels") in line and "chown" in line


def test_a_reader_that_goes_away_is_no_error(tmp_path: Path) -> None:
    """`lab kernels | true`: the reader is gone before the lab writes, which ends quietly
    with a shell's status for SIGPIPE (it printed a BrokenPipeError traceback, exit 1)."""
    import subprocess
    import sys

    res = subprocess.run(
        f"{sys.executable} -m lab.cli kernels --cache {tmp_path} | true; "
        "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
        text=True, timeout=120)
    assert res.stdout.strip() == "141", res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
