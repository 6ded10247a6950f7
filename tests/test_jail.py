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


def _jailed(tmp_path: Path, script: str, *, binds: list[str],
            max_file_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "export"
    root.mkdir(exist_ok=True)
    plan: dict[str, object] = {"root": str(root), "binds": binds}
    if max_file_bytes is not None:
        plan["max_file_bytes"] = max_file_bytes
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


def test_etc_is_what_any_user_may_read_without_hashes_or_keys(tmp_path: Path) -> None:
    src = tmp_path / "etc"
    (src / "ssh").mkdir(parents=True)
    (src / "private").mkdir(mode=0o700)
    (src / "private" / "x").write_text("secret")
    os.chmod(src / "private", 0o700)
    for name, mode in (("passwd", 0o644), ("hosts", 0o644), ("secret.conf", 0o600),
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


def test_files_written_inside_are_bounded(tmp_path: Path) -> None:
    res = _jailed(tmp_path, "ulimit -f", binds=[], max_file_bytes=1 << 20)
    assert res.stdout.strip() == str((1 << 20) // 512), res.stderr  # sh counts 512-byte blocks


def test_a_normal_user_gets_the_tree_too(tmp_path: Path) -> None:
    """Not root: the namespace is a user namespace's (the lab's user mapped to root there,
    no more rights than it had); this host allows it (else the lab says so: doctor)."""
    user = normal_user()
    work = user.home / f"jail-{secrets.token_hex(4)}"
    plan = json.dumps({"root": f"{work}/export", "binds": [str(work)]})
    res = user.run(["sh", "-c", f"mkdir -p {work}/export && cd {work} && "
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


def test_a_host_that_refuses_the_namespace_boots_unwalled_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The refusal (Ubuntu's AppArmor, a container's seccomp profile) is the probe's exit
    and last line; this host allows the namespace, so the refusing jail is a stand-in."""
    import logging

    refusing = tmp_path / "jail.py"
    refusing.write_text("import sys\nprint('unshare: Operation not permitted (EPERM)', "
                        "file=sys.stderr)\nsys.exit(1)\n")
    monkeypatch.setattr(sandbox, "JAIL", refusing)
    sandbox.host_isolation.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="lab.vm.sandbox"):
            iso = sandbox.host_isolation()
    finally:
        sandbox.host_isolation.cache_clear()
    assert not iso.files and iso.network  # the network's wall needs no privilege
    assert iso.reason == "mount namespace refused: unshare: Operation not permitted (EPERM)"
    assert "guest isolation unavailable" in caplog.text and "Threat model" not in caplog.text
    assert iso.describe().startswith("whole host root (mount namespace refused")
