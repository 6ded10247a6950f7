"""`lab bisect`: whole bisections over real git histories with fakes at the build and
`lab run` seams (tests/bisect_fake.py), its bad input, and the coarse pass over versions.

The pure parts (the decision, what one run means, the list search) are
tests/test_bisect_decision.py; the real bisection (a Debian tree, real builds and boots)
is tests/test_bisect_real.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bisect_fake as bf
import browser
import pytest

from lab.bisect import coarse
from lab.bisect.journal import Journal
from lab.cli import main as cli_main
from lab.errors import UserError
from lab.kernel.versions import Versioned
from lab.options import GuestOptions
from lab.run.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
T = "scenarios/aio/test_io_destroy.py::test_destroy_twice_is_einval"


# --- whole bisections with fakes at the seams -------------------------------------------------

HISTORY = {7: ["BROKEN"], 8: ["-BROKEN"], 10: ["REGRESSION"]}  # 16 commits, as the real test


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("history") / "linux"
    return repo, bf.make_history(repo, 16, HISTORY)


def test_finds_the_culprit_and_skips_the_broken_build(
    history: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = history
    before = bf.git(repo, "rev-list", "--all", "--count")
    rc, builder, launch = bf.run(repo, tmp_path / "cache", tmp_path / "state",
                                 good=commits[0], bad="HEAD", runs="1")
    out = capsys.readouterr().out
    assert rc == 0
    assert f"first bad commit: {commits[10]}\n" in out  # a line of its own
    res = bf.result(tmp_path / "state")
    assert res["kind"] == "culprit" and res["first_bad"] == commits[10]
    assert res["subject"] == "c10 REGRESSION" and res["confidence"] == 1.0
    steps: list[dict[str, Any]] = res["steps"]  # type: ignore[assignment]
    by_point = {s["point"]: s for s in steps}
    assert by_point[commits[7]]["verdict"] == "skip"
    assert "build failed" in by_point[commits[7]]["why"]
    assert commits[7] in builder.built and len(launch.calls) == len(builder.built) - 1
    assert [s["role"] for s in steps[:2]] == ["bad endpoint", "good endpoint"]
    assert "fs/aio.c" in str(res["diffstat"])
    # The full commit id and the guests' options (lab.results.reproduce).
    # No known issues, as the bisection's runs had: the failure stays a failure.
    assert res["reproducer"] == (f"lab run --kernel git:{repo}@{commits[10]} --accel auto "
                                 f"--cpus 2 --memory 2G --known-issues /dev/null "
                                 f"-k '{bf.KEYWORD}'")
    assert any("skipped on the way" in w for w in res["warnings"])  # type: ignore[union-attr]
    report = res["report"]
    assert isinstance(report, dict) and report["table"]["rows"]
    # The HTML report of the bisection: its result, warnings and one row per step.
    page = browser.parse((tmp_path / "state" / "report.html").read_text())
    summary = page.one(id="bisection").find_all("pre")[0].all_text()
    assert f"first bad: {commits[10]} c10 REGRESSION" in summary and "fs/aio.c" in summary
    assert "warning" not in summary  # the warnings have their own box, once
    rows = page.one("table", id="steps").find_all("tr")[1:]
    assert [r.find_all("td")[0].all_text() for r in rows] == [s["name"] for s in steps]
    assert "skipped on the way" in page.one(cls="warn").all_text()
    assert res["reproducer"] in page.all_text()
    # `lab report` on the state directory renders it again; a baseline makes no sense there.
    (tmp_path / "state" / "report.html").unlink()
    assert cli_main(["report", str(tmp_path / "state")]) == 0
    assert (tmp_path / "state" / "report.html").is_file()
    capsys.readouterr()
    assert cli_main(["report", str(tmp_path / "state"), "--baseline",
                     str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a bisection" in err, err
    # One progress line per step: what is tested, what is left, elapsed, ETA.
    progress = [ln for ln in out.splitlines() if ln.startswith("bisect: step ")]
    assert len(progress) == len(steps) - 2
    assert all(" left, ~" in ln and "elapsed" in ln and "ETA" in ln for ln in progress)
    # The journal: a start line, every build and run, and the steps.
    journal = Journal(tmp_path / "state")
    assert journal.start() is not None and len(journal.runs()) == len(launch.calls)
    assert {b.point for b in journal.builds()} == set(builder.built)
    assert bf.git(repo, "rev-list", "--all", "--count") == before  # nothing written there


def test_an_unrelated_splat_is_skipped_and_recorded(tmp_path: Path) -> None:
    repo = tmp_path / "linux"
    commits = bf.make_history(repo, 16, {7: ["SPLAT"], 8: ["-SPLAT"], 10: ["REGRESSION"],
                                         4: ["INFRA"], 5: ["-INFRA"]})
    rc, _, _ = bf.run(repo, tmp_path / "cache", tmp_path / "state", good=commits[0],
                      bad=commits[15], runs="1")
    res = bf.result(tmp_path / "state")
    assert rc == 0 and res["first_bad"] == commits[10]
    steps = {s["point"]: s for s in res["steps"]}  # type: ignore[union-attr]
    assert steps[commits[7]]["verdict"] == "skip"
    assert steps[commits[7]]["foreign"] == ["WARNING in percpu_ref_kill_and_confirm"]
    assert any("unrelated splats" in w for w in res["warnings"])  # type: ignore[union-attr]


def test_a_culprit_with_its_parents_image_is_flagged(tmp_path: Path) -> None:
    repo = tmp_path / "linux"
    commits = bf.make_history(repo, 8, {5: ["DOC:REGRESSION"]})  # a change outside the build
    rc, _, _ = bf.run(repo, tmp_path / "cache", tmp_path / "state", good=commits[0],
                      bad=commits[7], runs="1")
    res = bf.result(tmp_path / "state")
    assert rc == 0 and res["first_bad"] == commits[5]
    assert any("same kernel image as its parent" in w
               for w in res["warnings"])  # type: ignore[union-attr]


def _fake_bisections(repo: Path, commits: list[str], tmp: Path, runs: str | None,
                     seeds: range) -> list[tuple[str, str | None, float]]:
    out = []
    for seed in seeds:
        state = tmp / f"{runs}-{seed}"
        try:
            bf.run(repo, tmp / "cache", state, good=commits[0], bad=commits[15], runs=runs,
                   fail_rate=0.3, seed=seed, reuse=False)
        except UserError as exc:  # the endpoint check refused a bad end that passed
            out.append(("endpoints", str(exc), 0.0))
            continue
        res = bf.result(state)
        first = res["first_bad"]
        out.append((str(res["kind"]), first if isinstance(first, str) else None,
                    float(res["confidence"])))  # type: ignore[arg-type]
    return out


def test_statistical_mode_finds_a_flaky_culprit_single_runs_are_fooled(
    history: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = history
    culprit = commits[10]
    seeds = range(8)
    stat = _fake_bisections(repo, commits, tmp_path, "auto", seeds)
    single = _fake_bisections(repo, commits, tmp_path, "1", seeds)
    capsys.readouterr()
    # The target fails in 30% of runs at bad commits.  Statistically: the culprit nearly
    # always, and when not, "inconclusive" with its numbers -- never a wrong culprit.
    named = [first for kind, first, _ in stat if kind == "culprit"]
    assert len(named) >= 6 and set(named) == {culprit}, stat
    assert all(kind in ("culprit", "inconclusive") for kind, _, _ in stat), stat
    assert all(conf >= 0.66 for kind, _, conf in stat if kind == "culprit")
    # One run per commit: a bad commit that happens to pass looks good, and the culprit
    # named (with full confidence) is wrong; or the bad endpoint itself looks good.
    wrong = [first for kind, first, _ in single if kind == "culprit" and first != culprit]
    right = [first for kind, first, _ in single if first == culprit]
    assert len(wrong) >= 2 and len(right) <= 1, single


def test_default_goes_statistical_when_the_bad_endpoint_disagrees(
    history: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = history
    rc, _, launch = bf.run(repo, tmp_path / "cache", tmp_path / "s", good=commits[0],
                           bad=commits[15], runs=None, fail_rate=0.3, seed=1)
    out = capsys.readouterr().out
    assert "going statistical" in out and rc == 0
    res = bf.result(tmp_path / "s")
    assert res["first_bad"] == commits[10] and res["setup"]["policy"]["runs"] == 20  # type: ignore[index]
    assert len(launch.calls) > 40


def test_resume_after_a_kill_loses_at_most_the_step_under_way(
    history: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, commits = history
    state, cache = tmp_path / "state", tmp_path / "cache"
    # A real process, SIGKILLed mid-bisection (its fake `lab run` takes 0.1 s a run).
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}", "FAKE_RUN_DELAY": "0.1"}
    child = subprocess.Popen([sys.executable, str(REPO / "tests" / "bisect_fake.py"), str(repo),
                              str(cache), str(state), commits[0], commits[15], "3"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = Journal(state)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if len(journal.lines("run")) >= 8:  # the endpoints are done, a step is under way
            break
        time.sleep(0.02)
    assert child.poll() is None, "the bisection ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = journal.runs()
    assert not journal.lines("result") and len(before) >= 8
    with open(journal.path, "a") as f:
        f.write('{"kind": "run", "point": "torn')  # a kill in the middle of a write
    rc, _, launch = bf.run(repo, cache, state, good="", bad="", resume=True, reuse=False)
    assert rc == 0 and bf.result(state)["first_bad"] == commits[10]
    after = journal.runs()
    assert [r.id for r in after[:len(before)]] == [r.id for r in before]  # kept, not redone
    assert len(after) == len(before) + len(launch.calls)
    at_ends = [c for c in launch.calls if c[c.index("--kernel") + 1].endswith(
        (commits[0], commits[15]))]
    assert not at_ends  # the endpoints' runs survived the kill
    assert journal.lines("resume")


def test_every_run_gets_the_guest_options_and_a_resume_keeps_them(
    history: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, commits = history
    state, cache = tmp_path / "state", tmp_path / "cache"
    guest = GuestOptions(accel="tcg-single", cpus=3, memory="4G", append=("nokaslr",),
                         call_timeout=300.0)
    rc, _, launch = bf.run(repo, cache, state, good=commits[0], bad=commits[15], runs="1",
                           guest=guest)
    assert rc == 0 and launch.calls
    want = ["--accel", "tcg-single", "--cpus", "3", "--memory", "4G", "--append", "nokaslr",
            "--call-timeout", "300"]
    for argv in launch.calls:
        i = argv.index("--accel")
        assert list(argv[i:i + len(want)]) == want, argv
    start = Journal(state).start()
    assert start is not None and GuestOptions.from_dict(start["guest"]) == guest
    # A resume (adding runs) boots its guests as the bisection began, not as the defaults.
    rc, _, again = bf.run(repo, cache, state, good="", bad="", runs="3", resume=True,
                          reuse=False)
    assert rc == 0 and again.calls
    assert all("tcg-single" in argv and "4G" in argv for argv in again.calls)


def test_a_resumed_bisection_can_add_runs(history: tuple[Path, list[str]],
                                          tmp_path: Path) -> None:
    repo, commits = history
    state, cache = tmp_path / "state", tmp_path / "cache"
    bf.run(repo, cache, state, good=commits[0], bad=commits[15], runs="1")
    single = len(Journal(state).runs())
    rc, _, launch = bf.run(repo, cache, state, good="", bad="", resume=True, runs="4")
    assert rc == 0 and bf.result(state)["first_bad"] == commits[10]
    runs = Journal(state).runs()
    assert len([r for r in runs if r.point == commits[15]]) == 4  # 1 kept + 3 added
    assert len(launch.calls) == len(runs) - single


def test_runs_are_reused_by_a_later_bisection_of_the_same_tree(
    history: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commits = history
    cache = tmp_path / "cache"
    tcg = GuestOptions(accel="tcg")  # an accelerator known before the first run
    _, _, first = bf.run(repo, cache, tmp_path / "one", good=commits[0], bad=commits[15],
                         runs="1", guest=tcg)
    _, _, second = bf.run(repo, cache, tmp_path / "two", good=commits[2], bad=commits[15],
                          runs="1", guest=tcg)
    out = capsys.readouterr().out
    assert bf.result(tmp_path / "two")["first_bad"] == commits[10]
    # Only the new good endpoint ran: every other point was tested by the first bisection.
    assert [c[c.index("--kernel") + 1].rsplit("@", 1)[1] for c in second.calls] == [commits[2]]
    assert "reused from earlier bisections" in out and len(first.calls) >= 5
    _, _, third = bf.run(repo, cache, tmp_path / "three", good=commits[2], bad=commits[15],
                         runs="1", reuse=False, guest=tcg)
    assert len(third.calls) > 1  # --no-reuse runs everything again


def _points(launch: bf.FakeLabRun) -> list[str]:
    return [c[c.index("--kernel") + 1].rsplit("@", 1)[1] for c in launch.calls]


@pytest.mark.parametrize("change", ["lab", "accel", "known issues"])
def test_a_run_is_reused_only_under_the_same_lab_accelerator_and_known_issues(
    history: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    change: str
) -> None:
    """The same commit and config is not enough: another lab's scenarios or agent, another
    accelerator, other known issues may give other verdicts (before: reused anyway)."""
    repo, commits = history
    cache = tmp_path / "cache"
    tcg = GuestOptions(accel="tcg")
    _, _, first = bf.run(repo, cache, tmp_path / "one", good=commits[0], bad=commits[15],
                         runs="1", guest=tcg)
    guest, issues = tcg, None
    if change == "lab":  # an edited checkout: same commit, other code
        monkeypatch.setattr("lab.bisect.command.code_digest", lambda *_: "edited0123456789",
                            raising=False)
    elif change == "accel":
        guest = GuestOptions(accel="tcg-single")
    else:
        issues = tmp_path / "known-issues.toml"
        issues.write_text("")
    _, _, second = bf.run(repo, cache, tmp_path / "two", good=commits[0], bad=commits[15],
                          runs="1", guest=guest, known_issues=issues)
    assert _points(second) == _points(first)  # every run made again
    assert bf.result(tmp_path / "two")["first_bad"] == commits[10]
    if change == "known issues":
        assert second.known_issues == [str(issues)] * len(second.calls)


def test_runs_use_no_known_issues_unless_asked(history: tuple[Path, list[str]],
                                               tmp_path: Path) -> None:
    """A known issue matching the target would make it XFAIL: the bisection's runs get
    none (before: ./known-issues.toml or the lab's own)."""
    repo, commits = history
    _, _, launch = bf.run(repo, tmp_path / "cache", tmp_path / "state", good=commits[0],
                          bad=commits[15], runs="1")
    assert launch.known_issues and set(launch.known_issues) == {"/dev/null"}
    start = Journal(tmp_path / "state").start()
    assert start is not None and start["known_issues"] == ""


def test_auto_reuses_other_bisections_runs_once_a_run_says_which_accelerator(
    history: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--accel auto before any probe answered here: the first run of the session says what
    auto is; only then are earlier runs on that accelerator reused."""
    from lab.vm import accel

    # A host with /dev/kvm whose probe has not run yet (with none, auto is TCG at once).
    monkeypatch.setattr(accel, "kvm_usable", lambda *_, **__: (False, accel.NOT_PROBED))
    repo, commits = history
    cache = tmp_path / "cache"
    bf.run(repo, cache, tmp_path / "one", good=commits[0], bad=commits[15], runs="1")
    _, _, second = bf.run(repo, cache, tmp_path / "two", good=commits[2], bad=commits[15],
                          runs="1")
    assert _points(second) == [commits[15], commits[2]]


def test_the_revert_check_builds_bad_without_the_culprit(
    history: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, commits = history
    refs = bf.git(repo, "for-each-ref")
    rc, builder, _ = bf.run(repo, tmp_path / "cache", tmp_path / "state", good=commits[0],
                            bad=commits[15], runs="1", verify_revert=True)
    res = bf.result(tmp_path / "state")
    revert = res["revert"]
    assert rc == 0 and isinstance(revert, dict) and revert["ok"] is True
    made = revert["commit"]
    assert made not in commits and builder.built[-1] == made
    assert bf.git(repo, "for-each-ref") == refs  # the revert lives in the lab's clone only
    assert res["steps"][-1]["role"] == "revert"  # type: ignore[index]


def test_endpoints_that_do_not_behave_stop_with_the_verdicts_seen(
    history: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, commits = history
    with pytest.raises(UserError, match=r"good endpoint .* is bad already .*FAIL"):
        bf.run(repo, tmp_path / "cache", tmp_path / "a", good=commits[11], bad=commits[15],
               runs="1")
    assert bf.result(tmp_path / "a")["kind"] == "endpoints"
    with pytest.raises(UserError, match=r"bad endpoint .* is not bad.*PASS"):
        bf.run(repo, tmp_path / "cache", tmp_path / "b", good=commits[0], bad=commits[9],
               runs="1")


# --- bad input: one line, exit 2, nothing written ---------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", "bisect", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize(("args", "message"), [
    (["--good", "HEAD~4", "--bad", "nosuch"], "--bad nosuch: no such revision"),
    (["--good", "HEAD~3", "--bad", "HEAD~3"], "are the same commit"),
    (["--good", "HEAD", "--bad", "HEAD~4"], "is not an ancestor of --bad"),
    (["--good", "HEAD~4", "--bad", "HEAD", "-k", "no_such_scenario"], "selects no scenario"),
    (["--good", "HEAD~4", "--bad", "HEAD", "--runs", "often"], "--runs 'often'"),
    (["--good", "HEAD~4", "--bad", "HEAD", "--bad-if", "sometimes"], "--bad-if 'sometimes'"),
    (["--good", "HEAD~4", "--bad", "HEAD", "--variant", "nosuch"], "nosuch"),
])
def test_bad_input_is_one_line_and_exit_2(history: tuple[Path, list[str]], tmp_path: Path,
                                          args: list[str], message: str) -> None:
    repo, _ = history
    argv = ["--repo", str(repo), *args, "--cache", str(tmp_path / "cache"),
            "--state", str(tmp_path / "state")]
    if "-k" not in args:
        argv += ["-k", bf.KEYWORD]
    res = _cli(*argv, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr, lines
    assert not (tmp_path / "state").exists()


def test_a_repo_that_is_not_a_kernel_and_a_foreign_state_dir_are_refused(
    history: tuple[Path, list[str]], tmp_path: Path
) -> None:
    other = tmp_path / "notes"
    other.mkdir()
    bf.git(other, "init", "-q")
    for i in range(2):
        (other / "README").write_text(f"{i}\n")
        bf.git(other, "add", "-A")
        bf.git(other, "commit", "-qm", f"n{i}")
    res = _cli("--repo", str(other), "--good", "HEAD~1", "--bad", "HEAD", "-k", bf.KEYWORD,
               "--cache", str(tmp_path / "cache"), cwd=tmp_path)
    assert res.returncode == 2 and "is not a Linux kernel tree" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    repo, commits = history
    state = tmp_path / "state"
    Journal(state).append({"kind": "start", "mode": "git", "repo": str(repo),
                           "good_point": commits[0], "bad_point": commits[15],
                           "keyword": bf.KEYWORD, "variant": "base",
                           "suite": str(REPO / "scenarios")})
    res = _cli("--repo", str(repo), "--good", commits[2], "--bad", commits[15], "-k",
               bf.KEYWORD, "--cache", str(tmp_path / "cache"), "--state", str(state),
               cwd=tmp_path)
    assert res.returncode == 2 and "holds another bisection" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# --- the coarse pass over versions ------------------------------------------------------------

def test_versions_bisect_names_the_releases_and_the_next_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.bisect.command import BisectOptions, Seams, bisect
    from lab.bisect.ports import Built

    listed = [Versioned(v, f"linux-image-{v}-amd64", "trixie-backports") for v in (
        "6.12.43-1~bpo12+1", "6.16.3-1~bpo13+1", "6.18.15-1~bpo13+1", "7.2.6-1~bpo13+1",
        "7.2.12-1~bpo13+1", "7.3.4-1~bpo13+1")]
    listed.insert(3, Versioned("7.0.4-1~bpo13+1", "linux-image-7.0.4", "trixie-backports",
                               missing=("linux-modules-7.0.4+deb13-amd64",)))
    monkeypatch.setattr(coarse, "kernels", lambda cache: listed)

    class Fetch:
        def build(self, point: str) -> Built:
            return Built(ok=True, spec=f"debian:{point}", artifact=point)

    def launch(argv: Any, log_path: Path) -> int:
        from lab.results.record import Record, append_record, new_run_dir

        spec = argv[argv.index("--kernel") + 1]
        run_dir = new_run_dir(Path(argv[argv.index("--results") + 1]), "x")
        bad = spec >= "debian:7.2"
        append_record(run_dir, Record(
            test=f"{T}[{spec}]", verdict="FAIL" if bad else "PASS", duration=0.1, cell=spec,
            reason="assert 'ENOENT' == 'EINVAL'" if bad else ""))
        # A test the collection did not select (-k matched the run's cell label too),
        # failing everywhere: it must not become a target, or nothing would be good.
        append_record(run_dir, Record(
            test=f"{T}_too[{spec}]", verdict="FAIL", duration=0.1, cell=spec, reason="x"))
        return 1

    opts = BisectOptions(run=RunConfig(keyword="destroy_twice", cache=tmp_path / "cache"),
                         versions=True, runs="1", state=tmp_path / "state")
    rc = bisect(opts, argv=["lab", "bisect", "--versions"],
                seams=Seams(builder=Fetch(), launch=launch,
                            collect=lambda s, k, spec: ((T,), ())))
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "state" / "bisect.json").read_text())
    assert rc == 0 and res["last_good"] == "6.18.15-1~bpo13+1"
    assert res["setup"]["policy"]["targets"] == [T]
    assert res["first_bad"] == "7.2.6-1~bpo13+1"
    assert "lab bisect --repo LINUX --good v6.18.15 --bad v7.2.6 -k destroy_twice" in out
    assert any("7.0.4" in w for w in res["warnings"])  # unbootable, in between
    assert "first bad version: 7.2.6-1~bpo13+1" in out
    assert coarse.tag("7.3~rc7-1~exp1") == "v7.3-rc7"
