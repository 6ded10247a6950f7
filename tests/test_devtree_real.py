"""The developer's tree as it is, for real: an uncommitted edit (worktree:), a configured
tree (tree:), an added option (--kconfig-add); real git, real Kbuild, a real boot.

They reuse what the other real tests build, so that a session pays no cold build
for them once the cache is warm: the synthetic history of Debian's linux-source-7.2
(lab.bench.history; tests/test_bisect_real.py bisects it) and its lab clone's object
tree, and the base object tree of Debian's tree (tests/test_build_real.py).  The
configured tree is a copy of Debian's tree, configured and prepared in place by Kbuild
itself, made once and kept in the cache like the histories; the object tree of the
lab's copy of it is the one cold build these tests add, on the first session only.
Each test prints what it measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labrun import REPO, lab_run
from test_worktree import _snapshot

from lab.bench import history
from lab.kernel import build, source
from lab.kernel.resolve import resolve_kernel
from lab.paths import cache_root

pytestmark = [pytest.mark.vm, pytest.mark.network, pytest.mark.build]
LOCALVERSION = 'CONFIG_LOCALVERSION="-wt"'
VARIANT = f"base+{LOCALVERSION}"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, timeout=600).stdout.strip()


def _compiled(log: Path) -> list[str]:
    """The objects a build log shows compiled (Kbuild's "  CC      fs/aio.o" lines)."""
    return re.findall(r"^  CC\s+(\S+\.o)$", log.read_text(errors="replace"), re.M)


@contextlib.contextmanager
def _linked_worktree(repo: Path, at: Path, commit: str) -> Iterator[Path]:
    """A linked work tree of ``repo`` at ``commit``, with the top level and fs/ checked out:
    sparse, so that it takes seconds; the files it leaves out are HEAD's, for git and so
    for the lab."""
    _git(repo, "worktree", "add", "--quiet", "--no-checkout", "--detach", str(at), commit)
    try:
        gitdir = Path(_git(at, "rev-parse", "--absolute-git-dir"))
        (gitdir / "info").mkdir(exist_ok=True)
        (gitdir / "info" / "sparse-checkout").write_text("/*\n!/*/\n/fs/\n")
        _git(at, "-c", "core.sparseCheckout=true", "read-tree", "-mu", "HEAD")
        yield at
    finally:
        _git(repo, "worktree", "remove", "--force", str(at))


def test_worktree_builds_the_uncommitted_edit_and_the_record_names_it(tmp_path: Path) -> None:
    cache = cache_root()
    hist = history.make(cache, source.debian_source("7.2", cache=cache), "aio-destroy-enoent",
                        history.aio_regression_changes())
    head = hist.commits[9]  # builds (the break is repaired), before the errno change
    history.forget_builds(cache, hist.repo)  # so that this session builds, not a cache hit
    with _linked_worktree(hist.repo, tmp_path / "linux", head) as wt:
        # The developer's uncommitted edit: the culprit's change, not committed.
        aio = wt / "fs" / "aio.c"
        aio.write_text(history.replace(*history.ENOENT)(aio.read_text()))
        gitdir = Path(_git(wt, "rev-parse", "--absolute-git-dir"))
        before = (_snapshot(wt), _snapshot(gitdir))
        run = lab_run(tmp_path, "-k", "test_destroy_twice_is_einval or test_aio_nr_accounting",
                      "--kconfig-add", LOCALVERSION, kernel=f"worktree:{wt}", timeout=3600)
        # The edit is in the kernel: io_destroy of a dead context says ENOENT, a FAIL.
        assert run.returncode == 1, run.out[-5000:]
        recs = run.records()
        verdicts = {r["test"].split("::")[1].split("[")[0]: r for r in recs}
        einval = verdicts.pop("test_destroy_twice_is_einval")
        assert einval["verdict"] == "FAIL" and "ENOENT" in einval["reason"], einval
        assert verdicts and {r["verdict"] for r in verdicts.values()} == {"PASS"}
        wanted = source.working_tree(wt, cache=cache).identity
        assert wanted.startswith(f"worktree:{head}+")
        for r in recs:
            k = r["kernel"]
            assert (k["spec"], k["source"], k["source_id"], k["variant"]) == (
                f"worktree:{wt}", "worktree", wanted, VARIANT), k
            assert "-wt" in k["release"], k  # the added option stuck: uname -r says so
            # A reproducer names this state of the tree, not whatever it holds later.
            assert k["pinned"] == f"worktree:{wt.resolve()}@{wanted.removeprefix('worktree:')}"
            assert r["cell"].endswith(f"/{VARIANT}") and r["cell"] in r["test"]
        phases = [json.loads(x) for x in (run.run_dir / "phases.jsonl").read_text().splitlines()]
        first = next(p["seconds"] for p in phases if p["phase"] == "fetch")
        assert (_snapshot(wt), _snapshot(gitdir)) == before  # the user's tree: only read

        # One more edit, in one file: one compile and a link, not a build.
        aio.write_text(aio.read_text() + "/* kernel-lab: one more edit */\n")
        t0 = time.monotonic()
        k = resolve_kernel(f"worktree:{wt}", cache=cache, variant=VARIANT)
        second = time.monotonic() - t0
        compiled = _compiled(k.image.parent / "build.log")
        linking = ("init/version", ".vmlinux", "arch/x86/boot/")
        assert "fs/aio.o" in compiled, compiled
        assert [c for c in compiled if c != "fs/aio.o" and not c.startswith(linking)] == []
        assert k.identity()["source_id"] not in (wanted, f"git:{head}")
        # Clean again: the commit's own identity, the build git:PATH@<commit> names.
        _git(wt, "checkout", "--", "fs/aio.c")
        assert source.working_tree(wt, cache=cache).identity == f"git:{head}"
    print(f"\nworktree: first build (edit + added option) and boot of 2 tests: fetch "
          f"{first:.1f}s; one-file edit rebuilt in {second:.1f}s, compiled {compiled}")


def _configured_tree(cache: Path) -> Path:
    """Debian's tree as a developer who also builds it by hand has it: configured
    (tinyconfig), prepared (include/config, arch/x86/include/generated) and one object
    built, by Kbuild, in place.  Made once and kept, so its path, and so the lab's copy
    of it and that copy's object tree, stay the same from one session to the next."""
    tree = source.debian_source("7.2", cache=cache)
    digest = hashlib.sha256(tree.identity.encode()).hexdigest()[:12]
    root = cache / "test-trees" / f"configured-{digest}"
    linux = root / "linux"
    if (root / "done").is_file():
        return linux
    subprocess.run(["rm", "-rf", str(root)], check=True)
    root.mkdir(parents=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(tree.path), str(linux)], check=True,
                   timeout=1800)
    for target in (["tinyconfig"], [f"-j{build.make_jobs()}", "prepare"], ["init/main.o"]):
        subprocess.run(["make", "-s", "-C", str(linux), *target], check=True, timeout=1800,
                       capture_output=True)
    (root / "done").write_text("")
    return linux


