"""The QEMU/virtme-ng command line the lab builds, and the guest facts it parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.vm.vm import VmConfig, cpu_count, qemu_opts


@pytest.mark.parametrize(("online", "count"), [("0", 1), ("0-1", 2), ("0-1,3", 3),
                                                ("0,2-5\n", 5)])
def test_cpu_count_reads_sysfs_cpu_lists(online: str, count: int) -> None:
    assert cpu_count(online) == count


def test_one_cpu_per_socket_so_the_mp_table_lists_every_cpu() -> None:
    opts = qemu_opts(VmConfig(cpus=3, accel="tcg"), vmdir=Path("/v"), port=2222)
    assert opts[opts.index("-smp") + 1] == "3,sockets=3,cores=1,threads=1"
    assert "-no-reboot" in opts
    assert "user,id=lab0,hostfwd=tcp:127.0.0.1:2222-:22" in opts

