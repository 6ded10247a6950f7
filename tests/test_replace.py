"""When a guest is replaced, and what a loop of replacements means: the policy on fakes at
the boot seam (lab.vm.session, lab.results.splat.detectors_off)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.kernel.artifact import Kernel
from lab.results.splat import detectors_off
from lab.vm import session
from lab.vm.vmconfig import VmConfig


def test_kasan_multi_shot_keeps_the_guest_and_says_lockdep_is_off() -> None:
    # One-shot KASAN goes quiet after its report: replace the guest.
    assert detectors_off({"KASAN"}, ("nvme_core.io_timeout=180",)) == ("KASAN", "")
    # kasan_multi_shot: KASAN goes on reporting; its taint turned lockdep off.
    assert detectors_off({"KASAN"}, ("kasan_multi_shot",)) == ("", "LOCKDEP")
    assert detectors_off({"KASAN", "WARNING"}, ("kasan_multi_shot",)) == ("", "LOCKDEP")
    # Lockdep itself, a hung task, a stuck worker pool: replaced whatever the line says.
    assert detectors_off({"KASAN", "LOCKDEP"}, ("kasan_multi_shot",)) == ("LOCKDEP", "")
    assert detectors_off({"WQ_LOCKUP", "HUNG_TASK"}, ()) == ("HUNG_TASK, WQ_LOCKUP", "")
    assert detectors_off({"WARNING", "BUG"}, ()) == ("", "")


def _machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_reboots: int
             ) -> tuple[session.Machine, list[int]]:
    k = Kernel(spec="k", release="7.2.0", image=tmp_path / "bzImage")
    m = session.Machine(k, run_dir=tmp_path, cache=tmp_path, config=VmConfig(accel="tcg"),
                        name="m", call_timeout=10, max_reboots=max_reboots)
    boots: list[int] = []

    def start() -> None:
        boots.append(1)
        m.replace_reason, m.replace_cause, m.detectors_note = "", "", ""

    monkeypatch.setattr(m, "start", start)
    monkeypatch.setattr(m, "healthy", lambda: False)
    return m, boots


def _replace(m: session.Machine, reason: str, cause: str) -> bool:
    m.replace_reason, m.replace_cause = reason, cause
    return m.ensure()


def test_a_crash_loop_of_the_kernel_is_the_kernels(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    m, boots = _machine(tmp_path, monkeypatch, max_reboots=2)
    assert _replace(m, "crash: the guest died during the test", "kernel")
    assert _replace(m, "hang: call timed out", "kernel")
    with pytest.raises(session.RebootLimit) as stop:
        _replace(m, "crash: the guest died during the test", "kernel")
    assert stop.value.kernel and len(boots) == 2
    assert "2 guest replacements" in str(stop.value) and "crash loop of the kernel" in str(
        stop.value)


def test_a_loop_with_an_unknown_cause_is_the_machinerys(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    m, _ = _machine(tmp_path, monkeypatch, max_reboots=1)
    assert _replace(m, "crash: the guest died during the test", "kernel")
    with pytest.raises(session.RebootLimit) as stop:
        _replace(m, "infra: the agent failed", "")
    assert not stop.value.kernel


def test_a_detector_that_went_quiet_is_replaced_without_counting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each lockdep report costs a boot, never the run: the guest was healthy.
    m, boots = _machine(tmp_path, monkeypatch, max_reboots=1)
    for _ in range(5):
        assert _replace(m, "LOCKDEP reported: the detector is off", "planned")
    assert len(boots) == 5 and m.recoveries == []
    assert _replace(m, "crash: x", "kernel")
    with pytest.raises(session.RebootLimit):
        _replace(m, "crash: x", "kernel")


def test_a_changed_image_is_never_the_kernels_loop() -> None:
    stop = session.ImageChanged("/k/bzImage changed")
    assert isinstance(stop, session.RebootLimit) and not stop.kernel
