"""tree:PATH of a configured tree: the lab's copy of its source files, never the tree itself.

A small fake kernel tree in tmp_path with the kernel's kind of .gitignore rules
and what an in-place build leaves (.config, include/config,
arch/x86/include/generated, objects, .cmd files); real git lists the files, the
build runs against tests/test_kconfig.py's fake make.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_kconfig import FakeMake, _fake_tree
from test_worktree import REAL_RUN, _snapshot

from lab import proc
from lab.errors import UserError
from lab.kernel import build, mirror, source
from lab.kernel.resolve import check, resolve_kernel

# The rules of the kernel's own .gitignore files that matter here (top and scripts/).
TOP_RULES = """\
.*
*.o
*.o.*
*.a
/vmlinux
/System.map
/include/config/
/include/generated/
/arch/*/include/generated/
!.gitignore
"""
SOURCES = {"Makefile", "Kconfig", "arch/x86/Kconfig", "init/main.c", "fs/aio.c", ".gitignore",
           "scripts/basic/fixdep.c", "scripts/.gitignore", "scripts/setlocalversion"}
BUILT = {".config", ".config.old", "include/config/auto.conf", "include/generated/autoconf.h",
         "arch/x86/include/generated/asm/orc_hash.h", "fs/aio.o", "fs/.aio.o.cmd",
         "scripts/basic/fixdep", "vmlinux", "System.map", "init/built-in.a"}


def _configured(path: Path) -> Path:
    """A fake kernel tree its developer configured and built in place."""
    tree = _fake_tree(path)
    (tree / ".gitignore").write_text(TOP_RULES)
    (tree / "scripts" / "basic").mkdir(parents=True)
    (tree / "scripts" / ".gitignore").write_text("/basic/fixdep\n")
    (tree / "scripts" / "basic" / "fixdep.c").write_text("int main(void) { return 0; }\n")
    (tree / "scripts" / "setlocalversion").write_text("#!/bin/sh\n")
    (tree / "scripts" / "setlocalversion").chmod(0o755)
    (tree / "fs").mkdir()
    (tree / "fs" / "aio.c").write_text("int aio;\n")
    for rel in BUILT:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"built in place\n")
    return tree


def test_source_files_are_what_the_gitignore_rules_keep(tmp_path: Path) -> None:
    tree = _configured(tmp_path / "linux")
    assert set(mirror.Mirror(tree, cache=tmp_path / "cache").source_files()) == SOURCES


def test_a_tree_s_own_repository_is_not_read(tmp_path: Path) -> None:
    tree = _configured(tmp_path / "linux")
    subprocess.run(["git", "-C", str(tree), "init", "-q"], check=True)
    (tree / ".git" / "info" / "exclude").write_text("fs/\n")  # the user's own: not the lab's
    files = set(mirror.Mirror(tree, cache=tmp_path / "cache").source_files())
    assert files == SOURCES


def test_debian_s_top_level_rule_does_not_hide_the_tree(tmp_path: Path) -> None:
    # linux-source-X's top .gitignore ends with Debian's packaging rules, which ignore
    # every top-level entry but debian/; read as they are, they leave nothing to build.
    tree = _configured(tmp_path / "linux")
    (tree / ".gitignore").write_text(TOP_RULES + "\n# Debian packaging\n/*\n!/debian/\n")
    (tree / "debian").mkdir()
    (tree / "debian" / "rules").write_text("#!/usr/bin/make -f\n")
    files = set(mirror.Mirror(tree, cache=tmp_path / "cache").source_files())
    assert files == SOURCES | {"debian/rules"}


def test_a_configured_tree_builds_from_a_copy_and_is_never_written(tmp_path: Path) -> None:
    tree = _configured(tmp_path / "linux")
    cache = tmp_path / "cache"
    check(f"tree:{tree}", cache=cache)  # once refused: "has an in-tree build (.config)"
    before = _snapshot(tree)
    with source.plain_tree(tree, cache=cache) as copy:
        assert copy.kind == "tree" and copy.version == "7.2.13"
        assert copy.path != tree and copy.identity.startswith(f"tree:{tree}#")
        files = {os.path.relpath(os.path.join(d, n), copy.path)
                 for d, _, names in os.walk(copy.path) for n in names}
        assert files == SOURCES  # no .config, include/config, objects: Kbuild builds it
        assert os.access(copy.path / "scripts" / "setlocalversion", os.X_OK)
    assert _snapshot(tree) == before


def test_a_resync_writes_only_what_changed(tmp_path: Path) -> None:
    tree = _configured(tmp_path / "linux")
    m = mirror.Mirror(tree, cache=tmp_path / "cache")

    def sync() -> mirror.Synced:
        with m.synced() as synced:
            return synced

    first = sync()
    assert (first.files, first.written, first.removed) == (len(SOURCES), len(SOURCES), 0)
    copy = first.tree
    mtimes = {rel: (copy / rel).stat().st_mtime_ns for rel in SOURCES}
    again = sync()
    assert (again.written, again.removed, again.fingerprint) == (0, 0, first.fingerprint)
    os.utime(tree / "Kconfig", ns=(1, 1))  # touched, not changed: nothing to rebuild
    touched = sync()
    assert (touched.written, touched.fingerprint) == (0, first.fingerprint)
    (tree / "fs" / "aio.c").write_text("int aio = 1;\n")
    (tree / "fs" / "aio.o").write_bytes(b"rebuilt in place\n")  # the developer's make
    (tree / "init" / "main.c").unlink()
    edited = sync()
    assert (edited.written, edited.removed) == (1, 1)
    assert edited.fingerprint != first.fingerprint
    assert (copy / "fs" / "aio.c").read_text() == "int aio = 1;\n"
    assert not (copy / "init" / "main.c").exists() and not (copy / "init").exists()
    changed = {rel for rel in SOURCES - {"init/main.c"}
               if (copy / rel).stat().st_mtime_ns != mtimes[rel]}
    assert changed == {"fs/aio.c"}


def test_in_tree_build_files_the_rules_keep_are_what_kbuild_refuses(tmp_path: Path) -> None:
    tree = _configured(tmp_path / "linux")
    (tree / ".gitignore").unlink()  # e.g. a tarball that lost its dot files
    with pytest.raises(UserError) as exc, source.plain_tree(tree, cache=tmp_path / "cache"):
        pass
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in ("not clean", f"make -C {tree} mrproper", ".gitignore"):
        assert needle in msg, msg


def test_rules_that_ignore_the_kernel_s_own_files_are_named(tmp_path: Path) -> None:
    tree = _configured(tmp_path / "linux")
    (tree / "init" / ".gitignore").write_text("main.c\n")
    with pytest.raises(UserError, match=r"rules ignore init/main\.c"), \
            source.plain_tree(tree, cache=tmp_path / "cache"):
        pass


class GitAndFakeMake(FakeMake):
    def __call__(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        if argv[0] == "git":
            return REAL_RUN(argv, **kw)
        return super().__call__(argv, **kw)


def test_resolve_builds_the_copy_in_one_object_tree_per_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _configured(tmp_path / "linux")
    cache = tmp_path / "cache"
    fake = GitAndFakeMake()
    monkeypatch.setattr(proc, "run", fake)
    before = _snapshot(tree)
    k = resolve_kernel(f"tree:{tree}", cache=cache)
    assert (k.source, k.variant) == ("tree", "base")
    assert k.identity()["source_id"].startswith(f"tree:{tree}#")
    makes = [c for c in fake.calls if build.TARGET in c]
    assert len(makes) == 1 and f"-C{tree}" not in "".join(makes[0])
    assert makes[0][2] == str(mirror.Mirror(tree, cache=cache).tree)
    assert resolve_kernel(f"tree:{tree}", cache=cache) == k  # unchanged: a cache hit
    (tree / "fs" / "aio.c").write_text("int aio = 1;\n")
    edited = resolve_kernel(f"tree:{tree}", cache=cache)
    makes = [c for c in fake.calls if build.TARGET in c]
    assert len(makes) == 2 and edited.image != k.image
    assert {a for c in makes for a in c if a.startswith("O=")} == {
        next(a for a in makes[0] if a.startswith("O="))}  # one object tree: incremental
    del before["fs/aio.c"]
    after = _snapshot(tree)
    del after["fs/aio.c"]
    assert after == before
