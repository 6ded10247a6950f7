"""The KVM probe's memory: keyed by host kernel and QEMU, and a "no" expires."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pytest

from lab.vm import accel

pytestmark = pytest.mark.skipif(
    accel.qemu_binary() is None or not os.access("/dev/kvm", os.R_OK | os.W_OK),
    reason="needs QEMU and a /dev/kvm (the probe is skipped without them, by design)")


def _memo(cache: Path, *, usable: bool, age: float, key: str | None = None) -> None:
    qemu = accel.qemu_binary()
    assert qemu is not None
    key = key or f"{platform.release()}|{qemu}|{os.stat(qemu).st_mtime_ns}"
    (cache / "kvm-probe.json").write_text(json.dumps(
        {"key": key, "usable": usable, "why": "probed", "when": time.time() - age}))


def test_a_fresh_answer_is_reused(tmp_path: Path) -> None:
    _memo(tmp_path, usable=False, age=60)
    assert accel.kvm_usable(tmp_path, image=None) == (False, "probed (cached probe)")


def test_a_stale_no_is_asked_again(tmp_path: Path) -> None:
    _memo(tmp_path, usable=False, age=accel.NEGATIVE_TTL + 60)
    usable, why = accel.kvm_usable(tmp_path, image=None)  # no image: it would probe now
    assert not usable and "not probed yet" in why


def test_a_yes_is_kept_and_another_qemu_is_another_answer(tmp_path: Path) -> None:
    _memo(tmp_path, usable=True, age=accel.NEGATIVE_TTL * 10)
    assert accel.kvm_usable(tmp_path, image=None)[0] is True
    _memo(tmp_path, usable=True, age=0, key="other-kernel|qemu|1")
    assert "not probed yet" in accel.kvm_usable(tmp_path, image=None)[1]
