"""Reproducers that pin what ran, node ids, repetitions, and `lab rerun`'s options: on
hand-made records and run directories (no VM)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from records import kernel, rec

from lab.errors import UserError
from lab.kernel.artifact import Kernel
from lab.kernel.resolve import check as check_kernel
from lab.kernel.spec import PathSpec, parse_spec
from lab.options import GuestOptions
from lab.paths import KNOWN_ISSUES, REPO, SCENARIOS_DIR
from lab.results import reproduce
from lab.results.cell import split_repeat, with_cell
from lab.results.matrixfile import Matrix, read, write
from lab.results.record import Record
from lab.results.summary import summarize, summary_lines
from lab.run import rerun, runner, select
from lab.run.config import RunConfig

SHA = "ab" * 32


# -- the kernel, pinned --------------------------------------------------------------------


def test_an_image_path_may_name_its_sha256() -> None:
    assert parse_spec(f"/k/bzImage,sha256={SHA}") == PathSpec(Path("/k/bzImage"), None, SHA)
    assert parse_spec(f"/k/bzImage,sha256={SHA.upper()},modules=/m/7.2") == PathSpec(
        Path("/k/bzImage"), Path("/m/7.2"), SHA)
    for bad in (f"/k/bzImage,sha256={SHA[:-1]}", "/k/bzImage,sha256=xyz",
                f"/k/bzImage,sha256={SHA},sha256={SHA}"):
        with pytest.raises(UserError):
            parse_spec(bad)
    # Only the options are peeled off the end: any other comma is the path's (tests/test_pins.py).
    assert parse_spec("/k/bzImage,md5=00") == PathSpec(Path("/k/bzImage,md5=00"))


def test_an_image_that_changed_since_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(b"not a kernel, but a file with a digest")
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    with pytest.raises(UserError, match=f"has SHA-256 {digest}, not the {SHA} the spec names"):
        check_kernel(f"{image},sha256={SHA}", cache=tmp_path)
    # The right digest passes that check (and meets the next one: no bzImage header).
    with pytest.raises(UserError, match="not a Linux kernel image"):
        check_kernel(f"{image},sha256={digest}", cache=tmp_path)


def test_each_kind_of_kernel_pins_to_what_ran(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(b"image bytes")
    digest = hashlib.sha256(b"image bytes").hexdigest()
    debian = Kernel(spec="debian:7.2", release="7.2.13+deb14-amd64", image=image,
                    source="debian", package_version="7.2.13-1")
    assert debian.pinned_spec() == "debian:7.2.13-1"
    assert debian.identity()["pinned"] == "debian:7.2.13-1"
    commit = "0123456789abcdef0123456789abcdef01234567"
    git = Kernel(spec=f"git:{tmp_path}/linux@main", release="7.2.0", image=image,
                 source="git", variant="base", packages=(f"git:{commit}",))
    assert git.pinned_spec() == f"git:{tmp_path}/linux@{commit}"
    path = Kernel(spec="./bzImage", release="7.2.0", image=image, modules=tmp_path / "7.2.0",
                  image_sha256=digest)  # as resolved (tests/test_pins.py)
    assert path.pinned_spec() == f"{image},modules={tmp_path / '7.2.0'},sha256={digest}"
    # A pinned path parses back to the same file and digest.
    assert parse_spec(path.pinned_spec()) == PathSpec(image, tmp_path / "7.2.0", digest)
    # A plain tree by its content's fingerprint (tests/test_pins.py).
    tree = Kernel(spec="tree:/src/linux", release="7.2.0", image=image, source="tree",
                  packages=("tree:/src/linux#0123456789abcdef",))
    assert tree.pinned_spec() == "tree:/src/linux@0123456789abcdef"


# -- one builder -----------------------------------------------------------------------------


def _pinned(cell: str, pinned: str) -> dict[str, object]:
    return {**kernel(cell), "pinned": pinned}


TCG = {"name": "tcg", "mode": "TCG, multi-threaded", "reason": "KVM unusable: no /dev/kvm"}


def test_a_records_reproducer_names_what_ran() -> None:
    r = rec("test_x", "FAIL", param="io_setup", accel=TCG)
    r.kernel = _pinned("debian:7.2", "debian:7.2.13-1")
    guest = GuestOptions(cpus=4, memory="4G", append=("nokaslr",))
    assert reproduce.for_record(r, guest=guest, run=reproduce.Command([], cwd="/src")) == (
        "cd /src && lab run --kernel debian:7.2.13-1 --accel tcg --cpus 4 --memory 4G "
        "--append nokaslr -- 'scenarios/aio/t.py::test_x[io_setup]'")
    # A repetition's record reproduces the test, not the repetition.
    r.repeat = 3
    assert reproduce.for_record(r, guest=guest).endswith("'scenarios/aio/t.py::test_x[io_setup]'")


def _run_dir(tmp_path: Path, records: list[Record], **matrix: object) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    (d / "results.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))
    cells = list(dict.fromkeys(r.cell for r in records))
    write(d, Matrix(cells=[{"label": c, "spec": c.split("/")[0],
                            "variant": c.partition("/")[2] or None} for c in cells],
                    suite=["scenarios"], expected=[(r.cell, r.test) for r in records],
                    assigned=[(r.cell, r.test) for r in records], rootdir="/src",
                    **matrix))  # type: ignore[arg-type]
    return d


def _records() -> list[Record]:
    out = [rec("test_a", "PASS", accel=TCG), rec("test_b", "FAIL", accel=TCG),
           rec("test_c", "XFAIL", accel=TCG), rec("test_d", "NOTRUN"),
           rec("test_a", "FAIL", "debian:6.1", accel=TCG),
           rec("test_b", "PASS", "debian:6.1", accel=TCG)]
    for r in out:
        if r.verdict != "NOTRUN":
            r.kernel = _pinned(r.cell, {"debian:7.2": "debian:7.2.13-1",
                                        "debian:6.1": "debian:6.1.158-1"}[r.cell])
    return out


OPTIONS = {"guest": GuestOptions(memory="4G", append=("nokaslr",)).to_dict(), "repeat": 1}


def test_command_txt_is_the_run_pinned_with_the_command_as_given(tmp_path: Path) -> None:
    d = _run_dir(tmp_path, _records(), keyword="not slow", options=OPTIONS)
    (d / "command.txt").write_text("cd /home/u && lab run --kernel debian:7.2 --kernel "
                                   "debian:6.1 -k 'not slow' --memory 4G --append nokaslr\n")
    reproduce.write_command(d)
    reproduce.write_command(d)  # again (a merge, a second finish): the same file
    assert (d / "command.txt").read_text().splitlines() == [
        "cd /src && lab run --kernel debian:7.2.13-1 --kernel debian:6.1.158-1 --accel tcg "
        "--cpus 2 --memory 4G --append nokaslr --suite scenarios -k 'not slow'",
        "# as given: cd /home/u && lab run --kernel debian:7.2 --kernel debian:6.1 "
        "-k 'not slow' --memory 4G --append nokaslr"]


def test_the_summary_gives_each_failure_its_reproducer_and_the_rerun(tmp_path: Path) -> None:
    d = _run_dir(tmp_path, _records(), options=OPTIONS)
    summary = summarize(d)
    repros = summary["reproducers"]
    assert set(repros) == {"scenarios/aio/t.py::test_b[debian:7.2]",
                           "scenarios/aio/t.py::test_d[debian:7.2]",
                           "scenarios/aio/t.py::test_a[debian:6.1]"}
    assert repros["scenarios/aio/t.py::test_a[debian:6.1]"] == (
        "cd /src && lab run --kernel debian:6.1.158-1 --accel tcg --cpus 2 --memory 4G "
        "--append nokaslr --suite scenarios -- scenarios/aio/t.py::test_a")
    # A test that never ran names its cell's kernel and accelerator, as they ran.
    assert repros["scenarios/aio/t.py::test_d[debian:7.2]"] == (
        "cd /src && lab run --kernel debian:7.2.13-1 --accel tcg --cpus 2 --memory 4G "
        "--append nokaslr --suite scenarios -- scenarios/aio/t.py::test_d")
    assert summary["rerun"] == f"lab rerun {d} --failed"
    lines = summary_lines(summary)
    assert f"run the failed and unrun tests again: lab rerun {d} --failed" in lines


def test_repetitions_are_counted_and_a_race_shows_its_overlap_each_time(tmp_path: Path) -> None:
    recs = [rec("test_race", v, repeat=n, data={"overlap": {"rate": rate, "rounds": 100}},
                deviations=["the text says EAGAIN"])
            for n, v, rate in ((1, "PASS", 0.61), (2, "INCONCLUSIVE", 0.004), (3, "PASS", 0.5))]
    summary = summarize(_run_dir(tmp_path, recs))
    assert summary["counts"]["PASS"] == 2 and summary["counts"]["INCONCLUSIVE"] == 1
    assert len(summary["deviations"]) == 1  # one test's deviation, however often it ran
    assert summary["repeated"] == [{"test": "scenarios/aio/t.py::test_race[debian:7.2]",
                                    "cell": "debian:7.2", "repeats": [1, 2, 3],
                                    "verdicts": ["PASS", "INCONCLUSIVE", "PASS"],
                                    "overlap": [0.61, 0.004, 0.5]}]
    assert ("repeated scenarios/aio/t.py::test_race[debian:7.2] x3: PASS, INCONCLUSIVE, PASS; "
            "overlap 61.0%, 0.4%, 50.0%") in summary_lines(summary)


# -- node ids and repetitions ----------------------------------------------------------------


def test_a_repetitions_parameter_comes_off_its_test_id() -> None:
    assert split_repeat("f.py::t[debian:7.2-repeat2]") == ("f.py::t[debian:7.2]", 2)
    assert split_repeat("f.py::t[repeat3-debian:7.2]") == ("f.py::t[debian:7.2]", 3)
    assert split_repeat("f.py::t[debian:7.2-repeat12-io_setup]") == (
        "f.py::t[debian:7.2-io_setup]", 12)
    assert split_repeat("f.py::t[repeat4]") == ("f.py::t", 4)
    assert split_repeat("f.py::t[io-repeatable]") == ("f.py::t[io-repeatable]", 0)
    assert with_cell("f.py::t[io_setup-debian:7.2]", "debian:7.2", "debian:7.2.13-1") == \
        "f.py::t[io_setup-debian:7.2.13-1]"
    assert with_cell("f.py::t[debian:7.2-io_setup]", "debian:7.2", "D") == "f.py::t[D-io_setup]"


def test_node_ids_are_checked_before_anything_runs(tmp_path: Path) -> None:
    suite = tmp_path / "scenarios" / "aio"
    suite.mkdir(parents=True)
    (suite / "test_x.py").write_text("def test_y(agent):\n    pass\n\nclass TestZ:\n"
                                     "    def test_w(self):\n        pass\n")
    roots = [tmp_path / "elsewhere", tmp_path]
    found = select.check("scenarios/aio/test_x.py::test_y[debian:7.2]", roots=roots)
    assert found.path == suite / "test_x.py" and found.name == "test_y[debian:7.2]"
    assert select.check("scenarios/aio/test_x.py::TestZ::test_w", roots=roots).name == \
        "TestZ::test_w"
    with pytest.raises(UserError, match=r"no file scenarios/aio/test_nope\.py"):
        select.check("scenarios/aio/test_nope.py::test_y", roots=roots)
    with pytest.raises(UserError, match="defines no test 'test_yy'"):
        select.check("scenarios/aio/test_x.py::test_yy", roots=roots)
    ids, rest = select.split(["-x", "scenarios/aio/test_x.py", "-k", "slow", "--deselect",
                              "scenarios/aio/test_x.py::test_y"], roots=roots)
    assert [i.name for i in ids] == [""]
    assert rest == ["-x", "-k", "slow", "--deselect", "scenarios/aio/test_x.py::test_y"]
    # A directory would be collected beside the suite (the whole suite runs): refused.
    with pytest.raises(UserError, match=r"^scenarios/aio after --: a directory does not "
                                        r"narrow the run; give --suite scenarios/aio"):
        select.split(["scenarios/aio"], roots=roots)
    assert select.split(["--rootdir", "scenarios/aio"], roots=roots)[1] == \
        ["--rootdir", "scenarios/aio"]


def test_a_node_id_may_hold_a_space() -> None:
    """A cell label from --kconfig-add CONFIG_X="a b" has one: still a node id, never a
    path beside the suite (which would run the whole suite)."""
    label = 'debian-src:7.2/base+CONFIG_CMDLINE="a b"'
    assert select.is_nodeid(f"scenarios/aio/t.py::test_y[{label}]")
    assert select.is_nodeid("scenarios/aio/t.py::TestZ")
    assert not select.is_nodeid("-p no:cacheprovider") and not select.is_nodeid("a b.py x")


@pytest.mark.parametrize("given, name, cell, want", [
    ("test_y[debian:7.2]", "test_y[debian:7.2]", "debian:7.2", True),  # as records show it
    ("test_y", "test_y[debian:7.2]", "debian:7.2", True),  # every cell and parameter
    ("test_y[io_setup]", "test_y[io_setup-debian:7.2]", "debian:7.2", True),  # no cell
    ("test_y[io_setup]", "test_y[io_submit-debian:7.2]", "debian:7.2", False),
    ("test_y[debian:6.1]", "test_y[debian:7.2]", "debian:7.2", False),  # another cell
    ("test_y[debian:7.2]", "test_y[debian:7.2-repeat2]", "debian:7.2", True),
    ("test_y", "test_yz[debian:7.2]", "debian:7.2", False),
    ("", "test_anything[debian:7.2]", "debian:7.2", True),  # the whole file
    ("TestZ", "TestZ::test_w[debian:7.2]", "debian:7.2", True),  # a class: its tests
    ("TestZ", "TestZed::test_w[debian:7.2]", "debian:7.2", False),
    ("TestZ::test_w", "TestZ::test_w[debian:7.2-repeat3]", "debian:7.2", True),
    ("TestZ::test_w", "TestZ::test_wx[debian:7.2]", "debian:7.2", False),
])
def test_what_a_node_id_selects(given: str, name: str, cell: str, want: bool) -> None:
    node = select.NodeId(Path("/s/test_x.py"), given, given)
    assert select.matches(node, path=Path("/s/test_x.py"), name=name, cell=cell) is want
    assert not select.matches(node, path=Path("/s/test_other.py"), name=name, cell=cell)


# -- lab rerun ---------------------------------------------------------------------------------


def test_rerun_failed_pins_the_kernels_and_chooses_the_failed_cells_tests(tmp_path: Path) -> None:
    d = _run_dir(tmp_path, _records(), keyword="not slow", options=OPTIONS)
    opts = rerun.options(d, failed=True, given={"repeat": 2})
    assert list(opts.kernels) == ["debian:7.2.13-1", "debian:6.1.158-1"]
    assert opts.guest == GuestOptions(accel="tcg", memory="4G", append=("nokaslr",))
    assert opts.repeat == 2 and opts.keyword is None
    # FAIL and NOTRUN, each on its own cell (relabelled); not PASS, not XFAIL.
    assert list(opts.pytest_args) == ["/src/scenarios/aio/t.py::test_b[debian:7.2.13-1]",
                                "/src/scenarios/aio/t.py::test_d[debian:7.2.13-1]",
                                "/src/scenarios/aio/t.py::test_a[debian:6.1.158-1]"]


def test_rerun_all_keeps_the_selection(tmp_path: Path) -> None:
    d = _run_dir(tmp_path, _records(), keyword="not slow", markexpr="fast",
                 options={**OPTIONS, "repeat": 3})
    opts = rerun.options(d)
    assert opts.keyword == "not slow" and list(opts.pytest_args) == ["-m", "fast"]
    assert opts.repeat == 3  # as the run did
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    d2 = _run_dir(sharded, _records(), shard="1/2", options=OPTIONS)
    assert all("::" in a for a in rerun.options(d2).pytest_args)  # a shard: its tests by id


def test_rerun_refuses_what_is_not_a_run_and_a_failed_rerun_of_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a lab run directory"):
        rerun.options(tmp_path)
    d = _run_dir(tmp_path, [rec("test_a", "PASS"), rec("test_b", "XFAIL")])
    with pytest.raises(UserError, match=r"no test of .* failed or went unrun \(PASS, XFAIL\)"):
        rerun.options(d, failed=True)


def test_a_reproducer_of_the_labs_own_scenarios_runs_from_any_directory(tmp_path: Path) -> None:
    """Their node ids are found beside the lab (lab.run.select), so no `cd` into the lab:
    installed, that would be site-packages, and ./results would land there."""
    m = Matrix(cells=[], suite=["scenarios"], expected=[], assigned=[], rootdir=str(REPO))
    assert reproduce.where(m) == "" and reproduce.base_dir(m) == REPO
    m.rootdir, m.options = "/ci/work/kernel-lab", {"lab_suite": True}
    assert reproduce.where(m) == "" and reproduce.base_dir(m) == REPO
    m.rootdir, m.options = "/src", {"lab_suite": False}
    assert reproduce.where(m) == "/src"  # another suite's ids are relative to its rootdir
    assert reproduce.base_dir(m) == Path("/src")
    assert reproduce.where(None) == ""


OWN = "scenarios/aio/test_io_submit.py"  # a file of the lab's own scenarios


@pytest.mark.parametrize("flagged", [True, False])
def test_a_run_copied_from_another_checkout_reruns_here(tmp_path: Path, flagged: bool) -> None:
    """A run directory of the lab's own scenarios made elsewhere (CI, another checkout;
    an older run has no flag, and its checkout is not here): its tests are this lab's."""
    records = [rec("test_a", "PASS", file=OWN, accel=TCG), rec("test_b", "FAIL", file=OWN,
                                                              accel=TCG)]
    for r in records:
        r.kernel = _pinned(r.cell, "debian:7.2.13-1")
    d = _run_dir(tmp_path, records, options={**OPTIONS, **({"lab_suite": True} if flagged
                                                            else {})})
    m = read(d)
    assert m is not None
    m.rootdir, m.suite = "/ci/work/kernel-lab", ["scenarios"]
    write(d, m)
    opts = rerun.options(d, failed=True)
    assert list(opts.pytest_args) == [f"{REPO}/{OWN}::test_b[debian:7.2.13-1]"]
    assert opts.suite == SCENARIOS_DIR and opts.rootdir is None
    reproduce.write_command(d)
    command = (d / "command.txt").read_text().splitlines()[0]
    assert command == ("lab run --kernel debian:7.2.13-1 --accel tcg --cpus 2 --memory 4G "
                       "--append nokaslr")
    (repro,) = summarize(d)["reproducers"].values()
    assert repro.startswith("lab run ") and repro.endswith(f"-- {OWN}::test_b")


