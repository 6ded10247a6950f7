"""Cells, shards and the cell scheduler's work units: pure functions, no VM."""

from __future__ import annotations

from collections import Counter

import pytest

from lab.errors import UserError
from lab.results.matrixfile import Matrix
from lab.run.cells import Cell, matrix, plain_nodeid, splits
from lab.run.schedule import scopes
from lab.run.shard import Shard, parse_shard, stable_hash


def test_variants_multiply_built_kernels_only() -> None:
    cells = matrix(["debian:6.1", "debian-src:7.2", "debian:7.2"], ["base", "debug"])
    assert [c.label for c in cells] == ["debian:6.1", "debian-src:7.2/base",
                                        "debian-src:7.2/debug", "debian:7.2"]
    assert matrix(["debian-src:7.2"], []) == [Cell("debian-src:7.2", "base")]
    # One kernel, one cell: "debug+aio-off" is "aio-off+debug".
    assert [c.variant for c in matrix(["debian-src:7.2"], ["debug+aio-off", "aio-off+debug"])] \
        == ["aio-off+debug"]
    assert matrix(["debian:7.2", "debian:7.2"], []) == [Cell("debian:7.2")]
    assert matrix(["debian:7.2"], ["base"]) == [Cell("debian:7.2")]


def test_a_variant_for_a_prebuilt_kernel_names_the_cell() -> None:
    with pytest.raises(UserError) as exc:
        matrix(["debian:7.2"], ["debug"])
    assert "cell debian:7.2 x debug" in str(exc.value) and "debian-src:" in str(exc.value)
    with pytest.raises(UserError, match="unknown variant 'nope'"):
        matrix(["debian-src:7.2"], ["nope"])


def test_splits_give_every_worker_a_unit() -> None:
    assert [splits(n, 2) for n in (1, 2, 4)] == [2, 1, 1]
    assert splits(3, 4) == 2 and splits(1, 1) == 1


def test_plain_nodeid() -> None:
    assert plain_nodeid("f.py::t[debian:7.2]@c0s1") == "f.py::t[debian:7.2]"
    assert plain_nodeid("f.py::t[git:/x@v7.2]") == "f.py::t[git:/x@v7.2]"


@pytest.mark.parametrize("text", ["3/2", "0/2", "x", "1/0", "-1/2", "1/2/3", ""])
def test_bad_shards(text: str) -> None:
    with pytest.raises(UserError) as exc:
        parse_shard(text)
    assert "--shard" in str(exc.value) and "\n" not in str(exc.value)


TESTS = [(cell, f"scenarios/aio/t.py::test_{n}[{cell}]") for n in range(200)
         for cell in ("debian:7.2", "debian:6.1", "debian-src:7.3/debug")]


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_and_cover_everything(total: int) -> None:
    shards = [Shard(i, total) for i in range(1, total + 1)]
    taken = [[t for t in TESTS if s.takes(*t)] for s in shards]
    assert sum(len(t) for t in taken) == len(TESTS)
    assert set().union(*map(set, taken)) == set(TESTS)
    # Roughly even (a hash, not a list position): every shard has a fair share.
    assert all(len(t) > len(TESTS) / total * 0.7 for t in taken), [len(t) for t in taken]


def test_the_split_is_stable() -> None:
    # Known values: a change to the hash would reshuffle every CI shard.
    assert stable_hash("") == 0xE3B0C44298FC1C14
    assert parse_shard(" 2 / 4 ") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    assert [Shard(1, 2).takes(*t) for t in TESTS[:6]] == \
        [Shard(1, 2).takes(*t) for t in TESTS[:6]]


CELL_ORDER = ["debian:6.1", "debian:6.12", "debian:7.2", "debian:7.3", "debian-src:7.3/base",
              "debian-src:7.3/debug"]
BY_CELL = [(cell, f"scenarios/aio/t.py::test_{n}[{cell}]") for n in range(20)
           for cell in CELL_ORDER]


