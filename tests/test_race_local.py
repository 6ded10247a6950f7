"""The race loops (guest/areas/race/race_*.c) run for real on the host kernel, through the agent.

Small iteration counts: these check that each loop runs, stops at its
bounds and counts outcomes consistently, not that the host kernel is free
of races.  Files on the host's filesystem stand in for the NVMe devices.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.bench import race as bench_race
from lab.vm.agent import Agent

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120.0


@pytest.fixture
def disk(tmp_path: Path) -> str:
    """A sparse 64 MiB file standing in for an NVMe namespace (O_DIRECT works on ext4)."""
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    return str(path)


def test_ops_are_listed(agent: Agent) -> None:
    assert {"race.destroy_vs_submit", "race.concurrent_destroy", "race.setup_vs_destroy",
            "race.destroy_buffers"} <= set(agent.call("agent.ops"))


def test_destroy_vs_submit_counts(agent: Agent, disk: str) -> None:
    got = agent.call("race.destroy_vs_submit", path=disk, submitters=3, iterations=12,
                   seconds=60, write_offset=32 << 20)
    assert got["iterations"] == 12 and not got["timed_out"]
    assert got["destroy_ok"] == 12 and got["destroy_other"] == 0
    assert got["submit_other"] == got["getevents_other"] == 0
    assert got["submit_einval"] + got["getevents_einval"] == 12 * 3
    assert got["submit_ok"] == got["submit_read"] + got["submit_write"] + got["submit_poll"]
    assert got["submit_read"] > 0 and got["submit_write"] > 0 and got["submit_poll"] > 0
    assert got["completed_by_destroy"] == got["submit_ok"]
    assert got["late_completions"] == got["bad_iterations"] == 0
    assert got["rate_per_s"] > 0 and got["destroy_ns_max"] > 0


def test_destroy_vs_submit_polls_only(agent: Agent) -> None:
    # No device at all: each submitter queues its polls, then only looks the context up.
    got = agent.call("race.destroy_vs_submit", kinds=["poll"], submitters=2, polls_per_iter=3,
                   iterations=8, seconds=60)
    assert got["iterations"] == 8
    assert got["submit_poll"] == got["submit_ok"] <= 8 * 2 * 3
    assert got["completed_by_destroy"] == got["submit_ok"]  # cancelled polls complete too


def test_time_bound_stops_the_loop(agent: Agent) -> None:
    got = agent.call("race.concurrent_destroy", threads=2, iterations=10**9, seconds=0.5)
    assert got["timed_out"] is True
    assert 0 < got["iterations"] < 10**9
    assert got["elapsed_ns"] < 10 * 10**9


def test_concurrent_destroy_one_winner(agent: Agent) -> None:
    got = agent.call("race.concurrent_destroy", threads=4, polls=2, iterations=15, seconds=60)
    assert got["iterations"] == 15
    assert (got["destroy_ok"], got["destroy_einval"], got["destroy_other"]) == (15, 45, 0)
    assert got["no_winner"] == got["many_winners"] == 0
    assert got["polls_submitted"] == 30


def test_hammered_destroy_keeps_the_accounting(agent: Agent) -> None:
    # Each racer ends a round with one result, as with one call each; the calls on the
    # hidden context before are counted apart, at least one per racer but thread 0.
    got = agent.call("race.concurrent_destroy", threads=3, polls=2, iterations=20, seconds=60,
                   opts=["pin", "hammer"])
    assert got["opts"] == ["pin", "hammer"] and got["iterations"] == 20
    assert (got["destroy_ok"], got["destroy_einval"], got["destroy_other"]) == (20, 40, 0)
    assert got["no_winner"] == got["many_winners"] == 0
    assert got["polls_submitted"] == 40
    assert got["hammer_calls"] >= 20 * 2
    assert got["overlap_rounds"] == 20 and got["overlapped"] <= got["any_overlap"]


def test_hammering_the_host_overlaps(agent: Agent) -> None:
    # On the host's real cores the hammered racers overlap in most rounds; one call each
    # after a barrier seldom does (the same window, the racers' starts further apart).
    got = agent.call("race.concurrent_destroy", threads=2, polls=0, iterations=60, seconds=60,
                   opts=["pin", "hammer"])
    assert got["overlapped"] >= 10, got


def test_bench_compares_the_overlap_both_ways(agent: Agent) -> None:
    gain = bench_race.overlap_gain(agent, seconds=1.0, repeats=2)
    assert len(gain.hammer) == len(gain.one_call) == 2
    assert all(r["rounds"] > 0 and r["margin_ns"] > 0 and r["window_ns"] > 0
               for r in gain.hammer + gain.one_call)
    assert sum(r["overlapped"] for r in gain.hammer) > 0 and gain.ratio > 0


def test_setup_vs_destroy_accounts_every_context(agent: Agent) -> None:
    got = agent.call("race.setup_vs_destroy", creators=2, lookers=2, slots=4, iterations=60,
                   seconds=60)
    assert got["iterations"] >= 60 and not got["timed_out"]
    assert got["setup_ok"] == got["destroy_ok"] + got["final_destroy_ok"]
    assert got["destroy_einval"] == got["destroy_other"] == got["final_destroy_failed"] == 0
    assert got["submit_other"] == got["getevents_other"] == 0
    assert got["submit_ok"] + got["getevents_ok"] > 0


def test_destroy_buffers_on_a_fast_file(agent: Agent, disk: str) -> None:
    got = agent.call("race.destroy_buffers", path=disk, nbufs=6, rounds=2, seconds=60,
                   settle_ms=20)
    assert got["iterations"] == 2
    assert got["submitted"] == 12 == got["completed_by_destroy"]
    assert got["unfinished_at_destroy"] == got["modified_after_destroy"] == 0
    assert got["late_completions"] == 0
    assert got["first_other_errno"] is None


@pytest.mark.parametrize(("op", "args"), [
    ("race.destroy_vs_submit", {"kinds": ["poll"], "submitters": 0}),
    ("race.destroy_vs_submit", {"kinds": ["poll"], "submitters": 2, "nr_events": 4}),
    ("race.concurrent_destroy", {"threads": 1}),
    ("race.setup_vs_destroy", {"creators": 0}),
    # hammering is the concurrent destroy's alone
    ("race.destroy_vs_submit", {"kinds": ["poll"], "opts": ["hammer"]}),
    ("race.setup_vs_destroy", {"opts": ["hammer"]}),
])
def test_bad_parameters_are_einval(agent: Agent, op: str, args: dict[str, Any]) -> None:
    reply = agent.request(op, **args)
    assert reply["ok"] is False and reply["errno"] == "EINVAL", reply


def test_unknown_kind_is_an_error(agent: Agent) -> None:
    reply = agent.request("race.destroy_vs_submit", kinds=["fsync"])
    assert reply["ok"] is False and "unknown kind" in reply["error"]


def test_plain_program_runs_the_same_loop(tmp_path: Path, disk: str) -> None:
    """The benchmark's stand-alone program, built and run on the host."""
    binary = bench_race.plain_binary(tmp_path)
    assert bench_race.plain_binary(tmp_path) == binary  # cached by source hash
    argv = bench_race.plain_argv(binary, bench_race.BenchParams(
        path=disk, iterations=6, seconds=60, write_offset=32 << 20))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    got = bench_race.parse_plain(proc.stdout)
    assert got["iterations"] == 6 and got["late_completions"] == 0
    assert got["rate_per_s"] > 0


