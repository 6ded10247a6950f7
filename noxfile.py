"""Sessions: `nox -s lab` runs the lab, `nox -s tests` the project's tests, `nox -s quick`
the scenarios that need no VM on the host's own kernel."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

HOST_PACKAGES = [
    "qemu-system-x86", "kmod", "busybox-static", "openssh-server",
    "xz-utils", "gcc", "libc6-dev", "python3-dev",
    "fio",  # the io_uring suites run it in the guest (which sees the host root)
]
# Building kernels from source (lab/kernel/build.py: debian-src:, git:, tree:), per FACTS.md.
BUILD_PACKAGES = [
    "build-essential", "bc", "flex", "bison", "libelf-dev", "libssl-dev", "cpio", "rsync",
    "pahole", "zstd", "ccache",
    "git",  # git:, worktree: and tree: (lab/kernel/worktree.py, lab/kernel/mirror.py)
]
# The report tests open report.html in headless Chromium (tests/browser.py).  udev:
# users' hosts have it (every systemd host), and virtme-ng-init starts the host's udevd
# in the guest; the tests must boot on such a host (tests/test_vm_real.py).  python3-venv:
# a normal user's venv of Debian's python3, where the wheel is installed and run
# (tests/test_wheel_real.py).  pipx: how such a user runs nox (the README's quick start,
# tests/test_readme_real.py).  jq: the stand-in for `gh` evaluates the nightly scripts'
# --jq filters with it, as gh does with its own (tests/test_workflow.py).  gdb: attaches to
# a guest booted with --gdb (tests/test_gdb_real.py).
TEST_PACKAGES = ["chromium", "udev", "python3-venv", "pipx", "jq", "gdb"]
WORKFLOWS = [".github/workflows/nightly.yml"]


def _host_packages(session: nox.Session, *extra: str) -> None:
    """Install the Debian packages the lab drives (as root; skipped where present)."""
    session.run("python", "-m", "lab.host.hostdeps", *HOST_PACKAGES, *extra, external=True)


def _install(session: nox.Session) -> None:
    session.install("-e", ".")


@nox.session
def lab(session: nox.Session) -> None:
    """Boot the default kernel and run the scenario suites (`nox -s lab -- --kernel SPEC`)."""
    _install(session)
    _host_packages(session, *BUILD_PACKAGES)
    # nox runs sessions in the noxfile's directory; the lab runs where nox was invoked, so
    # that `--kernel ./arch/x86/boot/bzImage` from a kernel tree names that tree's image
    # and the run directory lands under that directory's ./results.
    with session.chdir(session.invoked_from):
        session.run("lab", "run", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The project's own tests, including real boots of a Debian kernel under QEMU."""
    session.install("-e", ".[test]")
    _host_packages(session, *BUILD_PACKAGES, *TEST_PACKAGES)
    session.run("pytest", "-p", "no:cacheprovider", "-ra", "--durations=25", *session.posargs)


@nox.session(default=False)
def quick(session: nox.Session) -> None:
    """The scenarios that need no VM, on the host's own kernel: a contributor's first check
    (under a minute; the rest SKIP with the reason).  A run in a guest is the verdict."""
    _install(session)
    session.run("pytest", "-p", "no:cacheprovider", "-p", "no:lab", "-p", "lab.run.quick",
                "-ra", "scenarios", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything; the CI workflows against GitHub's schema (offline)."""
    session.install("ruff", "check-jsonschema")
    session.run("ruff", "check", "lab", "guest", "scenarios", "tests", "noxfile.py")
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS)


@nox.session(default=False)
def fetch(session: nox.Session) -> None:
    """Fetch or build kernels into the cache (`nox -s fetch -- --kernel SPEC --variant V`)."""
    _install(session)
    _host_packages(session, *BUILD_PACKAGES)
    with session.chdir(session.invoked_from):  # relative paths are the user's (see lab)
        session.run("lab", "fetch", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Strict mypy over lab/ and guest/."""
    _install(session)
    session.install("mypy", "types-paramiko")
    session.run("mypy", "--strict", "lab", "guest")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Boot and run-time benchmarks, printed as ratios measured side by side."""
    _install(session)
    _host_packages(session)
    session.run("python", "-m", "lab.bench", *session.posargs)
