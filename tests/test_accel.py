"""The accelerator and why it was chosen; the KVM probe's memory: keyed by host kernel and
QEMU, and a "no" expires."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pytest

from lab.vm import accel

needs_kvm_device = pytest.mark.skipif(
    accel.qemu_binary() is None or not os.access("/dev/kvm", os.R_OK | os.W_OK),
    reason="needs QEMU and a /dev/kvm (the probe is skipped without them, by design)")


def _memo(cache: Path, *, usable: bool, age: float, key: str | None = None) -> None:
    qemu = accel.qemu_binary()
    assert qemu is not None
    key = key or f"{platform.release()}|{qemu}|{os.stat(qemu).st_mtime_ns}"
    (cache / "kvm-probe.json").write_text(json.dumps(
        {"key": key, "usable": usable, "why": "probed", "when": time.time() - age}))


@needs_kvm_device
def test_a_fresh_answer_is_reused(tmp_path: Path) -> None:
    _memo(tmp_path, usable=False, age=60)
    assert accel.kvm_usable(tmp_path, image=None) == (False, "probed (cached probe)")


@needs_kvm_device
def test_a_stale_no_is_asked_again(tmp_path: Path) -> None:
    _memo(tmp_path, usable=False, age=accel.NEGATIVE_TTL + 60)
    usable, why = accel.kvm_usable(tmp_path, image=None)  # no image: it would probe now
    assert not usable and "not probed yet" in why


@needs_kvm_device
def test_a_yes_is_kept_and_another_qemu_is_another_answer(tmp_path: Path) -> None:
    _memo(tmp_path, usable=True, age=accel.NEGATIVE_TTL * 10)
    assert accel.kvm_usable(tmp_path, image=None)[0] is True
    _memo(tmp_path, usable=True, age=0, key="other-kernel|qemu|1")
    assert "not probed yet" in accel.kvm_usable(tmp_path, image=None)[1]


def test_an_explicit_choice_says_it_was_asked_for(tmp_path: Path) -> None:
    a = accel.choose(tmp_path, image=tmp_path / "bzImage", requested="tcg-single")
    assert (a.name, a.reason, a.mode) == ("tcg-single", "asked for tcg-single",
                                          "TCG, single-threaded")
    assert a.describe() == "TCG, single-threaded: asked for tcg-single"
    with pytest.raises(accel.UserError, match="tcg-single"):
        accel.choose(tmp_path, image=tmp_path / "bzImage", requested="hvf")


def test_auto_says_what_the_probe_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The probe is a real 10 s QEMU boot (tests/test_vm_real.py boots for real): here only
    # how its answer becomes the reason.
    monkeypatch.setattr(accel, "kvm_usable", lambda cache, image: (
        False, "the probe boot hung (no kernel banner in 10 s)"))
    a = accel.choose(tmp_path, image=tmp_path / "bzImage")
    assert a.to_dict() == {"name": "tcg", "mode": "TCG, multi-threaded",
                           "reason": "KVM unusable: the probe boot hung (no kernel banner "
                                     "in 10 s)"}
    monkeypatch.setattr(accel, "kvm_usable", lambda cache, image: (True, "probe boot ok"))
    assert accel.choose(tmp_path, image=tmp_path / "bzImage").describe() == \
        "KVM: KVM works (probe boot ok)"


@needs_kvm_device
def test_a_cached_no_is_the_reason(tmp_path: Path) -> None:
    _memo(tmp_path, usable=False, age=60)
    a = accel.choose(tmp_path, image=tmp_path / "bzImage")
    assert a.name == "tcg" and a.reason == "KVM unusable: probed (cached probe)"