# -- how much they raced: the loops' own overlap counts ------------------------


@pytest.mark.parametrize(("op", "args"), [
    ("race.destroy_vs_submit", {"kinds": ["poll"], "submitters": 2, "iterations": 10}),
    ("race.concurrent_destroy", {"threads": 3, "polls": 1, "iterations": 10}),
    ("race.setup_vs_destroy", {"creators": 2, "lookers": 2, "iterations": 40, "hold": 4}),
])
def test_overlap_is_counted_per_round(agent: Agent, op: str, args: dict[str, Any]) -> None:
    got = agent.call(op, seconds=60, **args)
    rounds = got["overlap_rounds"]
    assert rounds > 0 and 0 <= got["overlapped"] <= rounds
    assert 0 <= got["any_overlap"] <= rounds
    assert got["overlap_rate"] == round(got["overlapped"] / rounds, 4)
    assert got["overlap_calls"] >= got["overlapped"]  # an overlapped round has a call
    assert 0 < got["clock_ns"] < 10**6
    assert got["opts"] == ["pin"]  # guest/areas/race/ops.py DEFAULT_OPTS


def test_every_destroy_is_a_round(agent: Agent) -> None:
    got = agent.call("race.setup_vs_destroy", creators=2, lookers=1, iterations=30, seconds=60)
    assert got["overlap_rounds"] == got["destroy_ok"] + got["destroy_einval"] + \
        got["destroy_other"]
    # A destroy a lookup raced is one whose span the lookup met.
    assert got["overlapped"] <= got["any_overlap"]


def test_concurrent_destroy_measures_its_prefix(agent: Agent) -> None:
    got = agent.call("race.concurrent_destroy", threads=2, polls=0, iterations=5, seconds=60)
    # A failed lookup costs more than two clock reads and far less than a grace period.
    assert got["clock_ns"] < got["prefix_ns"] < 10**8


@pytest.mark.parametrize("opts", [[], ["spin"], ["pin", "spin", "yield"]])
def test_techniques_are_passed_through(agent: Agent, opts: list[str]) -> None:
    got = agent.call("race.concurrent_destroy", threads=2, polls=1, iterations=4, seconds=60,
                   opts=opts)
    assert got["opts"] == opts and got["iterations"] == 4
    assert (got["destroy_ok"], got["destroy_einval"]) == (4, 4)


def test_unknown_technique_is_an_error(agent: Agent) -> None:
    reply = agent.request("race.concurrent_destroy", opts=["pin", "hurry"])
    assert reply["ok"] is False and "unknown opt" in reply["error"]


def test_destroy_buffers_samples_inside_the_destroy(agent: Agent, disk: str) -> None:
    got = agent.call("race.destroy_buffers", path=disk, nbufs=4, rounds=3, seconds=60,
                   settle_ms=5)
    assert got["overlap_rounds"] == 3
    # A file on the host's disk answers at once: whatever was still in flight at the
    # watcher's sample was also pending before the call.
    assert got["overlapped"] <= got["any_overlap"] <= 3
    assert got["overlap_calls"] <= got["pending_at_destroy"]


def test_the_stamps_clock_is_reported(agent: Agent) -> None:
    got = agent.call("race.concurrent_destroy", threads=2, polls=0, iterations=3, seconds=60)
    assert isinstance(got["clock_tsc"], bool)
    if got["clock_tsc"]:  # the TSC agreed across CPUs: a stamp costs nanoseconds
        assert 0 < got["clock_ns"] == got["clock_res_ns"] < 10**5
    else:
        assert got["clock_res_ns"] > 0
