"""Kernels built without CONFIG_AIO / CONFIG_IO_URING answer those syscalls with ENOSYS.

Run on the variants: `lab run --kernel debian-src:7.2 --variant aio-off --suite
scenarios/enosys`.  On a kernel that has the option the tests SKIP as "not
applicable" (the requires_config marker with "!OPTION").
"""

from __future__ import annotations

import errno

import pytest

from lab.vm.agent import Agent
from scenarios.enosys.expectations import CLAIM_OF, PROVIDED_BY, TYPED_OPS


def _off(option: str) -> pytest.MarkDecorator:
    return pytest.mark.requires_config(f"!{option}")


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[_off(option), pytest.mark.claim(CLAIM_OF[name])], id=name)
    for name, option in PROVIDED_BY.items()
])
def test_syscall_is_enosys_without_its_option(agent: Agent, name: str) -> None:
    # Arguments are irrelevant to sys_ni_syscall; zeros would be EFAULT/EINVAL on a
    # kernel that has the syscall, so an ENOSYS can only come from its absence.
    assert agent.errno_of("sys.syscall", nr=name, args=[0, 0, 0, 0, 0, 0]) == "ENOSYS"


@pytest.mark.parametrize("op", [
    pytest.param(op, marks=[_off(option), pytest.mark.claim("aio.enosys")], id=op)
    for op, (_, option) in TYPED_OPS.items()
])
def test_typed_op_reports_enosys(agent: Agent, op: str) -> None:
    assert agent.errno_of(op, **TYPED_OPS[op][0]) == errno.errorcode[errno.ENOSYS]


@pytest.mark.requires_config("AIO", "!IO_URING")
def test_aio_still_works_without_io_uring(agent: Agent) -> None:
    # io_uring-off must remove io_uring only: the AIO syscalls keep working.
    ctx = agent.call("aio.setup", nr_events=1)
    agent.call("aio.destroy", ctx=ctx)


@pytest.mark.requires_config("IO_URING", "!AIO")
def test_io_uring_still_there_without_aio(agent: Agent) -> None:
    # aio-off must remove AIO only: io_uring_setup with a NULL params pointer
    # reaches the real syscall (EFAULT), not sys_ni_syscall (ENOSYS).
    assert agent.errno_of("sys.syscall", nr="io_uring_setup", args=[1, 0]) == "EFAULT"