@pytest.mark.parametrize("total", [1, 2, 4, 6])
def test_a_split_by_cell_gives_each_shard_whole_cells_in_turn(total: int) -> None:
    shards = [parse_shard(f"{i}/{total}:cell") for i in range(1, total + 1)]
    taken = [[t for t in BY_CELL if s.takes(*t, cells=CELL_ORDER)] for s in shards]
    assert sum(len(t) for t in taken) == len(BY_CELL)
    assert set().union(*map(set, taken)) == set(BY_CELL)
    # Every test of a cell in one shard: that shard alone boots it, in the cells' turn.
    owners = [{c for c, _ in t} for t in taken]
    assert owners == [set(CELL_ORDER[i::total]) for i in range(total)]
    assert all(s.takes_cell(c, cells=CELL_ORDER) == (c in o)
               for s, o in zip(shards, owners, strict=True) for c in CELL_ORDER)
    # A split by test: every shard may run every cell.
    assert all(Shard(1, total).takes_cell(c, cells=CELL_ORDER) for c in CELL_ORDER)


def test_the_split_is_written_and_read_back() -> None:
    assert parse_shard("2/6:cell") == Shard(2, 6, "cell") and str(Shard(2, 6, "cell")) == \
        "2/6:cell"
    assert parse_shard("2/6:test") == Shard(2, 6) and str(Shard(2, 6)) == "2/6"
    with pytest.raises(UserError, match="unknown split 'file'"):
        parse_shard("1/2:file")
    matrix_of = Matrix(cells=[], suite=[], expected=[], assigned=[], shard="2/6:cell")
    assert (matrix_of.shard_index, matrix_of.shard_total, matrix_of.shard_by) == (2, 6, "cell")


def m(cells: list[str], tests: list[tuple[str, str]]) -> Matrix:
    return Matrix(cells=[{"label": c} for c in cells], suite=[], expected=tests, assigned=tests)


def test_scopes_are_cells_and_split_when_workers_outnumber_them() -> None:
    cells = ["debian:7.2", "debian:6.1", "debian-src:7.3/debug"]
    units = scopes(m(cells, TESTS), workers=2)
    assert set(units.values()) == {"c0s0", "c1s0", "c2s0"}
    assert all(units[t, 0] == f"c{cells.index(c)}s0" for c, t in TESTS)
    one = [t for t in TESTS if t[0] == "debian:7.2"]
    units = scopes(m(["debian:7.2"], one), workers=3)
    assert set(units.values()) == {"c0s0", "c0s1", "c0s2"}


def test_a_shard_split_by_cell_splits_its_own_cells_over_its_workers() -> None:
    # The nightly's shard 2/3:cell of three cells: one cell, two workers, both booting it.
    cells = ["debian:7.2", "debian:6.1", "debian-src:7.3/debug"]
    shard = parse_shard("2/3:cell")
    mine = [t for t in TESTS if shard.takes(*t, cells=cells)]
    units = scopes(Matrix(cells=[{"label": c} for c in cells], suite=[], expected=TESTS,
                          assigned=mine, shard=str(shard)), workers=2)
    assert set(units.values()) == {"c1s0", "c1s1"} and len(units) == len(mine) == 200


def test_repetitions_of_a_split_cell_spread_over_its_workers() -> None:
    """`lab rerun R --failed --repeat 50 --workers 2` of one race: the cell is split in
    two, and its 50 repetitions go to both halves, not all to one."""
    test = "scenarios/races/r.py::test_race[debian:7.2]"
    one = Matrix(cells=[{"label": "debian:7.2"}], suite=[], expected=[("debian:7.2", test)] * 50,
                 assigned=[("debian:7.2", test)] * 50, options={"repeat": 50})
    units = scopes(one, workers=2)
    assert set(units) == {(test, n) for n in range(1, 51)}
    per_unit = Counter(units.values())
    assert set(per_unit) == {"c0s0", "c0s1"} and min(per_unit.values()) >= 15, per_unit
    # Not split (a worker per cell): every repetition stays with its cell's guest.
    assert set(scopes(one, workers=1).values()) == {"c0s0"}
