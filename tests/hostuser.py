"""A normal (non-root) user of the host, to run the lab as one from the tests.

As root the tests use ``labuser`` (made with ``useradd -m`` when it is missing) and
run commands as that user with its own groups and a login's environment, not
root's; as anyone else they use the current user.
"""

from __future__ import annotations

import functools
import grp
import os
import pickle
import pwd
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NAME = "labuser"
PATH = "/usr/local/bin:/usr/bin:/bin"  # a normal user's: no sbin
# What a user's login keeps of this host's environment: how to reach PyPI.
PASSED = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
          "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path
    switch: bool  # run as this user (the tests run as root) or as we are

    @property
    def groups(self) -> list[int]:
        return os.getgrouplist(self.name, self.gid)

    def in_group(self, name: str) -> bool:
        try:
            return grp.getgrnam(name).gr_gid in self.groups
        except KeyError:
            return False

    def env(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "PATH": PATH,
               "LANG": "C.UTF-8"}
        env.update({k: v for k, v in os.environ.items() if k in PASSED or k.startswith("PIP_")})
        env.update(extra)
        return env

    def run(self, argv: Sequence[str], *, cwd: Path, timeout: float,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``argv`` as this user from ``cwd`` (output combined, never raises on exit status)."""
        ids = ({"user": self.uid, "group": self.gid, "extra_groups": self.groups}
               if self.switch else {})
        return subprocess.run(list(argv), cwd=cwd, env=env or self.env(), timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              check=False, **ids)  # type: ignore[call-overload]

    def call(self, fn: Callable[[], T], *, cwd: Path) -> T:
        """``fn()`` in a child of this process that is this user (its uid, gids and login
        environment) in ``cwd``; its value or its traceback comes back pickled.

        A fork, not a new interpreter: root's interpreter may be one the user cannot read
        (a pyenv under /root).  For the same reason the child can import nothing new: call
        ``fn`` once as we are first, so that what it imports lazily is imported.  A child
        as the current user too: what ``fn`` changes (environment, directory) stays there."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become the user, call, report, never return into pytest
            try:
                os.close(read)
                if self.switch:
                    os.setgroups(self.groups)
                    os.setgid(self.gid)
                    os.setuid(self.uid)
                os.environ.clear()
                os.environ.update(self.env())
                os.chdir(cwd)
                outcome: tuple[bool, object] = (True, fn())
            except BaseException:  # everything goes back to the test, as a traceback
                outcome = (False, traceback.format_exc())
            try:
                data = pickle.dumps(outcome)
            except Exception as exc:
                data = pickle.dumps((False, f"the result does not pickle: {exc!r}"))
            with os.fdopen(write, "wb") as f:
                f.write(data)
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        ok, value = pickle.loads(data)
        if not ok:
            raise AssertionError(f"as {self.name}:\n{value}")
        return value  # type: ignore[no-any-return]

    def tmp_dir(self, prefix: str) -> Path:
        """A fresh directory of this user's in /tmp (pytest's tmp_path is root's, 0700)."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        if self.switch:
            os.chown(path, self.uid, self.gid)
        return path


@functools.cache
def normal_user() -> User:
    """The user the tests run the lab as: labuser under root, else the current user."""
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.getuid())
        return User(pw.pw_name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir), switch=False)
    try:
        pw = pwd.getpwnam(NAME)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run([useradd, "-m", "-s", "/bin/bash", NAME], check=True, timeout=60)
        pw = pwd.getpwnam(NAME)
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir), switch=True)
