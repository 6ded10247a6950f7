"""`lab run --keep-on-failure`: the guest of the run's first FAIL, CRASH or HANG is kept.

A test's verdict is known, with its guest still up, when pytest makes the report of the
phase that failed: a failed call (FAIL), a CRASH or HANG diagnosed in any phase
(lab.run.guard, before the guest is replaced), a failure found as the window closed
(teardown).  There the run waits instead of going on: the guest stays as the failure
left it (paused with QMP ``stop`` after a panic, which panic=0 lets it outlive, so that
gdb sees it as it died), the lab prints how to get in (`lab shell --attach RUN_DIR`,
lab.vm.attach; the gdb command with --gdb) and waits for Ctrl-C.  Then the run ends as
a stopped one: the failing test's record is written, the tests after it are NOTRUN, and
the exit status is the run's own (1: a test failed), not Ctrl-C's 130.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator

import pytest

from lab.errors import EXIT_TEST_FAILED, InfraError
from lab.results.record import write_stop
from lab.results.text import printable
from lab.run.guard import MACHINE_KEY
from lab.run.keys import DIAGNOSIS_KEY, RUN_DIR_KEY, config_of
from lab.run.progress import terminal_writer
from lab.vm import attach, gdbstub
from lab.vm.qmp import Qmp
from lab.vm.session import Machine

log = logging.getLogger("lab.run.keep")

KEPT_KEY = pytest.StashKey[bool]()
STOP_REASON = "the run stopped at its first failure to keep its guest (--keep-on-failure)"


def verdict_kept(report: pytest.TestReport, diagnosis: str | None) -> str | None:
    """The verdict a failed phase gives its test, when it is one that keeps the guest."""
    if not report.failed:
        return None
    if diagnosis is not None:
        return diagnosis if diagnosis in ("CRASH", "HANG") else None
    return "FAIL" if report.when in ("call", "teardown") else None  # setup's: ERROR


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    config = item.config
    if (RUN_DIR_KEY in config.stash and not config.stash.get(KEPT_KEY, False)
            and isinstance(report, pytest.TestReport) and config_of(config).keep_on_failure):
        diag = item.stash.get(DIAGNOSIS_KEY, None)
        verdict = verdict_kept(report, diag.verdict if diag is not None else None)
        machine = item.stash.get(MACHINE_KEY, None)
        if verdict is not None and machine is not None:
            config.stash[KEPT_KEY] = True
            keep(item, machine, verdict=verdict, phase=report.when)
    return report


def keep(item: pytest.Item, machine: Machine, *, verdict: str, phase: str) -> None:
    """Wait with ``machine``'s guest as the failure left it until Ctrl-C; then stop the run."""
    config = item.config
    run_dir = config.stash[RUN_DIR_KEY]
    write = terminal_writer(config)
    vm = machine.vm
    write(f"kernel-lab: {item.nodeid}: {verdict} (in its {phase}); --keep-on-failure keeps "
          "its guest")
    door = None
    if vm is None or not vm.running():
        write("kernel-lab: its QEMU has exited: there is no guest to keep")
    else:
        dead = vm.timeline.dead()
        if dead is not None and vm.qmp_socket is not None:
            try:
                with Qmp(vm.qmp_socket) as qmp:
                    qmp.stop()
                write(printable(f"kernel-lab: {dead}: the guest is paused (QEMU's vCPUs "
                                "stopped) as it died"))
            except InfraError as exc:
                write(f"kernel-lab: {dead}; the guest could not be paused: {exc}")
        if dead is None and vm.ssh is not None:
            transport = vm.ssh.client.get_transport()
            if transport is not None and transport.is_active():
                door = attach.Door(run_dir, transport)
                write(f"kernel-lab: get in with: lab shell --attach {run_dir} "
                      "(-- CMD for one command)")
        if door is None:
            write("kernel-lab: the guest no longer answers over SSH: no shell")
        if vm.gdb_socket is not None:
            for line in gdbstub.attach_lines(machine.kernel, vm.gdb_socket,
                                             cache=machine.cache):
                write(f"kernel-lab: {line}")
        write("kernel-lab: waiting; Ctrl-C ends the run (its later tests are not run)")
        try:
            while vm.running():
                time.sleep(0.5)
            write("kernel-lab: the kept guest's QEMU exited")
        except KeyboardInterrupt:
            write("kernel-lab: Ctrl-C: the kept guest goes, the run ends")
        finally:
            if door is not None:
                door.close()
    write_stop(run_dir, exit_code=EXIT_TEST_FAILED, reason=STOP_REASON)
    item.session.shouldstop = STOP_REASON
