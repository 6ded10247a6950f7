"""--kconfig-add CONFIG_X=V: parsing, composition onto a variant, cells, labels, cache keys.

The build runs against tests/test_kconfig.py's fake make (Kconfig copies the
fragment; ``drop`` plays an option whose dependencies are off).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import _one_line_exit_2, lab
from test_kconfig import FakeMake, _builds, _fake_tree, _in_place

from lab.errors import UserError
from lab.kernel import build, kconfig
from lab.results.cell import cell_label, scenario_of
from lab.run.cells import Cell, matrix
from lab.run.config import RunConfig


@pytest.mark.parametrize("text, value", [
    ("CONFIG_KASAN=y", "y"), ("CONFIG_NVME_CORE=m", "m"), ("CONFIG_AIO=n", None),
    ("CONFIG_NR_CPUS=64", "64"), ("CONFIG_LOG_BUF_SHIFT=-1", "-1"),
    ("CONFIG_PHYSICAL_START=0x1000000", "0x1000000"),
    ('CONFIG_LOCALVERSION="-lab"', '"-lab"'), ('CONFIG_CMDLINE="a \\"b\\" c"', '"a \\"b\\" c"'),
    ('CONFIG_LOCALVERSION=""', '""'),
])
def test_addition_forms(text: str, value: str | None) -> None:
    opt = kconfig.parse_addition(text)
    assert (opt.name, opt.value, opt.origin) == (text.split("=")[0], value, "--kconfig-add")


@pytest.mark.parametrize("text, needle", [
    ("KASAN=y", "no CONFIG_ prefix (CONFIG_KASAN=y?)"),
    ("kasan", "no CONFIG_ prefix"),
    ("CONFIG_KASAN", "no value"),
    ("CONFIG_KASAN=", "no value"),
    ("CONFIG_KASAN=yes", "bad name or value"),
    ("CONFIG_KASAN=Y", "bad name or value"),
    ('CONFIG_LOCALVERSION="-lab', "bad name or value"),
    ("CONFIG_LOCALVERSION=-lab", "bad name or value"),
    ("CONFIG_K-ASAN=y", "bad name or value"),
])
def test_bad_additions_are_one_line_naming_the_forms(text: str, needle: str) -> None:
    with pytest.raises(UserError) as exc:
        kconfig.parse_addition(text)
    msg = str(exc.value)
    assert "\n" not in msg and repr(text) in msg and needle in msg, msg
    assert 'CONFIG_NAME="TEXT"' in msg


def test_additions_compose_onto_the_variant_with_a_canonical_name() -> None:
    base = kconfig.compose("base")
    added = kconfig.compose("base+CONFIG_KASAN=y")
    assert (added.variant, added.fragments) == ("base+CONFIG_KASAN=y", "base")
    assert added.hash != base.hash
    opts = {o.name: o for o in added.options}
    assert (opts["CONFIG_KASAN"].value, opts["CONFIG_KASAN"].origin) == ("y", "--kconfig-add")
    assert [o for o in added.options if o.name != "CONFIG_KASAN"] == list(base.options)
    # Order-free, sorted by name after the fragments' names: one kernel, one name.
    a = kconfig.compose("CONFIG_KASAN=y+debug+CONFIG_DEBUG_LIST=n+aio-off")
    b = kconfig.compose("aio-off+CONFIG_DEBUG_LIST=n+debug+CONFIG_KASAN=y")
    assert a == b and a.variant == "aio-off+debug+CONFIG_DEBUG_LIST=n"  # KASAN=y: debug has it
    assert a.fragments == "aio-off+debug"
    assert {o.name: o.value for o in a.options}["CONFIG_DEBUG_LIST"] is None


def test_an_addition_that_changes_nothing_is_the_variant_itself() -> None:
    same = kconfig.compose("base+CONFIG_AIO=y")
    assert same == kconfig.compose("base") and same.variant == "base"
    off = kconfig.compose("base+CONFIG_AIO=n")  # overrides base: kept, as asked
    assert off.variant == "base+CONFIG_AIO=n"
    assert {o.name: o.origin for o in off.options}["CONFIG_AIO"] == "--kconfig-add"


def test_a_quoted_value_may_hold_a_plus_and_round_trips() -> None:
    c = kconfig.compose(kconfig.with_additions("debug", ['CONFIG_LOCALVERSION="-a+b"']))
    assert c.variant == 'debug+CONFIG_LOCALVERSION="-a+b"'
    assert kconfig.compose(c.variant) == c


def test_additions_that_disagree_are_refused() -> None:
    with pytest.raises(UserError, match="CONFIG_KASAN=y and CONFIG_KASAN=n disagree"):
        kconfig.compose("base+CONFIG_KASAN=y+CONFIG_KASAN=n")


def test_cells_carry_the_additions_in_their_labels() -> None:
    cells = matrix(["debian-src:7.2", "debian:7.2"], ["base", "debug"], ["CONFIG_KASAN=y"])
    assert [c.label for c in cells] == ["debian-src:7.2/base+CONFIG_KASAN=y",
                                        "debian-src:7.2/debug", "debian:7.2"]
    cells = matrix(["git:/src/linux@v7.2"], [], ["CONFIG_DEBUG_LIST=y", "CONFIG_KASAN=y"])
    assert cells == [Cell("git:/src/linux@v7.2", "base+CONFIG_DEBUG_LIST=y+CONFIG_KASAN=y")]
    label = cells[0].label
    assert label == "git:/src/linux@v7.2/base+CONFIG_DEBUG_LIST=y+CONFIG_KASAN=y"
    assert scenario_of(f"scenarios/aio/test_x.py::test_y[{label}]", label) == \
        "scenarios/aio/test_x.py::test_y"
    assert cell_label("debian-src:7.2", 'base+CONFIG_LOCALVERSION="-x"') == \
        'debian-src:7.2/base+CONFIG_LOCALVERSION="-x"'


def test_additions_need_a_kernel_the_lab_builds() -> None:
    with pytest.raises(UserError) as exc:
        matrix(["debian:7.2"], [], ["CONFIG_KASAN=y"])
    msg = str(exc.value)
    assert "--kconfig-add CONFIG_KASAN=y" in msg and "prebuilt" in msg and "worktree:" in msg
    with pytest.raises(UserError, match="no CONFIG_ prefix"):
        matrix(["debian-src:7.2"], [], ["KASAN=y"])


def test_a_reproducer_names_the_added_options_and_they_make_the_same_cell() -> None:
    import shlex

    from lab.options import GuestOptions
    from lab.results.record import Record
    from lab.results.reproduce import for_record

    variant = 'base+CONFIG_KASAN=y+CONFIG_LOCALVERSION="-a b"'
    label = cell_label("debian-src:7.2", variant)
    rec = Record(test=f"scenarios/aio/t.py::test_x[{label}]", verdict="FAIL", duration=1.0,
                 cell=label, kernel={"spec": "debian-src:7.2", "pinned": "debian-src:7.2",
                                     "variant": variant})
    argv = shlex.split(for_record(rec, guest=GuestOptions()))
    given = argv[argv.index("--variant") + 1]
    assert given == variant and argv[-1] == "scenarios/aio/t.py::test_x"
    assert [c.label for c in matrix(["debian-src:7.2"], [given])] == [label]


def test_run_options_carry_additions_to_the_plugin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `lab run` hands pytest, collected by the plugin for real: each test's cell
    # carries the added options (nothing is built or booted: collection only).
    from lab.kernel import resolve
    from lab.kernel.artifact import Kernel
    from lab.run import runner

    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_s.py").write_text("def test_x(kernel):\n    pass\n")
    handed: list[list[str]] = []
    monkeypatch.setattr(runner, "_check_host", lambda cache, results: None)
    monkeypatch.setattr(resolve, "resolve_kernel", lambda spec, **kw: Kernel(
        spec=spec, release="7.2.13", image=tmp_path / "bzImage", source="debian-src"))
    monkeypatch.setattr(runner.pytest, "main", lambda args: handed.append(list(args)) or 0)
    opts = RunConfig(kernels=["debian-src:7.2"], kconfig_add=["CONFIG_NR_CPUS=64"],
                      variants=["debug"], suite=suite, results=tmp_path / "results",
                      cache=tmp_path / "cache")
    runner.run(opts, argv=["lab", "run"])
    assert len(handed) == 1
    args = [a for a in handed[0] if not a.startswith("--junitxml")]
    collected = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300,
                               check=False)
    # The user's suite is rooted at itself (lab.paths.suite_rootdir_args): ids start there.
    ids = [ln for ln in collected.stdout.splitlines() if ln.startswith("test_s.py::")]
    assert ids == ["test_s.py::test_x[debian-src:7.2/debug+CONFIG_NR_CPUS=64]"], \
        collected.stdout[-2000:] + collected.stderr[-2000:]


# --- the build ------------------------------------------------------------------------------


def test_an_addition_is_its_own_cache_entry_in_the_variant_s_object_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMake()
    monkeypatch.setattr(build.proc, "run", fake)
    tree = _in_place(_fake_tree(tmp_path / "linux"))
    cache = tmp_path / "cache"
    base = build.build(tree, "base", cache=cache, spec_text="tree:x")
    added = build.build(tree, "base+CONFIG_DEBUG_LIST=y", cache=cache, spec_text="tree:x")
    assert _builds(fake) == 2 and added.image != base.image
    assert (added.variant, added.config_option("DEBUG_LIST")) == ("base+CONFIG_DEBUG_LIST=y", "y")
    assert base.config_option("DEBUG_LIST") is None
    outs = {a for c in fake.calls for a in c if a.startswith("O=")}
    assert outs == {f"O={cache / 'build' / build._slot(tree, 'base')}"}
    again = build.build(tree, "CONFIG_DEBUG_LIST=y", cache=cache, spec_text="tree:x")
    assert again == added and _builds(fake) == 2  # the same request: a cache hit


def test_an_addition_that_does_not_stick_stops_the_build_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.proc, "run", FakeMake())
    tree = _in_place(_fake_tree(tmp_path / "linux"))
    cache = tmp_path / "cache"
    build.build(tree, None, cache=cache, spec_text="tree:x")
    out = next((cache / "build").glob("tree-*-base-*"))
    config, stamp = (out / ".config").read_text(), (out / build.INPUTS).read_text()
    fake = FakeMake(drop="CONFIG_DEBUG_LIST")
    monkeypatch.setattr(build.proc, "run", fake)
    with pytest.raises(UserError) as exc:
        build.build(tree, "base+CONFIG_DEBUG_LIST=y", cache=cache, spec_text="tree:x")
    msg = str(exc.value)
    assert "\n" not in msg and "CONFIG_DEBUG_LIST=y (--kconfig-add): absent" in msg, msg
    assert _builds(fake) == 0
    # The object tree keeps its last good config, and knows it: base needs no Kconfig run.
    assert (out / ".config").read_text() == config and (out / build.INPUTS).read_text() == stamp
    assert not (out / ".config.lab-new").exists()
    runs = len(fake.calls)
    assert build.configure(tree, kconfig.compose("base"), out, log_path=tmp_path / "log",
                           compiler="gcc (Fake) 12.2.0") is False
    assert len(fake.calls) == runs  # Kconfig did not run


def test_an_addition_the_tree_does_not_know_is_named_before_kconfig(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMake()
    monkeypatch.setattr(build.proc, "run", fake)
    tree = _in_place(_fake_tree(tmp_path / "linux"))
    with pytest.raises(UserError, match=r"unknown option.*CONFIG_NOPE \(--kconfig-add\)"):
        build.build(tree, "base+CONFIG_NOPE=y", cache=tmp_path / "c", spec_text="tree:x")
    assert not any("allnoconfig" in c for c in fake.calls)


# --- the commands ------------------------------------------------------------------------------


@pytest.mark.parametrize("command, args, needles", [
    ("run", ["--kernel", "debian:7.2", "--kconfig-add", "CONFIG_KASAN=y"],
     ["--kconfig-add CONFIG_KASAN=y", "prebuilt"]),
    ("run", ["--kernel", "debian-src:7.2", "--kconfig-add", "KASAN=y"],
     ["'KASAN=y' has no CONFIG_ prefix"]),
    ("run", ["--kernel", "debian-src:7.2", "--kconfig-add", "CONFIG_KASAN"], ["no value"]),
    ("fetch", ["debian-src:7.2", "--kconfig-add", "CONFIG_KASAN=on"], ["bad name or value"]),
    ("fetch", ["/boot/nope/bzImage", "--kconfig-add", "CONFIG_KASAN=y"], ["prebuilt"]),
    ("bisect", ["--versions", "-k", "x", "--kconfig-add", "CONFIG_KASAN=y"],
     ["--kconfig-add is for kernels the lab builds"]),
    ("bisect", ["--repo", ".", "--good", "a", "--bad", "b", "-k", "x", "--kconfig-add",
                "CONFIG_KASAN=maybe"], ["bad name or value"]),
])
def test_bad_kconfig_add_is_exit_2_before_anything(tmp_path: Path, command: str,
                                                   args: list[str], needles: list[str]) -> None:
    res = lab(command, *args, cache=tmp_path / "cache", cwd=tmp_path)
    _one_line_exit_2(res, *needles)
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()
