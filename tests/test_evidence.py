"""A test's evidence as one typed value: what crosses from an xdist worker to the
controller is all of it, and comes back equal (lab.results.evidence)."""

from __future__ import annotations

import dataclasses

import execnet
import pytest

from lab.results.evidence import KEY, Evidence, PhaseOutcome, decode, encode
from lab.run.records import carried

# Every field set, none to its default (checked below: a new field must be added here).
FULL = Evidence(
    phases=(PhaseOutcome("setup", "passed", duration=2.5),
            PhaseOutcome("call", "failed", "assert 'EINVAL' == 'EBADF'", 0.25, hint="FAIL"),
            PhaseOutcome("teardown", "skipped", "Skipped: x", 0.0, hint="")),
    reason="CRASH: the kernel crashed during boot: Oops",
    inconclusive="the racing calls overlapped in 0 of 12 rounds",
    splats=({"kind": "KASAN", "title": "KASAN: use-after-free in aio_complete",
             "fatal": False, "frames": ["aio_complete", "blk_update_request"],
             "taint": "B", "excerpt": "BUG: KASAN: use-after-free\n"},),
    excerpt="BUG: KASAN: use-after-free\n",
    data={"overlap": {"rounds": 12, "overlapped": 0, "rate": 0.0, "any": False},
          "nvme_events": ["nvme nvme0: I/O tag 7 (0007) QID 2 timeout, reset controller"],
          "previous_test": "scenarios/aio/t.py::test_a[debian:7.2]", "none": None},
    deviations=("the text says EFAULT",),
    observed=("charged: 0 pages",),
    cell="debian-src:7.2/debug",
    kernel={"spec": "debian:7.2", "release": "7.2.13+deb14-amd64", "package_version": None},
    accel={"name": "tcg", "mode": "TCG, multi-threaded", "reason": "KVM unusable"},
    claim="io_destroy waits for the requests in flight",
    aftermath_pending=True,
)


def test_every_field_is_in_the_sample() -> None:
    for f in dataclasses.fields(Evidence):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        assert getattr(FULL, f.name) != default, f"set {f.name} in FULL"


@pytest.mark.parametrize("evidence", [FULL, Evidence()])
def test_decode_reads_what_encode_wrote(evidence: Evidence) -> None:
    text = encode(evidence)
    assert isinstance(text, str) and decode(text) == evidence


def test_the_evidence_crosses_the_xdist_wire_whole() -> None:
    """A worker's report goes to the controller as pytest serializes it for xdist, over
    execnet: the test's evidence comes back equal, from its one property."""
    rep = pytest.TestReport(nodeid="t::x", location=("t", 1, "x"), keywords={},
                            outcome="failed", longrepr=None, when="teardown",
                            user_properties=[(KEY, encode(FULL)), ("lab_aftermath", {})])
    wire = execnet.gateway_base.loads_internal(
        execnet.gateway_base.dumps_internal(rep._to_json()))
    back = pytest.TestReport._from_json(wire)
    assert [k for k, _ in back.user_properties] == [KEY, "lab_aftermath"]
    assert carried([back]) == FULL


def test_a_measurement_keeps_what_a_record_on_disk_keeps() -> None:
    """The evidence is JSON, as results.jsonl is: a dict's int keys are its text, a
    tuple a list, whether the run had workers or not."""
    back = decode(encode(Evidence(data={"by_memlock": {0: "ENOMEM", 4096: "ok"},
                                        "pair": (1, 2)})))
    assert back.data == {"by_memlock": {"0": "ENOMEM", "4096": "ok"}, "pair": [1, 2]}