def test_reruns_and_reproducers_of_a_suite_outside_the_lab_keep_its_suite(
        tmp_path: Path) -> None:
    """Node ids of a suite of the user's are relative to the run's rootdir, which pytest
    is given again (`lab rerun`) or finds again (a reproducer runs from it): rooted above
    the lab's scenarios/, it would name them `::test_a`."""
    d = _run_dir(tmp_path, _records(), options={**OPTIONS, "lab_suite": False})
    m = read(d)
    assert m is not None
    m.suite = ["suite"]
    write(d, m)
    opts = rerun.options(d, failed=True)
    assert opts.suite == Path("/src/suite") and opts.rootdir == Path("/src")
    assert opts.pytest_args[0] == "/src/scenarios/aio/t.py::test_b[debian:7.2.13-1]"
    assert summarize(d)["reproducers"]["scenarios/aio/t.py::test_b[debian:7.2]"] == (
        "cd /src && lab run --kernel debian:7.2.13-1 --accel tcg --cpus 2 --memory 4G "
        "--append nokaslr --suite suite -- scenarios/aio/t.py::test_b")
    # And the lab roots its pytest at the lab only for the lab's own scenarios.
    outside = tmp_path / "suite"
    outside.mkdir()
    (outside / "test_x.py").write_text("def test_a():\n    pass\n")
    node = select.check(str(outside / "test_x.py::test_a"), roots=[tmp_path])
    own = select.check(f"{OWN}::test_noop_opcode", roots=[REPO])
    # A suite of the user's is rooted at itself (lab.paths.suite_rootdir_args), never at
    # the lab (its test would be "::test_a").
    assert runner._collect(RunConfig(kernels=[]), [node]) == [str(outside / "test_x.py"),
                                                               f"--rootdir={outside}"]
    assert runner._collect(RunConfig(kernels=[], suite=outside), [node]) == \
        [str(outside / "test_x.py"), f"--rootdir={outside}"]
    assert runner._collect(RunConfig(kernels=[], suite=outside, rootdir=tmp_path), [node]) == \
        [str(outside / "test_x.py"), f"--rootdir={tmp_path}"]
    assert runner._collect(RunConfig(kernels=[]), [own]) == [str(REPO / OWN),
                                                              f"--rootdir={REPO}"]
    assert runner._collect(RunConfig(kernels=[]), []) == [str(SCENARIOS_DIR),
                                                           f"--rootdir={REPO}"]


