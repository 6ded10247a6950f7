"""Bad input: one line naming the problem and the fix, exit 2, no traceback, nothing left."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def lab(*args: str, cache: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args, "--cache", str(cache)]
        if args[0] != "run" else
        [sys.executable, "-m", "lab.cli", "run", "--cache", str(cache), *args[1:]],
        capture_output=True, text=True, cwd=cwd, timeout=120,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(REPO),
             "HOME": str(cwd)},
    )


def _one_line_exit_2(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert lines[0].startswith("lab: error: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def where(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "cache", tmp_path


def test_unknown_kernel_series(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    res = lab("run", "--kernel", "debian:9.9", cache=cache, cwd=cwd)
    _one_line_exit_2(res, "debian:9.9", "7.2")
    assert not (cwd / "results").exists()
    assert not cache.exists() or not any((cache / "kernels").glob("**/kernel.json"))


def test_unknown_spec_kind(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    _one_line_exit_2(lab("run", "--kernel", "ubuntu:24.04", cache=cache, cwd=cwd),
                     "ubuntu:24.04")


def test_file_that_is_not_a_kernel(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    fake = cwd / "bzImage"
    fake.write_bytes(b"not a kernel" * 100)
    _one_line_exit_2(lab("run", "--kernel", str(fake), cache=cache, cwd=cwd),
                     str(fake), "kernel")


def test_missing_kernel_file(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    _one_line_exit_2(lab("run", "--kernel", "/nonexistent/bzImage", cache=cache, cwd=cwd),
                     "/nonexistent/bzImage")


def test_missing_modules_directory(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    fake = cwd / "bzImage"
    fake.write_bytes(b"x" * 1024)
    res = lab("run", "--kernel", f"{fake},modules={cwd}/nope", cache=cache, cwd=cwd)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_busy_ssh_port(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = lab("run", "--ssh-port", str(port), cache=cache, cwd=cwd)
    _one_line_exit_2(res, f"port {port}", "busy")


def test_kernels_lists_without_network(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    res = lab("kernels", cache=cache, cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert "cached" in res.stdout and "(none)" in res.stdout


def test_kernels_lists_built_kernels(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    entry = cache / "kernels" / "built" / "0123456789abcdef0123"
    entry.mkdir(parents=True)
    (entry / "bzImage").write_bytes(b"")
    (entry / "kernel.json").write_text(
        '{"spec": "git:/src/linux@v7.2", "release": "7.2.0", "image": "bzImage",'
        ' "config": "config", "modules": null, "source": "git", "variant": "debug+aio-off",'
        ' "package_version": null, "packages": []}')
    res = lab("kernels", cache=cache, cwd=cwd)
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if "git:/src/linux@v7.2" in x)
    assert "--variant debug+aio-off" in line and str(entry / "bzImage") in line


@pytest.mark.parametrize("args, needles", [
    (["--ssh-port", "99999"], ["--ssh-port 99999", "1-65535"]),
    (["--ssh-port", "0"], ["--ssh-port 0"]),
    (["--workers", "0"], ["--workers 0", "1 or more"]),
    (["--workers", "x"], ["--workers", "invalid int value"]),
    (["--kernel", "debian:7.2", "--variant", "debug"], ["--variant debug", "debian:7.2"]),
    (["--kernel", "debian-src:7.2", "--variant", "fast"], ["unknown variant 'fast'", "debug"]),
])
def test_bad_run_options(where: tuple[Path, Path], args: list[str], needles: list[str]) -> None:
    cache, cwd = where
    _one_line_exit_2(lab("run", *args, cache=cache, cwd=cwd), *needles)
    assert not (cwd / "results").exists()  # validated before the run directory exists


def test_a_path_that_is_not_a_tree_leaves_no_run_directory(where: tuple[Path, Path]) -> None:
    cache, cwd = where
    (cwd / "src").mkdir()
    _one_line_exit_2(lab("run", "--kernel", f"tree:{cwd / 'src'}", cache=cache, cwd=cwd),
                     "not a Linux kernel tree")
    _one_line_exit_2(lab("run", "--kernel", f"git:{cwd / 'src'}", cache=cache, cwd=cwd),
                     "not a git repository")
    assert not (cwd / "results").exists()


def test_run_help_lists_every_kernel_form_exit_status_and_examples(
        where: tuple[Path, Path]) -> None:
    from lab.errors import RUN_EXIT_CODES
    from lab.kernel.spec import valid_forms

    _, cwd = where
    res = subprocess.run([sys.executable, "-m", "lab.cli", "run", "--help"], capture_output=True,
                         text=True, cwd=cwd, timeout=60, env={"PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())  # argparse wraps; compare without line breaks
    for form in ("debian:SERIES", "debian:VERSION", "IMAGE[,modules=DIR]", "debian-src:SERIES",
                 "git:PATH[@REV]", "worktree:PATH", "tree:PATH"):
        assert form in valid_forms() and form in text, form
    assert "--kconfig-add" in text and "lab run --kernel worktree:." in text
    for code, meaning in RUN_EXIT_CODES.items():
        assert f"{code} {meaning}" in text, code
    assert 130 in RUN_EXIT_CODES
    for option in ("--cpus", "--memory", "--append", "--boot-timeout", "--call-timeout",
                   "--max-reboots", "tcg-single"):
        assert option in text, option
    assert "examples:" in res.stdout and "lab run --kernel debian:6.1" in res.stdout


@pytest.mark.parametrize("args, needles", [
    (["--memory", "2G; touch PWNED"], ["--memory", "2G or 2048M"]),
    (["--memory", "64M"], ["--memory", "at least 256M"]),
    (["--append", "a b"], ["--append", "one kernel parameter"]),
    (["--cpus", "0"], ["--cpus", "1-64"]),
    (["--boot-timeout", "0"], ["--boot-timeout", "more than 0"]),
    (["--call-timeout", "x"], ["--call-timeout", "seconds"]),
    (["--max-reboots", "-1"], ["--max-reboots", "0 or more"]),
    (["--accel", "hvf"], ["--accel", "tcg-single"]),
])
def test_bad_guest_options(where: tuple[Path, Path], args: list[str], needles: list[str]) -> None:
    cache, cwd = where
    _one_line_exit_2(lab("run", *args, cache=cache, cwd=cwd), *needles)
    assert not (cwd / "results").exists() and not (cwd / "PWNED").exists()
    if args[0] == "--max-reboots":
        return  # not a bisection's option: a crash at a commit is evidence
    res = lab("bisect", "--repo", str(cwd), "--good", "a", "--bad", "b", "-k", "x", *args,
              cache=cache, cwd=cwd)
    _one_line_exit_2(res, *needles)


def test_plain_pytest_checks_the_guest_options_too(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                          str(REPO / "scenarios" / "enosys"), "--lab-kernel", "debian:7.2",
                          f"--lab-results={tmp_path}", "--lab-memory", "2G; touch PWNED"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                              "HOME": str(tmp_path)})
    assert res.returncode == pytest.ExitCode.USAGE_ERROR, res.stdout + res.stderr
    assert "argument --lab-memory: '2G; touch PWNED': give a size" in res.stderr
    assert not (tmp_path / "PWNED").exists() and not list(tmp_path.glob("*-debian*"))


# Each tries to run `touch X` on the host through a guest option (virtme-ng used to hand
# --memory to a shell as it is): each is refused before anything runs, X never appears.
# The unquoted forms need no space, so only the allow-list of lab.options refuses them.
INJECTIONS = [
    ("--memory", "2G;touch X"), ("--cpus", "2;touch X"), ("--append", "quiet;touch X"),
    ("--append", "a $(touch X)"), ("--append", "a`touch X`"),
    ("--append", "quiet;touch${IFS}X"), ("--append", "a$(touch${IFS}X)"),
    ("--append", "a`touch${IFS}X`"), ("--append", "a|touch"), ("--append", "a&&touch"),
    ("--append", "a\ntouch"),
]


@pytest.mark.parametrize(("flag", "value"), INJECTIONS)
def test_an_injection_through_a_guest_option_is_refused(where: tuple[Path, Path], flag: str,
                                                        value: str) -> None:
    cache, cwd = where
    res = lab("run", "--kernel", "debian:7.2", flag, value, cache=cache, cwd=cwd)
    _one_line_exit_2(res, f"argument {flag}: ", repr(value) if flag != "--cpus" else value)
    assert not (cwd / "X").exists() and not (cwd / "results").exists()


@pytest.mark.parametrize(("flag", "value"), [
    ("--lab-memory", "2G;touch X"), ("--lab-cpus", "2;touch X"),
    ("--lab-append", "quiet;touch X"), ("--lab-append", "a$(touch${IFS}X)"),
    ("--lab-append", "a`touch${IFS}X`"),
])
def test_an_injection_through_plain_pytest_is_refused(tmp_path: Path, flag: str,
                                                      value: str) -> None:
    """Plain pytest's own usage error (4), one line, before any kernel is fetched."""
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                          str(REPO / "scenarios" / "enosys"), "--lab-kernel", "debian:7.2",
                          f"--lab-results={tmp_path}", flag, value],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                              "HOME": str(tmp_path)})
    assert res.returncode == pytest.ExitCode.USAGE_ERROR, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [
        next(ln for ln in res.stderr.splitlines() if ln.startswith(f"ERROR: argument {flag}: "))]
    assert "Traceback" not in res.stdout + res.stderr
    assert not (tmp_path / "X").exists() and not list(tmp_path.glob("*-debian*"))


