"""Config fragments, composition, validation, cache keys and the build's cache behaviour.

Golden files in tests/golden/kconfig/ hold the composed fragments of every
variant and the validation message for a config where options did not stick;
regenerate them with ``KERNEL_LAB_UPDATE_GOLDEN=1`` and review the diff.
The build itself runs against a fake ``make`` at lab.proc.run (the process seam).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lab.errors import UserError
from lab.kernel import build, kconfig, source
from lab.kernel.artifact import Kernel
from lab.kernel.resolve import resolve_kernel
from lab.kernel.spec import DebianSrcSpec, GitSpec, TreeSpec, parse_spec
from lab.proc import ProcessError

GOLDEN = Path(__file__).parent / "golden" / "kconfig"
UPDATE = bool(os.environ.get("KERNEL_LAB_UPDATE_GOLDEN"))


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path} (KERNEL_LAB_UPDATE_GOLDEN=1)"
    assert text == path.read_text()


# --- fragments -------------------------------------------------------------------------------


def test_every_fragment_parses_and_comments_each_option() -> None:
    for path in sorted(kconfig.KERNELS_DIR.glob("*.config")):
        lines = path.read_text().splitlines()
        opts = kconfig.parse_fragment("\n".join(lines), origin=path.name)
        assert opts, path
        numbers = {int(o.origin.rsplit(":", 1)[1]) for o in opts}
        for number in sorted(numbers):
            # the option, or the run of options it belongs to, follows a comment line
            above = number - 1
            while above in numbers:
                above -= 1
            assert above >= 1 and lines[above - 1].startswith("#"), \
                f"{path.name}:{number}: no comment says why"


def test_parse_forms() -> None:
    text = "# why\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=n\nCONFIG_D=\"x y\"\n\n"
    opts = kconfig.parse_fragment(text, origin="f.config")
    assert [(o.name, o.value, o.origin) for o in opts] == [
        ("CONFIG_A", "y", "f.config:2"), ("CONFIG_B", None, "f.config:3"),
        ("CONFIG_C", None, "f.config:4"), ("CONFIG_D", '"x y"', "f.config:5")]


@pytest.mark.parametrize("line", ["AIO=y", "CONFIG_AIO", "CONFIG_AIO=", "#CONFIG_AIO=y",
                                  "# CONFIG_AIO=n", "set CONFIG_AIO y"])
def test_bad_line_names_file_and_line(line: str) -> None:
    with pytest.raises(UserError) as exc:
        kconfig.parse_fragment(f"# ok\nCONFIG_X=y\n{line}\n", origin="kernels/bad.config")
    msg = str(exc.value)
    assert msg.startswith("kernels/bad.config:3: ") and "\n" not in msg


# --- variants and composition -----------------------------------------------------------------


def test_variant_names_are_the_fragments() -> None:
    assert kconfig.variant_names() == ["aio-off", "debug", "debuginfo", "io_uring-off"]


@pytest.mark.parametrize("spec,names", [
    (None, ()), ("", ()), ("base", ()), ("aio-off", ("aio-off",)),
    ("debug+aio-off", ("aio-off", "debug")), ("aio-off+debug+aio-off", ("aio-off", "debug")),
])
def test_split_variant(spec: str | None, names: tuple[str, ...]) -> None:
    assert kconfig.split_variant(spec) == names


def test_unknown_variant_lists_valid_ones() -> None:
    with pytest.raises(UserError) as exc:
        kconfig.split_variant("debug+aoi-off")
    msg = str(exc.value)
    assert "'aoi-off'" in msg and "base, aio-off, debug, debuginfo, io_uring-off" in msg


@pytest.mark.parametrize("variant", ["base", "aio-off", "io_uring-off", "debug",
                                     "debug+aio-off", "io_uring-off+aio-off"])
def test_composed_golden(variant: str) -> None:
    composed = kconfig.compose(variant)
    _golden(f"composed-{composed.variant}.config", composed.text())


def test_composition_is_order_free_and_hash_tracks_options() -> None:
    a, b = kconfig.compose("debug+aio-off"), kconfig.compose("aio-off+debug")
    assert a == b and a.variant == "aio-off+debug"
    hashes = {kconfig.compose(v).hash for v in ("base", "aio-off", "io_uring-off", "debug")}
    assert len(hashes) == 4
    _golden("hashes.txt", "".join(f"{v} {kconfig.compose(v).hash}\n" for v in
                                  ("base", "aio-off", "io_uring-off", "debug", "aio-off+debug")))


def test_variant_overrides_base_in_place() -> None:
    opts = {o.name: o for o in kconfig.compose("aio-off").options}
    assert opts["CONFIG_AIO"].value is None
    assert opts["CONFIG_AIO"].origin.endswith("aio-off.config:7")
    assert opts["CONFIG_IO_URING"].value == "y"


def test_conflicting_variants(tmp_path: Path) -> None:
    (tmp_path / "base.config").write_text("# b\nCONFIG_A=y\n")
    (tmp_path / "x.config").write_text("# x\nCONFIG_A=y\n")
    (tmp_path / "y.config").write_text("# y\n# CONFIG_A is not set\n")
    with pytest.raises(UserError, match="variants disagree on CONFIG_A"):
        kconfig.compose("x+y", tmp_path)


# --- validation -------------------------------------------------------------------------------

def _resolved(composed: kconfig.Composed) -> str:
    """What Kconfig would give for ``aio-off`` if three requests had not stuck."""
    lines = []
    for opt in composed.options:
        if opt.name == "CONFIG_AIO":
            lines.append("CONFIG_AIO=y")  # e.g. something selects it
        elif opt.name == "CONFIG_IO_URING":
            lines.append("# CONFIG_IO_URING is not set")  # a dependency is off
        elif opt.name != "CONFIG_NR_CPUS":  # invisible: its menu is off
            lines.append(opt.line())
    return "\n".join(["CONFIG_CC_IS_GCC=y", *lines]) + "\n"


def test_mismatches_golden() -> None:
    composed = kconfig.compose("aio-off")
    resolved = _resolved(composed)
    bad = kconfig.mismatches(composed, resolved)
    assert [m.option.name for m in bad] == ["CONFIG_NR_CPUS", "CONFIG_IO_URING", "CONFIG_AIO"]
    assert [m.present for m in bad] == [False, True, True]
    with pytest.raises(UserError) as exc:
        kconfig.validate(composed, resolved, where="out/.config")
    _golden("validate-aio-off.txt", str(exc.value).replace("; ", ";\n") + "\n")


def test_validate_passes_when_everything_stuck() -> None:
    composed = kconfig.compose("debug")
    text = "".join(f"{o.line()}\n" for o in composed.options)
    kconfig.validate(composed, text, where="x")
    # "is not set" is satisfied by an absent symbol (Kconfig omits invisible ones)
    text = "".join(f"{o.line()}\n" for o in composed.options if o.value is not None)
    kconfig.validate(composed, text, where="x")


def test_unknown_option_against_tree_symbols(tmp_path: Path) -> None:
    (tmp_path / "init").mkdir()
    (tmp_path / "Kconfig").write_text("config 64BIT\n\tbool\nmenuconfig AIO\n")
    (tmp_path / "init" / "Kconfig").write_text("config IO_URING\n\tbool \"x\"\n")
    symbols = kconfig.tree_symbols(tmp_path)
    assert symbols == {"CONFIG_64BIT", "CONFIG_AIO", "CONFIG_IO_URING"}
    unknown = kconfig.unknown_options(kconfig.compose("base"), symbols)
    assert "CONFIG_SMP" in [o.name for o in unknown]


# --- cache keys ---------------------------------------------------------------------------------


def test_cache_key_golden() -> None:
    key = build.cache_key("debian-src:linux-source-7.2=7.2.13-1", "0123456789abcdef",
                          "gcc (Debian 12.2.0-14+deb12u1) 12.2.0")
    _golden("cache-key.txt", key + "\n")
    assert len({build.cache_key(s, h, c) for s in ("a", "b") for h in ("1", "2")
                for c in ("gcc 12", "gcc 13")}) == 8


# --- kernel specs -------------------------------------------------------------------------------


def test_built_kinds_parse() -> None:
    assert parse_spec("debian-src:7.2") == DebianSrcSpec("7.2")
    assert parse_spec("git:/src/linux@v7.2") == GitSpec(Path("/src/linux"), "v7.2")
    assert parse_spec("git:/src/linux") == GitSpec(Path("/src/linux"), None)
    assert parse_spec("tree:/src/linux") == TreeSpec(Path("/src/linux"))
    with pytest.raises(UserError, match=r"known series 6\.1, 6\.12, 7\.2, 7\.3"):
        parse_spec("debian-src:5.10")
    with pytest.raises(UserError, match="git:PATH@REV"):
        parse_spec("git:/src/linux@")


def test_variant_needs_a_built_kernel(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs a kernel built by the lab"):
        resolve_kernel("debian:7.2", cache=tmp_path, variant="aio-off")


def test_unknown_variant_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="valid variants"):
        resolve_kernel("tree:/nonexistent", cache=tmp_path, variant="nope")


# --- sources ------------------------------------------------------------------------------------


def _fake_tree(path: Path, *, version: str = "7", patch: str = "2") -> Path:
    for rel in source._TREE_FILES:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text("")
    (path / "Makefile").write_text(f"VERSION = {version}\nPATCHLEVEL = {patch}\nSUBLEVEL = 13\n")
    symbols = {o.name for v in ("base", *kconfig.variant_names())
               for o in kconfig.compose(v).options}
    (path / "Kconfig").write_text("".join(f"config {s[7:]}\n" for s in sorted(symbols)))
    return path


def _in_place(path: Path) -> source.SourceTree:
    """A fake tree as a build source as it is (tree: builds go through lab.kernel.mirror,
    tested in tests/test_mirror.py; here the build alone is under test)."""
    return source.SourceTree(kind="tree", path=path, identity=f"tree:{path}#0",
                             version=source.tree_version(path))


def test_not_a_kernel_tree(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a Linux kernel tree"):
        source.check_tree(tmp_path)
    with pytest.raises(UserError, match="no such directory"):
        source.check_tree(tmp_path / "missing")


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, env=env,
                          capture_output=True, text=True).stdout.strip()


def test_git_commits_share_one_lab_clone_and_leave_the_users_repo_alone(tmp_path: Path) -> None:
    repo = _fake_tree(tmp_path / "linux")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "v7.2")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "init" / "main.c").write_text("/* changed */\n")
    _git(repo, "commit", "-qam", "change main.c")
    second = _git(repo, "rev-parse", "HEAD")
    before = sorted(p.relative_to(repo / ".git") for p in (repo / ".git").rglob("*"))
    cache = tmp_path / "cache"
    found = source.git_commit(repo, "HEAD~1", cache=cache)
    assert found.identity == f"git:{first}"
    with source.git_checkout(found) as tree:
        assert tree.identity == f"git:{first}" and tree.version == "7.2.13"
        assert (tree.path / "init" / "main.c").read_text() != "/* changed */\n"
        kconfig_mtime = (tree.path / "Kconfig").stat().st_mtime_ns
    with source.git_checkout(source.git_commit(repo, second[:10], cache=cache)) as tree2:
        # The same work tree and slot; only the changed file was rewritten.
        assert tree2.path == tree.path and tree2.slot == tree.slot is not None
        assert (tree2.path / "init" / "main.c").read_text() == "/* changed */\n"
        assert (tree2.path / "Kconfig").stat().st_mtime_ns == kconfig_mtime
    # The user's checkout and .git are as they were: the clone shares objects only.
    assert _git(repo, "status", "--porcelain") == ""
    assert sorted(p.relative_to(repo / ".git") for p in (repo / ".git").rglob("*")) == before
    with pytest.raises(UserError, match="no such revision"):
        source.git_commit(repo, "v9.9", cache=cache)
    with pytest.raises(UserError, match="not a git repository"):
        source.git_commit(tmp_path / "cache", None, cache=cache)


def test_git_commit_finds_a_commit_only_the_lab_clone_has(tmp_path: Path) -> None:
    repo = _fake_tree(tmp_path / "linux")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "v7.2")
    cache = tmp_path / "cache"
    clone = source.git_commit(repo, None, cache=cache).clone
    tree_id = clone.git("rev-parse", "HEAD^{tree}").strip()
    made = clone.git("-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", tree_id,
                     "-p", "HEAD", "-m", "lab-made").strip()
    assert source.git_commit(repo, made, cache=cache).commit == made
    with pytest.raises(UserError, match="no such revision"):
        source.git_commit(repo, made[:12], cache=cache)  # only full ids reach the clone


# --- the build, against a fake make ---------------------------------------------------------------


class FakeMake:
    """Stands in for lab.proc.run: Kconfig copies the fragment, make writes an image."""

    def __init__(self, *, fail: bool = False, drop: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.drop = drop  # an option Kconfig "refuses" (unmet dependency)

    def __call__(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        log_path: Path | None = kw.get("log_path")
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as f:
                f.write(f"+ {' '.join(argv)}\n")
        if argv[:2] == ["gcc", "--version"]:
            return subprocess.CompletedProcess(argv, 0, "gcc (Fake) 12.2.0\n", "")
        out = Path(next(a for a in argv if a.startswith("O="))[2:])
        if "allnoconfig" in argv:
            frag = Path(next(a for a in argv if a.startswith("KCONFIG_ALLCONFIG="))[18:])
            cand = out / next(a for a in argv if a.startswith("KCONFIG_CONFIG="))[15:]
            lines = [ln for ln in frag.read_text().splitlines()
                     if ln and not ln.startswith("# kernel-lab")
                     and (self.drop is None or self.drop not in ln)]
            cand.write_text("\n".join(lines) + "\n")
        elif build.TARGET in argv:
            if self.fail:
                assert log_path is not None
                with open(log_path, "a") as f:
                    f.write("  CC      fs/aio.o\nfs/aio.c:12:1: error: expected ';'\n"
                            "make[2]: *** [fs/aio.o] Error 1\n")
                raise ProcessError(argv, returncode=2, tail="Error 1", phase="build:make",
                                   log_path=log_path)
            (out / "arch/x86/boot").mkdir(parents=True, exist_ok=True)
            (out / build.IMAGE).write_bytes(b"bzImage")
            (out / "vmlinux").write_bytes(b"\x7fELF vmlinux")
            (out / "System.map").write_text("ffffffff81000000 T _text\n")
            (out / "include/config").mkdir(parents=True, exist_ok=True)
            (out / "include/config/kernel.release").write_text("7.2.13\n")
        elif "scripts_gdb" in argv:  # as Kbuild does: links into the tree, constants made
            tree = Path(argv[argv.index("-C") + 1])
            made = out / "scripts/gdb/linux"
            made.mkdir(parents=True, exist_ok=True)
            (made / "constants.py").write_text("LX_CONFIG_DEBUG_INFO_REDUCED = 0\n")
            (made / "utils.py").unlink(missing_ok=True)
            (made / "utils.py").symlink_to(tree / "scripts/gdb/linux/utils.py")
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.fixture
def tree(tmp_path: Path) -> source.SourceTree:
    return _in_place(_fake_tree(tmp_path / "linux"))


def _builds(fake: FakeMake) -> int:
    return sum(1 for c in fake.calls if build.TARGET in c)


def test_build_publishes_then_hits(tree: source.SourceTree, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMake()
    monkeypatch.setattr(build.proc, "run", fake)
    cache = tmp_path / "cache"
    k = build.build(tree, "debug+aio-off", cache=cache, spec_text="tree:x")
    assert (k.source, k.variant, k.release) == ("tree", "aio-off+debug", "7.2.13")
    assert k.config_option("AIO") is None and k.config_option("KASAN") == "y"
    assert k.image.read_bytes() == b"bzImage" and (k.image.parent / "build.log").is_file()
    again = build.build(tree, "aio-off+debug", cache=cache, spec_text="tree:x")
    assert again == k and _builds(fake) == 1  # a cache hit runs no make at all
    assert [c[:2] for c in fake.calls[-1:]] == [["gcc", "--version"]]


def test_a_build_keeps_vmlinux_and_the_tree_s_gdb_and_trace_scripts(
        tree: source.SourceTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry holds what gdb and the decoder need once the tree has moved on: vmlinux,
    the gdb scripts as files (the object tree's are links into the source tree) and the
    loader beside vmlinux, where gdb auto-loads it; a tree without them publishes the
    kernel all the same."""
    from lab.kernel import symbols

    fake = FakeMake()
    monkeypatch.setattr(build.proc, "run", fake)
    bare = build.build(tree, "base", cache=tmp_path / "c0", spec_text="tree:x")
    assert bare.vmlinux is not None and bare.vmlinux.read_bytes() == b"\x7fELF vmlinux"
    assert symbols.gdb_loader(bare) is None and symbols.decode_script(bare) is None
    assert not any("scripts_gdb" in c for c in fake.calls)  # no scripts/gdb: not asked
    for rel, text in (("scripts/gdb/vmlinux-gdb.py", "# loader\n"),
                      ("scripts/gdb/linux/utils.py", "# utils\n"),
                      ("scripts/decode_stacktrace.sh", "#!/bin/bash\n"),
                      ("scripts/faddr2line", "#!/bin/bash\n")):
        (tree.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree.path / rel).write_text(text)
    k = build.build(tree, "base", cache=tmp_path / "c1", spec_text="tree:x")
    entry = k.image.parent
    assert k.vmlinux == entry / "vmlinux" and symbols.vmlinux_for(k, tmp_path) == k.vmlinux
    assert symbols.gdb_loader(k) == entry / "vmlinux-gdb.py"
    utils = entry / "scripts/gdb/linux/utils.py"
    assert not utils.is_symlink() and utils.read_text() == "# utils\n"
    assert (entry / "scripts/gdb/linux/constants.py").is_file()
    assert symbols.decode_script(k) == entry / "scripts/decode_stacktrace.sh"
    assert (entry / "scripts/faddr2line").is_file()
    # kernel.json names it; an entry written before the field loads without one.
    meta = json.loads((entry / "kernel.json").read_text())
    assert meta["vmlinux"] == "vmlinux"
    del meta["vmlinux"]
    meta["from_a_later_lab"] = "x"  # a shared cache: a field this lab does not know
    old = Kernel.from_json(json.dumps(meta), entry)
    assert old.vmlinux is None and symbols.vmlinux_for(old, tmp_path) is None
    assert "rebuild" in symbols.no_vmlinux_hint(old)


