"""The benchmark's own checks (the measurements themselves run under `nox -s bench`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.bench.boot import check_can_power_off
from lab.errors import UserError
from lab.kernel.artifact import Kernel


def test_bench_refuses_a_boot_baseline_that_cannot_power_off(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("CONFIG_SMP=y\n# CONFIG_ACPI is not set\n")
    base = Kernel(spec="debian-src:7.2", release="7.2.13", image=tmp_path / "bzImage",
                  config=config)
    with pytest.raises(UserError, match="no CONFIG_ACPI"):
        check_can_power_off(base)
    config.write_text("CONFIG_SMP=y\nCONFIG_ACPI=y\n")
    check_can_power_off(base)