def test_ctrl_c_is_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An interruption is neither a usage error (2) nor a pass: 128 + SIGINT, as shells say."""
    from lab import cli
    from lab.run.runner import exit_status

    assert exit_status(pytest.ExitCode.INTERRUPTED, ["PASS"], stop=None) == 130
    assert exit_status(pytest.ExitCode.INTERRUPTED, ["PASS", "NOTRUN"],
                       stop={"exit_code": 130, "reason": "interrupted (Ctrl-C)"}) == 130

    def interrupted(args: object, argv: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_dispatch", interrupted)
    assert cli.main(["kernels"]) == 130
    assert capsys.readouterr().err == "lab: interrupted\n"


@pytest.mark.parametrize("nodeid, needles", [
    ("scenarios/aio/test_nope.py::test_x", ["no file scenarios/aio/test_nope.py"]),
    ("scenarios/aio/test_io_destroy.py::test_nope", ["defines no test 'test_nope'"]),
])
def test_a_node_id_that_names_no_test_is_refused_first(where: tuple[Path, Path], nodeid: str,
                                                       needles: list[str]) -> None:
    cache, cwd = where
    _one_line_exit_2(lab("run", "--", nodeid, cache=cache, cwd=cwd), *needles)
    assert not (cwd / "results").exists() and not cache.exists()


def test_rerun_of_something_that_is_not_a_run(where: tuple[Path, Path]) -> None:
    _, cwd = where
    (cwd / "notarun").mkdir()
    for target in ("notarun", "missing"):
        res = subprocess.run([sys.executable, "-m", "lab.cli", "rerun", str(cwd / target)],
                             capture_output=True, text=True, cwd=cwd, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                  "HOME": str(cwd)})
        _one_line_exit_2(res, "is not a lab run directory")
