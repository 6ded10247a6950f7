"""The developer's git tree as it is: worktree:PATH, and git:PATH refusing uncommitted edits.

Real git on small repositories in tmp_path (a fake kernel tree: the files
lab.kernel.source checks, a Kconfig with the fragments' symbols); the build
itself runs against tests/test_kconfig.py's fake make, every git command for real.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_cli import _one_line_exit_2, lab
from test_kconfig import FakeMake, _fake_tree, _git

from lab import proc
from lab.errors import UserError
from lab.kernel import build, source
from lab.kernel.resolve import check, resolve_kernel
from lab.kernel.spec import WorktreeSpec, parse_spec, valid_forms


def _repo(path: Path) -> tuple[Path, str]:
    """A committed fake kernel tree that ignores objects and .config, as the kernel's does."""
    repo = _fake_tree(path)
    (repo / ".gitignore").write_text(".*\n!.gitignore\n*.o\n/include/config/\n")
    (repo / "fs").mkdir()
    (repo / "fs" / "aio.c").write_text("int aio;\n")
    (repo / "scripts").mkdir()
    (repo / "scripts" / "tool.sh").write_text("#!/bin/sh\n")
    (repo / "scripts" / "tool.sh").chmod(0o755)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "v7.2")
    return repo, _git(repo, "rev-parse", "HEAD")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root`` (the .git directory too) with its size and mtime."""
    found = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            found[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size,
                                                                         st.st_mtime_ns)
    return found


# --- the spec ------------------------------------------------------------------------------


def test_worktree_spec_parses_and_is_a_valid_form() -> None:
    assert parse_spec("worktree:/src/linux") == WorktreeSpec(Path("/src/linux"))
    assert parse_spec("worktree:~/linux") == WorktreeSpec(Path.home() / "linux")
    assert "worktree:PATH" in valid_forms()
    with pytest.raises(UserError, match="incomplete"):
        parse_spec("worktree:")


def test_worktree_with_a_revision_says_to_use_git() -> None:
    with pytest.raises(UserError) as exc:
        parse_spec("worktree:/src/linux@v7.2")
    msg = str(exc.value)
    assert "\n" not in msg and "git:/src/linux@v7.2" in msg


def test_a_pinned_worktree_spec_names_a_commit_and_a_digest() -> None:
    pin = "a" * 40 + "+" + "0123456789abcdef"
    assert parse_spec(f"worktree:/src/linux@{pin}") == WorktreeSpec(Path("/src/linux"), pin)
    with pytest.raises(UserError, match="for a commit write git:"):
        parse_spec(f"worktree:/src/linux@{'a' * 40}")


def test_a_worktree_path_with_an_at_sign_is_a_path(tmp_path: Path) -> None:
    (tmp_path / "linux@home").mkdir()
    assert parse_spec(f"worktree:{tmp_path}/linux@home") == WorktreeSpec(
        tmp_path / "linux@home")


# --- git:PATH without a revision refuses uncommitted edits -----------------------------------


def test_git_head_with_uncommitted_edits_is_refused_in_one_line(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path / "linux")
    cache = tmp_path / "cache"
    check(f"git:{repo}", cache=cache)  # clean: HEAD is what the tree holds
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")
    (repo / "fs" / "new.c").write_text("int n;\n")
    with pytest.raises(UserError) as exc:
        check(f"git:{repo}", cache=cache)
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in (f"HEAD ({head[:12]})", "2 file(s)", "1 changed, 1 untracked", "fs/aio.c",
                   f"worktree:{repo}", f"git:{repo}@HEAD"):
        assert needle in msg, msg
    # A named commit is built whatever the tree holds: the user named it.
    check(f"git:{repo}@HEAD", cache=cache)
    check(f"git:{repo}@{head}", cache=cache)


def test_ignored_files_are_not_uncommitted_edits(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "linux")
    (repo / ".config").write_text("CONFIG_X=y\n")
    (repo / "fs" / "aio.o").write_bytes(b"\x7fELF")
    (repo / "include" / "config").mkdir(parents=True)
    (repo / "include" / "config" / "auto.conf").write_text("")
    check(f"git:{repo}", cache=tmp_path / "cache")


def test_staged_and_deleted_files_count(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "linux")
    (repo / "fs" / "aio.c").write_text("int aio = 2;\n")
    _git(repo, "add", "fs/aio.c")  # staged, not committed
    (repo / "scripts" / "tool.sh").unlink()
    with pytest.raises(UserError, match=r"2 file\(s\) .*\(2 changed, 0 untracked"):
        check(f"git:{repo}", cache=tmp_path / "cache")


def test_lab_run_refuses_a_dirty_git_head_before_anything(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "linux")
    (repo / "init" / "main.c").write_text("/* edited */\n")
    res = lab("run", "--kernel", f"git:{repo}", cache=tmp_path / "cache", cwd=tmp_path)
    _one_line_exit_2(res, "1 file(s)", "worktree:", "@HEAD")
    assert not (tmp_path / "results").exists()


# --- worktree:PATH's identity ----------------------------------------------------------------


def test_identity_is_the_commit_plus_a_digest_of_the_changes(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path / "linux")
    cache = tmp_path / "cache"

    def ident() -> str:
        return source.working_tree(repo, cache=cache).identity

    clean = ident()
    assert clean == f"git:{head}" == source.git_commit(repo, None, cache=cache).identity
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")
    edited = ident()
    assert edited.startswith(f"worktree:{head}+") and len(edited.split("+")[1]) == 16
    assert ident() == edited  # the same edit, the same kernel
    (repo / "fs" / "aio.c").write_text("int aio = 2;\n")
    assert ident() not in (edited, clean)
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")
    assert ident() == edited  # content, not time: back to the first edit's identity
    (repo / "fs" / "new.c").write_text("int n;\n")
    with_new = ident()
    assert with_new not in (edited, clean)
    (repo / "fs" / "new.o").write_bytes(b"x")  # ignored: not part of what is built
    assert ident() == with_new
    (repo / "scripts" / "tool.sh").chmod(0o644)  # a mode change is a change
    assert ident() != with_new
    _git(repo, "checkout", "-q", "--", ".")
    (repo / "fs" / "new.c").unlink()
    assert ident() == clean


def test_reading_a_working_tree_writes_nothing_in_it(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "linux")
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")
    # A stale index entry (its mtime moved, its content not): git diff would refresh it and
    # write the index.  Well before the index's own mtime, so that it is no racy entry.
    old = time.time() - 60
    os.utime(repo / "Kconfig", (old, old))
    (repo / "fs" / "new.c").write_text("int n;\n")
    before = _snapshot(repo)
    cache = tmp_path / "cache"
    wt = source.working_tree(repo, cache=cache)
    with source.git_checkout(wt) as tree:
        assert tree.kind == "worktree"
    assert _snapshot(repo) == before


# --- the lab's clone holds HEAD plus the changes, incrementally --------------------------------


def test_checkout_copies_the_changes_and_only_rewrites_what_changed(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path / "linux")
    cache = tmp_path / "cache"
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")
    (repo / "fs" / "new.c").write_text("int n;\n")
    (repo / "fs" / "new.o").write_bytes(b"object")
    (repo / "scripts" / "tool.sh").unlink()
    (repo / "scripts" / "link").symlink_to("tool.sh")
    wt = source.working_tree(repo, cache=cache)
    with source.git_checkout(wt) as tree:
        clone = tree.path
        assert (tree.identity, tree.slot) == (wt.identity, f"git-{wt.clone.key}")
        assert (clone / "fs" / "aio.c").read_text() == "int aio = 1;\n"
        assert (clone / "fs" / "new.c").read_text() == "int n;\n"
        assert not (clone / "fs" / "new.o").exists()
        assert not (clone / "scripts" / "tool.sh").exists()
        assert os.readlink(clone / "scripts" / "link") == "tool.sh"
    mtimes = {p: (clone / p).stat().st_mtime_ns for p in ("fs/aio.c", "fs/new.c", "Kconfig")}
    (repo / "fs" / "new.c").write_text("int n = 2;\n")  # one more edit, in one file
    with source.git_checkout(source.working_tree(repo, cache=cache)) as tree:
        assert tree.path == clone
        assert (clone / "fs" / "new.c").read_text() == "int n = 2;\n"
        assert (clone / "fs" / "new.c").stat().st_mtime_ns != mtimes["fs/new.c"]
        for kept in ("fs/aio.c", "Kconfig"):  # untouched: make has nothing to redo there
            assert (clone / kept).stat().st_mtime_ns == mtimes[kept]
    # The commit alone (git:PATH@HEAD) in the same clone: nothing of the overlay is left.
    found = source.git_commit(repo, "HEAD", cache=cache)
    with source.git_checkout(found) as tree:
        assert tree.path == clone and tree.identity == f"git:{head}"
        assert (clone / "fs" / "aio.c").read_text() == "int aio;\n"
        assert (clone / "scripts" / "tool.sh").is_file()
        assert not (clone / "fs" / "new.c").exists() and not (clone / "scripts" / "link").exists()
        status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain",
                                 "--untracked-files=all"], capture_output=True, text=True)
        assert status.stdout == ""


def test_an_edit_while_the_lab_copies_is_refused(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path / "linux")
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")
    wt = source.working_tree(repo, cache=tmp_path / "cache")
    (repo / "fs" / "aio.c").write_text("int aio = 3;\n")  # saved after it was read
    with pytest.raises(UserError, match="changed while the lab was reading"), \
            source.git_checkout(wt):
        pass


def test_linked_work_trees_share_the_repository_s_clone(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path / "linux")
    linked = tmp_path / "linux-fix"
    _git(repo, "worktree", "add", "-q", "--detach", str(linked), head)
    (linked / "fs" / "aio.c").write_text("int aio = 9;\n")
    cache = tmp_path / "cache"
    main, other = (source.working_tree(p, cache=cache) for p in (repo, linked))
    assert main.clone.root == other.clone.root
    assert main.identity == f"git:{head}" and other.identity.startswith(f"worktree:{head}+")
    assert other.changes.top == linked.resolve()


# --- through resolve_kernel, with a fake make -------------------------------------------------


class GitAndFakeMake(FakeMake):
    """Real git, fake make and gcc."""

    def __call__(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        if argv[0] == "git":
            return REAL_RUN(argv, **kw)
        return super().__call__(argv, **kw)


REAL_RUN = proc.run


def test_resolve_builds_the_worktree_and_a_clean_one_is_the_commit_s_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, head = _repo(tmp_path / "linux")
    cache = tmp_path / "cache"
    fake = GitAndFakeMake()
    monkeypatch.setattr(proc, "run", fake)

    def makes() -> int:
        return sum(1 for c in fake.calls if build.TARGET in c)

    committed = resolve_kernel(f"git:{repo}@{head}", cache=cache)
    assert makes() == 1
    clean = resolve_kernel(f"worktree:{repo}", cache=cache)
    assert makes() == 1 and clean.image == committed.image  # the same build
    assert clean.identity()["source_id"] == f"git:{head}"
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")
    edited = resolve_kernel(f"worktree:{repo}", cache=cache, variant="debug")
    assert makes() == 2 and edited.image != committed.image
    ident = edited.identity()
    assert (ident["spec"], ident["source"], ident["variant"]) == (
        f"worktree:{repo}", "worktree", "debug")
    assert ident["source_id"] == source.working_tree(repo, cache=cache).identity
    # One object tree per repository and variant, whatever the working tree holds.
    outs = {a for c in fake.calls for a in c if a.startswith("O=")}
    assert len(outs) == 2 and all(f"git-{repo.name}-" in o for o in outs), outs
    assert resolve_kernel(f"worktree:{repo}", cache=cache, variant="debug") == edited
    assert makes() == 2  # a cache hit


def test_a_reproducer_pins_the_worktree_s_state(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    repo, head = _repo(tmp_path / "linux")
    cache = tmp_path / "cache"
    fake = GitAndFakeMake()
    monkeypatch.setattr(proc, "run", fake)
    assert resolve_kernel(f"worktree:{repo}", cache=cache).pinned_spec() == \
        f"git:{repo}@{head}"  # clean: the commit
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")
    edited = resolve_kernel(f"worktree:{repo}", cache=cache)
    pinned = edited.pinned_spec()
    digest = source.working_tree(repo, cache=cache).changes.digest
    assert pinned == f"worktree:{repo}@{head}+{digest}" == edited.identity()["pinned"]
    (repo / "fs" / "aio.c").write_text("int aio = 2;\n")  # the tree moved on
    again = resolve_kernel(pinned, cache=cache)  # the cached kernel of that state
    assert again.image == edited.image and again.spec == pinned
    check(pinned, cache=cache)
    build_dir = edited.image.parent
    subprocess.run(["rm", "-rf", str(build_dir)], check=True)  # no longer cached
    with pytest.raises(UserError) as exc:
        check(pinned, cache=cache)
    msg = str(exc.value)
    assert "not cached" in msg and f"worktree:{repo}" in msg and "\n" not in msg
    (repo / "fs" / "aio.c").write_text("int aio = 1;\n")  # the same state again: built
    assert resolve_kernel(pinned, cache=cache).identity()["source_id"] == \
        f"worktree:{head}+{digest}"