def test_config_rewritten_only_when_changed(tree: source.SourceTree, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.proc, "run", FakeMake())
    out = tmp_path / "out"
    composed = kconfig.compose("base")
    assert build.configure(tree, composed, out, log_path=tmp_path / "log") is True
    stamp = (out / ".config").stat().st_mtime_ns
    assert build.configure(tree, composed, out, log_path=tmp_path / "log") is False
    assert (out / ".config").stat().st_mtime_ns == stamp
    assert not (out / ".config.lab-new").exists()
    assert build.configure(tree, kconfig.compose("aio-off"), out,
                           log_path=tmp_path / "log") is True


def test_kconfig_does_not_run_when_nothing_it_reads_changed(
    tree: source.SourceTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMake()
    monkeypatch.setattr(build.proc, "run", fake)
    out, logp, composed = tmp_path / "out", tmp_path / "log", kconfig.compose("base")

    def kconfig_runs() -> int:
        return sum(1 for c in fake.calls if "allnoconfig" in c)

    build.configure(tree, composed, out, log_path=logp)
    (tree.path / "init" / "main.c").write_text("/* a source edit */\n")
    assert build.configure(tree, composed, out, log_path=logp) is False
    assert kconfig_runs() == 1  # a source file is not a Kconfig input
    kc = tree.path / "Kconfig"
    kc.write_text(kc.read_text() + "# edited\n")
    assert build.configure(tree, composed, out, log_path=logp) is False  # same result...
    assert kconfig_runs() == 2  # ...but Kconfig ran again to know it
    assert build.configure(tree, kconfig.compose("aio-off"), out, log_path=logp) is True
    assert kconfig_runs() == 3


def test_option_that_did_not_stick_stops_the_build(tree: source.SourceTree, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMake(drop="CONFIG_PROVE_LOCKING")
    monkeypatch.setattr(build.proc, "run", fake)
    with pytest.raises(UserError, match=r"CONFIG_PROVE_LOCKING=y \(.*debug.config:\d+\): absent"):
        build.build(tree, "debug", cache=tmp_path / "cache", spec_text="tree:x")
    assert _builds(fake) == 0


def test_unknown_option_stops_before_kconfig(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _fake_tree(tmp_path / "linux")
    (path / "Kconfig").write_text("config AIO\n")
    fake = FakeMake()
    monkeypatch.setattr(build.proc, "run", fake)
    with pytest.raises(UserError,
                       match=r"unknown option\(s\) for Linux 7.2.13 .*: "
                             r"CONFIG_EXPERT .*and \d+ more"):
        build.build(_in_place(path), None, cache=tmp_path / "c", spec_text="tree:x")
    assert not any("allnoconfig" in c for c in fake.calls)


def test_failed_build_leaves_no_entry(tree: source.SourceTree, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.proc, "run", FakeMake(fail=True))
    cache = tmp_path / "cache"
    with pytest.raises(build.BuildError) as exc:
        build.build(tree, None, cache=cache, spec_text="tree:x")
    msg = str(exc.value)
    assert "fs/aio.c:12:1: error: expected ';'" in msg and "(log: " in msg
    built = build.built_dir(cache)
    assert not built.exists() or not any(built.iterdir())
    # the next attempt builds again (no poisoned entry), and succeeds
    fake = FakeMake()
    monkeypatch.setattr(build.proc, "run", fake)
    assert build.build(tree, None, cache=cache, spec_text="tree:x").variant == "base"
    assert _builds(fake) == 1


def test_error_lines_prefer_errors() -> None:
    text = "+ make\n  CC a.o\nx.c:1: error: boom\n  CC b.o\nmake: *** [x] Error 2\n"
    assert build.error_lines(text) == ["x.c:1: error: boom", "make: *** [x] Error 2"]
    assert build.error_lines("a\nb\n", limit=1) == ["b"]


def test_progress_lines_count_make_steps_against_a_full_build(
        tree: source.SourceTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def slow_make(steps: int) -> Any:
        def run(argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
            for i in range(steps):
                with open(kw["log_path"], "a") as f:
                    f.write(f"  CC      fs/f{i}.o\nsome compiler chatter\n")
                time.sleep(0.08)
            return subprocess.CompletedProcess(list(argv), 0, "", "")
        return run

    monkeypatch.setattr(build, "PROGRESS_EVERY", 0.05)
    out, log_path = tmp_path / "out", tmp_path / "build.log"
    out.mkdir()
    caplog.set_level("INFO", logger="lab.kernel.build")
    monkeypatch.setattr(build.proc, "run", slow_make(6))
    build.run_make(tree, out, log_path=log_path, label="cold")
    cold = [r.getMessage() for r in caplog.records if "build cold: make" in r.getMessage()]
    assert cold and all("%" not in m for m in cold)  # no scale yet
    assert (out / ".lab-steps").read_text() == "6"
    monkeypatch.setattr(build.proc, "run", slow_make(3))
    build.run_make(tree, out, log_path=log_path, label="again")
    again = [r.getMessage() for r in caplog.records if "build again: make" in r.getMessage()]
    assert again and all("% of a full build" in m for m in again), again
    assert (out / ".lab-steps").read_text() == "6"  # an incremental build keeps the scale


def test_builds_are_stamped_reproducibly_unless_the_user_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KBUILD_BUILD_TIMESTAMP", raising=False)
    env = build.make_env(tmp_path)
    assert env["KBUILD_BUILD_TIMESTAMP"] and env["KBUILD_BUILD_VERSION"] == "1"
    assert env["CCACHE_BASEDIR"] == str(tmp_path)
    monkeypatch.setenv("KBUILD_BUILD_TIMESTAMP", "mine")
    assert "KBUILD_BUILD_TIMESTAMP" not in build.make_env(tmp_path)  # the user's wins


def test_a_clone_slot_names_the_object_tree_for_all_its_commits(tmp_path: Path) -> None:
    a = source.SourceTree(kind="git", path=tmp_path, identity="git:" + "a" * 40,
                          version="7.2.13", slot="git-linux-0123")
    b = source.SourceTree(kind="git", path=tmp_path, identity="git:" + "b" * 40,
                          version="7.3.0", slot="git-linux-0123")
    assert build._slot(a, "base") == build._slot(b, "base") == "git-linux-0123-base"
    assert build._slot(a, "debug") != build._slot(a, "base")