def test_a_configured_tree_builds_from_the_lab_s_copy_and_stays_as_it_was(
        tmp_path: Path) -> None:
    cache = cache_root()
    linux = _configured_tree(cache)
    for built in (".config", "include/config/auto.conf", "arch/x86/include/generated",
                  "init/main.o", "scripts/kconfig/conf"):
        assert (linux / built).exists(), built
    # A saved edit, new in every session (so that this session builds), as an editor
    # saves: a new file renamed over the old one.
    original = source.debian_source("7.2", cache=cache).path / "fs" / "aio.c"
    edited = linux / "fs" / ".aio.c.edit"
    edited.write_text(original.read_text() + f"/* kernel-lab: edit {time.time_ns()} */\n")
    os.replace(edited, linux / "fs" / "aio.c")
    before = _snapshot(linux)
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "lab.cli", "fetch", f"tree:{linux}", "--cache",
                          str(cache)], capture_output=True, text=True, timeout=3600, cwd=REPO)
    took = time.monotonic() - t0
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    assert _snapshot(linux) == before  # not one file added, removed or touched
    k = resolve_kernel(f"tree:{linux}", cache=cache)  # what fetch built: a cache hit now
    assert k.source == "tree" and k.identity()["source_id"].startswith(f"tree:{linux}#")
    assert k.image.read_bytes()[0x202:0x206] == b"HdrS"
    # The lab's config, not the developer's: tinyconfig has no AIO, base has.
    assert "# CONFIG_AIO is not set" in (linux / ".config").read_text()
    assert k.config_option("AIO") == "y"
    compiled = _compiled(k.image.parent / "build.log")
    assert "fs/aio.o" in compiled
    print(f"\ntree: configured tree built from the lab's copy in {took:.1f}s, "
          f"{len(compiled)} objects compiled")


def test_an_added_option_that_cannot_stick_stops_the_build_naming_it() -> None:
    cache = cache_root()
    tree = source.debian_source("7.2", cache=cache)
    out = cache / "build" / build._slot(tree, "base")
    config = out / ".config"
    before = (config.read_text(), config.stat().st_mtime_ns) if config.is_file() else None
    t0 = time.monotonic()
    # MODULE_SIG depends on MODULES, which base leaves off: Kconfig drops it.
    res = subprocess.run([sys.executable, "-m", "lab.cli", "fetch", "debian-src:7.2",
                          "--kconfig-add", "CONFIG_MODULE_SIG=y", "--cache", str(cache)],
                         capture_output=True, text=True, timeout=1800, cwd=REPO)
    took = time.monotonic() - t0
    assert res.returncode == 2, (res.stdout + res.stderr)[-3000:]
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert errors[0].startswith("lab: error: variant base+CONFIG_MODULE_SIG=y: 1 option(s) "
                                "did not stick"), errors
    assert "CONFIG_MODULE_SIG=y (--kconfig-add): absent" in errors[0]
    if before is not None:  # the object tree keeps its config: base builds on unchanged
        assert (config.read_text(), config.stat().st_mtime_ns) == before
    print(f"\nkconfig-add: refused after Kconfig in {took:.1f}s")
