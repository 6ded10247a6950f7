"""The guest's view of the host (lab/vm/jail.py, lab.vm.sandbox), built for real: a private
mount namespace with the allow-listed tree, looked at from inside and from outside.

What a real guest can reach through it is tests/test_isolation_real.py's."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from lab.vm import jail, sandbox
from tests.hostuser import normal_user


def _jailed(tmp_path: Path, script: str, *, binds: list[str], walls: bool = True,
            max_file_bytes: int = 1 << 30) -> subprocess.CompletedProcess[str]:
    root, tmp = tmp_path / "export", tmp_path / "tmp"
    root.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    plan = {"walls": walls, "root": str(root), "binds": binds, "tmpdir": str(tmp),
            "tmp_bytes": 4 << 20, "max_file_bytes": max_file_bytes}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return subprocess.run([sys.executable, "-I", "-S", str(sandbox.JAIL),
                           str(tmp_path / "plan.json"), "--", "sh", "-c", script, "jailed",
                           str(root)], capture_output=True, text=True, timeout=60, check=False)


def test_the_tree_holds_the_allow_list_and_nothing_else(tmp_path: Path) -> None:
    mine = tmp_path / "vm"
    mine.mkdir()
    (mine / "sshd_config").write_text("Port 22\n")
    token = secrets.token_hex(8)
    canary = Path.home() / f".kernel-lab-canary-{os.getpid()}"  # a home the guest must not see
    canary.write_text(token)
    try:
        res = _jailed(tmp_path, 'r=$1; ls -A "$r" | tr "\\n" " "; echo; '
                      'for d in root home proc run; do [ -z "$(ls -A "$r/$d")" ] && '
                      'printf "%s " "$d"; done; echo; '
                      f'cat "$r{mine}/sshd_config"; '
                      f'cat "$r{canary}" 2>&1; '
                      'touch "$r/usr/kernel-lab-write-test" 2>&1 || echo read-only',
                      binds=[str(mine)])
    finally:
        canary.unlink()
    assert res.returncode == 0, res.stderr
    top, below, *rest = res.stdout.splitlines()
    assert set(top.split()) >= {"usr", "etc", "dev", "proc", "run", "tmp"}
    assert below.split() == ["root", "home", "proc", "run"]  # each there, and empty
    assert "Port 22" in rest
    assert token not in res.stdout
    assert "No such file" in res.stdout
    assert rest[-1] == "read-only" or "Read-only" in res.stdout
    # Outside the namespace the mount point is the empty directory it was.
    assert list((tmp_path / "export").iterdir()) == []


def test_etc_is_what_programs_need_that_any_user_may_read_without_hashes_or_keys(
        tmp_path: Path) -> None:
    """An allow-list of names (the host's proxy settings in environment and pip.conf, its
    machine-id: not on it), and of those only the world-readable (group, 0600 here: not)."""
    src = tmp_path / "etc"
    (src / "ssh").mkdir(parents=True)
    (src / "private").mkdir(mode=0o700)
    (src / "private" / "x").write_text("secret")
    os.chmod(src / "private", 0o700)
    for name, mode in (("passwd", 0o644), ("hosts", 0o644), ("secret.conf", 0o600),
                       ("environment", 0o644), ("pip.conf", 0o644), ("machine-id", 0o444),
                       ("group", 0o600),
                       ("shadow", 0o644), ("gshadow", 0o644), ("ssh/ssh_host_ed25519_key", 0o644),
                       ("ssh/ssh_host_ed25519_key.pub", 0o644), ("ssh/sshd_config", 0o644)):
        (src / name).write_text(f"{name}\n" if name != "passwd" else
                                "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\n")
        os.chmod(src / name, mode)
    (src / "localtime").symlink_to("/usr/share/zoneinfo/UTC")
    dst = tmp_path / "copy"
    jail.copy_etc(str(src), str(dst))
    jail.write_shadow(str(dst))
    copied = sorted(str(p.relative_to(dst)) for p in dst.rglob("*"))
    assert copied == ["hosts", "localtime", "passwd", "shadow", "ssh",
                      "ssh/ssh_host_ed25519_key.pub", "ssh/sshd_config"]
    assert (dst / "localtime").is_symlink()
    # A shadow of the lab's own: every account locked, no hash of the host's.
    assert (dst / "shadow").read_text() == "root:!:1::::::\nalice:!:1::::::\n"


def test_the_lab_binds_only_its_own_directories(tmp_path: Path) -> None:
    vmdir = tmp_path / "vm"
    vmdir.mkdir()
    binds = sandbox.binds(vmdir, modules=None)
    assert binds[0] == str(vmdir)
    assert all(not Path(b).is_relative_to("/usr") for b in binds)  # shown by the tree already
    assert str(Path.home()) not in binds and "/" not in binds and len(set(binds)) == len(binds)


@pytest.mark.parametrize("walls", [True, False])
def test_files_written_inside_are_bounded(tmp_path: Path, walls: bool) -> None:
    """What QEMU writes (RLIMIT_FSIZE, a write past it failing, not killing it), and
    virtme-run's TMPDIR, where the guest can write its return-code file without end: a
    tmpfs of its own in the namespace, else the VM's directory under the limit."""
    res = _jailed(tmp_path, 'ulimit -f; echo "$TMPDIR"; '
                  'head -c 3000000 /dev/zero > "$TMPDIR/x" 2>/dev/null; wc -c < "$TMPDIR/x"; '
                  'head -c 8000000 /dev/zero > "$TMPDIR/x" 2>/dev/null; wc -c < "$TMPDIR/x"',
                  binds=[], walls=walls, max_file_bytes=6 << 20)
    blocks, tmpdir, small, big = res.stdout.split()
    assert blocks == str((6 << 20) // 512), res.stderr  # sh counts 512-byte blocks
    assert tmpdir == str(tmp_path / "tmp") and small == "3000000"
    # Cut at the tmpfs's 4 MiB in the namespace, at the file-size limit without it.
    assert int(big) == (4 << 20 if walls else 6 << 20)


def test_a_normal_user_gets_the_tree_too(tmp_path: Path) -> None:
    """Not root: the namespace is a user namespace's (the lab's user mapped to root there,
    no more rights than it had); this host allows it (else the lab says so: doctor)."""
    user = normal_user()
    work = user.home / f"jail-{secrets.token_hex(4)}"
    plan = json.dumps({"walls": True, "root": f"{work}/export", "binds": [str(work)],
                       "tmpdir": f"{work}/tmp", "tmp_bytes": 1 << 20,
                       "max_file_bytes": 1 << 30})
    res = user.run(["sh", "-c", f"mkdir -p {work}/export {work}/tmp && cd {work} && "
                    f"echo '{plan}' > plan.json && "
                    f"python3 -I -S {sandbox.JAIL} plan.json -- sh -c "
                    f"'id -u; ls {work}/export/etc/passwd; "
                    f"cat {work}/export/etc/shadow | head -1; "
                    f"stat -L -c %a:%u {work}/export/usr/bin/mount /usr/bin/mount'; "
                    f"rm -rf {work}"],
                   cwd=Path("/"), timeout=60)
    if res.returncode != 0 and "unshare" in res.stdout:
        pytest.fail(f"this host refuses a normal user a user namespace: {res.stdout.strip()}")
    assert res.returncode == 0, res.stdout
    uid, passwd, shadow, plain, host = res.stdout.split()
    assert uid == "0" and passwd.endswith("/etc/passwd") and shadow == "root:!:1::::::"
    # The host's root is not mapped there: a set-user-ID program of root's would run as the
    # overflow user in the guest (mount: "must be superuser"), so the tree's copy has no
    # set-ID bit, and belongs to the namespace's root.
    assert host.split(":")[1] == "65534" and int(host.split(":")[0], 8) & 0o4000
    assert plain == "755:0"


@pytest.mark.parametrize("accepted", [False, True])
def test_a_host_that_refuses_the_namespace_boots_no_guest_unless_the_user_accepts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        accepted: bool) -> None:
    """The refusal (Ubuntu's AppArmor, a container's seccomp profile) is the probe's exit
    and last line; this host allows the namespace, so the refusing jail is a stand-in."""
    import logging

    from lab.errors import UserError
    from lab.kernel.artifact import Kernel
    from lab.vm.vm import Vm

    refusing = tmp_path / "jail.py"
    refusing.write_text("import sys\nprint('unshare: Operation not permitted (EPERM)', "
                        "file=sys.stderr)\nsys.exit(1)\n")
    monkeypatch.setattr(sandbox, "JAIL", refusing)
    if accepted:
        monkeypatch.setenv(sandbox.UNISOLATED_ENV, "1")
    sandbox.host_isolation.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="lab.vm.sandbox"):
            iso = sandbox.host_isolation()
        from lab.host.doctor import _isolation

        check = _isolation()  # `lab run` stops on a check that is not ok (lab.run.runner)
        assert check.ok is accepted and check.note is accepted
        assert sandbox.UNISOLATED_ENV in check.fix
    finally:
        sandbox.host_isolation.cache_clear()
    assert not iso.files and iso.network  # the network's wall needs no privilege
    assert "unshare: Operation not permitted (EPERM)" in iso.reason
    assert iso.accepted is accepted
    assert ("guest isolation unavailable" in caplog.text) is accepted
    if not accepted:  # no guest boots: one line saying why and what would do
        vm = Vm(Kernel(spec="x", release="7.2.0", image=tmp_path / "vmlinuz"),
                run_dir=tmp_path / "run", cache=tmp_path / "cache", isolation=iso)
        with pytest.raises(UserError, match=r"guests cannot be isolated from this host .*"
                           + sandbox.UNISOLATED_ENV) as exc:
            vm.start()
        assert "\n" not in str(exc.value) and not (tmp_path / "run").exists()


def test_no_bind_is_or_holds_a_home_or_the_cache(tmp_path: Path) -> None:
    """A Python installed with --prefix=$HOME, or in ~/.local, must not take the home with it:
    only the interpreter's own files, each alone (interpreter_paths), inside a home is fine."""
    from lab.errors import UserError

    vmdir = tmp_path / "vm"
    vmdir.mkdir()
    home = Path.home()
    inside = home / f".kernel-lab-test-{os.getpid()}"  # as ~/.pyenv/versions/3.x
    inside.mkdir()
    try:
        assert str(inside) in sandbox.binds(vmdir, None, interpreter=[str(inside)],
                                            cache=tmp_path)
    finally:
        inside.rmdir()
    for whole in (home, Path("/home"), tmp_path):  # a home, what holds homes, the cache
        with pytest.raises(UserError, match="a guest may not see a home or the lab's cache"):
            sandbox.binds(vmdir, None, interpreter=[str(whole)], cache=tmp_path)