def test_the_runs_pytest_arguments_and_known_issues_come_along(tmp_path: Path) -> None:
    """--deselect, -p no:X and the rest after `--`, and --known-issues: kept in matrix.json,
    carried by `lab rerun` and the reproducers (a rerun brought deselected tests back,
    and a custom list's XFAILs became FAILs)."""
    extra = ["--deselect", "scenarios/aio/t.py::test_c", "-p", "no:randomly"]
    assert runner.recorded_args(["-k", "slow", "-mfast", *extra, "-m", "x", "-x"]) == \
        [*extra, "-x"]
    mine = tmp_path / "known.toml"
    d = _run_dir(tmp_path, _records(), options={**OPTIONS, "pytest_args": extra,
                                                "known_issues": str(mine)})
    with pytest.raises(UserError, match=f"ran with the known issues {mine}, which are gone"):
        rerun.options(d, failed=True)
    mine.write_text("")
    opts = rerun.options(d, failed=True)
    assert list(opts.pytest_args[:4]) == extra and len(opts.pytest_args) == 7
    assert opts.known_issues == mine
    assert opts.rootdir == Path("/src")
    repro = summarize(d)["reproducers"]["scenarios/aio/t.py::test_b[debian:7.2]"]
    assert repro.endswith(f"--known-issues {mine} -- --deselect "
                          "scenarios/aio/t.py::test_c -p no:randomly scenarios/aio/t.py::test_b")
    reproduce.write_command(d)
    assert (d / "command.txt").read_text().splitlines()[0].endswith(
        f"--known-issues {mine} -- --deselect scenarios/aio/t.py::test_c -p "
        "no:randomly")
    # The lab's own list is this lab's, whatever ./known-issues.toml is where it reruns;
    # a run from before the option: the default.
    write(d, replace(read_matrix(d), options={**OPTIONS, "known_issues": ""}))
    assert rerun.options(d, failed=True).known_issues == KNOWN_ISSUES
    write(d, replace(read_matrix(d), options=OPTIONS))
    assert rerun.options(d, failed=True).known_issues is None


def read_matrix(d: Path) -> Matrix:
    m = read(d)
    assert m is not None
    return m
