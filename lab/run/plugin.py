"""The lab's pytest plugin: options, kernels and guests as fixtures, result records.

Registered as the ``lab`` pytest11 entry point, so ``pytest scenarios/
--lab-kernel debian:7.2`` works without ``lab run``.  One VM boots per cell
(kernel x variant) per worker and serves every test of that cell; with
pytest-xdist the cells are the work units (lab.run.schedule).  The per-test
kernel-log guard is lab.run.guard; turning reports into records is lab.run.records.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from lab import options as guest_opts
from lab.errors import (
    EXIT_INFRA_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TEST_FAILED,
    EXIT_USER_ERROR,
    UserError,
)
from lab.kernel import facts as facts_mod
from lab.kernel.artifact import Kernel
from lab.options import GuestOptions, argtype
from lab.paths import KNOWN_ISSUES, REPO, cache_root, default_results_root, in_scenarios
from lab.results import known as known_mod
from lab.results import record as results
from lab.results.cell import PREBUILT, cell_label, repeat_id, short_label
from lab.run import aftermath, matrix
from lab.run import select as select_mod
from lab.run.cells import Cell
from lab.run.cells import matrix as cell_matrix
from lab.run.keys import (
    KERNELS_KEY,
    MACHINES_KEY,
    RUN_DIR_KEY,
    item_cell,
    required_config,
)
from lab.run.progress import terminal_writer
from lab.run.records import Recorder
from lab.run.schedule import CellScheduler
from lab.run.shard import parse_shard
from lab.vm import slots
from lab.vm.agent import Agent
from lab.vm.session import ImageChanged, Machine, RebootLimit
from lab.vm.vm import DEFAULT_KERNEL_ARGS, Vm, VmConfig

pytest_plugins = ["lab.run.guard", "lab.run.records"]

DEFAULT_KERNEL = "debian:7.2"
FACTS_KEY = pytest.StashKey[dict[str, facts_mod.ConfigFacts]]()
CELLS_KEY = pytest.StashKey[list[Cell]]()
log = logging.getLogger("lab.plugin")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("lab", "kernel-lab")
    g.addoption("--lab-kernel", action="append", default=[], metavar="SPEC",
                help=f"kernel to test (repeatable; default {DEFAULT_KERNEL})")
    g.addoption("--lab-variant", action="append", default=[], metavar="NAME[+NAME]",
                help="config variant for kernels the lab builds (kernels/*.config; "
                "repeatable: each built kernel x each variant is a cell)")
    g.addoption("--lab-kconfig-add", action="append", default=[], metavar="CONFIG_X=V",
                help="config option added to every variant of kernels the lab builds "
                "(CONFIG_X=y|m|n, =NUMBER, =\"TEXT\"; repeatable)")
    g.addoption("--lab-shard", default=None, metavar="I/N[:cell]",
                help="run shard I of N of the cells x tests (a stable hash; :cell: of the "
                "cells)")
    g.addoption("--lab-known-issues", default=None, metavar="FILE",
                help="known issues (default ./known-issues.toml, else the lab's own)")
    g.addoption("--lab-progress-interval", type=float, default=10.0,
                help="seconds between a cell's progress lines (0: after every test)")
    g.addoption("--lab-cache", default=None, help="cache root (default $KERNEL_LAB_CACHE "
                "or $XDG_CACHE_HOME/kernel-lab)")
    g.addoption("--lab-results", default=None, help="where run directories go (./results)")
    g.addoption("--lab-run-dir", default=None, help="use exactly this run directory")
    g.addoption("--lab-ssh-port", type=int, default=None)
    # The guest's options, checked as `lab run` checks them (lab.options).
    d = GuestOptions()
    g.addoption("--lab-accel", default=d.accel, type=argtype(guest_opts.parse_accel),
                help=f"{'|'.join(guest_opts.ACCELS)} (auto: KVM if a real probe boot works)")
    g.addoption("--lab-cpus", type=argtype(guest_opts.parse_cpus), default=d.cpus,
                help="the guest's vCPUs")
    g.addoption("--lab-memory", type=argtype(guest_opts.parse_memory), default=d.memory,
                help="the guest's memory (2G, 2048M)")
    g.addoption("--lab-boot-timeout", type=argtype(guest_opts.parse_boot_timeout),
                default=d.boot_timeout, help="seconds a boot may take to reach SSH")
    g.addoption("--lab-call-timeout", type=argtype(guest_opts.parse_call_timeout),
                default=d.call_timeout,
                help="seconds an agent call may take before the test is a HANG")
    g.addoption("--lab-max-reboots", type=argtype(guest_opts.parse_max_reboots),
                default=d.max_reboots,
                help="guest replacements allowed per kernel before the run stops")
    g.addoption("--lab-append", action="append", default=[], metavar="PARAM",
                type=argtype(guest_opts.parse_param),
                help="extra kernel command-line parameter (repeatable)")
    g.addoption("--lab-select", action="append", default=[], metavar="NODEID",
                help="run only this test: FILE.py::NAME as records show it, or without the "
                     "cell parameter (repeatable; `lab run -- NODEID` passes these)")
    g.addoption("--lab-repeat", type=argtype(guest_opts.parse_repeat), default=1, metavar="N",
                help="run each selected test N times (each repetition its own record)")
    g.addoption("--lab-pytest-arg", action="append", default=[], metavar="ARG",
                help="one of pytest's own arguments of this run, as matrix.json keeps them "
                     "for `lab rerun` and reproducers (`lab run -- ARGS` passes these)")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "claim(text): the API-spec claim a scenario checks",
        "requires_config(*options): kernel config options the scenario needs (else SKIP); "
        "'!NAME' means the option must be off",
        "requires_feature(*names): kernel features the scenario needs, probed in the guest "
        "before its fixtures run (guest/areas/probe/; else SKIP); '!NAME' means it must be "
        "absent",
        "flaky(reason): the scenario fails only sometimes; `lab bisect` goes statistical",
        "saturates_cpus(reason): the scenario keeps every vCPU busy; it holds one of the "
        "host's CPU slots while it runs (lab.vm.slots)",
    ):
        config.addinivalue_line("markers", line)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get("lab_run_dir"):
            _activate(config, Path(workerinput["lab_run_dir"]))
            _register_matrix(config)
        return
    if not _wanted(config):
        return  # e.g. the project's own unit tests: no run directory, no summary
    try:
        slots.configured()  # a bad KERNEL_LAB_CPU_SLOTS once, not as every test's error
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.getoption("lab_run_dir"):
        run_dir = Path(config.getoption("lab_run_dir")).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(config.getoption("lab_results") or default_results_root())
        run_dir = results.new_run_dir(root, "+".join(map(short_label, _kernel_specs(config))))
    _activate(config, run_dir)
    _register_matrix(config)
    config.pluginmanager.register(Recorder(config), "lab-recorder")
    cmd = run_dir / "command.txt"
    if not cmd.exists():
        cmd.write_text(f"cd {shlex.quote(str(Path.cwd()))} && "
                       f"{shlex.join([sys.executable, '-m', 'pytest', *sys.argv[1:]])}\n")
    if not config.option.xmlpath:
        config.option.xmlpath = str(run_dir / "junit.xml")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "lab-xdist")
        config.pluginmanager.register(CellScheduler(run_dir), "lab-scheduler")


def _wanted(config: pytest.Config) -> bool:
    """A lab run: lab options given, or scenario suites among the paths to test."""
    if config.getoption("lab_kernel") or config.getoption("lab_run_dir"):
        return True
    return any("scenarios" in Path(str(arg).split("::")[0]).resolve().parts
               for arg in config.args)


def _activate(config: pytest.Config, run_dir: Path) -> None:
    config.stash[RUN_DIR_KEY] = run_dir


def _cells(config: pytest.Config) -> list[Cell]:
    """The run's cells (--lab-kernel x --lab-variant), checked once."""
    if CELLS_KEY not in config.stash:
        try:
            config.stash[CELLS_KEY] = cell_matrix(_kernel_specs(config),
                                                  config.getoption("lab_variant"),
                                                  config.getoption("lab_kconfig_add"))
        except UserError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[CELLS_KEY]


def _register_matrix(config: pytest.Config) -> None:
    """The collection hooks: the node ids' choice (lab.run.select), then the matrix's
    (lab.run.matrix: matrix.json, this shard's part)."""
    try:
        shard_text = config.getoption("lab_shard")
        shard = parse_shard(shard_text) if shard_text else None
        nodes = [select_mod.check(text, roots=[Path.cwd(), config.rootpath])
                 for text in config.getoption("lab_select")]
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    run_dir = config.stash[RUN_DIR_KEY]
    if nodes:
        config.pluginmanager.register(select_mod.Chooser(config, nodes, run_dir=run_dir),
                                      "lab-chooser")
    config.pluginmanager.register(matrix.Selection(config, run_dir=run_dir,
                                                   cells=_cells(config), shard=shard,
                                                   nodes=nodes, options=run_options(config)),
                                  "lab-selection")


def run_options(config: pytest.Config) -> dict[str, Any]:
    """What matrix.json keeps of how the run ran, beside its tests (lab.results.matrix):
    the guest's options, the repetitions, pytest's extra arguments, the known issues ("" the
    lab's own list) and whether the tests are the lab's own scenarios/ (their ids then name
    them in whichever lab reads the run)."""
    given = config.getoption("lab_known_issues")
    try:
        known = Path(given).resolve() if given else known_mod.path_for(None)
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    where = config.invocation_params.dir
    collected = [where / str(arg).split("::")[0] for arg in config.args]
    return {"guest": guest_options(config).to_dict(),
            "repeat": int(config.getoption("lab_repeat")),
            "pytest_args": list(config.getoption("lab_pytest_arg")),
            "known_issues": "" if known == KNOWN_ISSUES.resolve() else str(known),
            "lab_suite": bool(collected) and all(in_scenarios(p) for p in collected)
                         and config.rootpath.resolve() == REPO.resolve()}


class _XdistHooks:
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["lab_run_dir"] = str(node.config.stash[RUN_DIR_KEY])


def guest_options(config: pytest.Config) -> GuestOptions:
    """The run's guest options (--lab-accel, --lab-cpus, ...), each already checked."""
    opt = config.getoption
    return GuestOptions(accel=opt("lab_accel"), cpus=opt("lab_cpus"), memory=opt("lab_memory"),
                        append=tuple(opt("lab_append")), boot_timeout=opt("lab_boot_timeout"),
                        call_timeout=opt("lab_call_timeout"),
                        max_reboots=opt("lab_max_reboots"))


def _kernel_specs(config: pytest.Config) -> list[str]:
    return list(config.getoption("lab_kernel")) or [DEFAULT_KERNEL]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel" in metafunc.fixturenames:
        cells = _cells(metafunc.config)
        metafunc.parametrize("kernel", cells, indirect=True, scope="session",
                             ids=[c.label for c in cells])
        repeat = int(metafunc.config.getoption("lab_repeat"))
        if repeat > 1:
            # Each repetition is its own test (its own record, Record.repeat), so that
            # xdist, the records and NOTRUN work as for any other; the record keeps the
            # test's id without it (lab.results.cell.split_repeat).
            metafunc.parametrize("lab_repeat", range(1, repeat + 1),
                                 ids=[repeat_id(n) for n in range(1, repeat + 1)])


@pytest.fixture(autouse=True)
def lab_repeat(request: pytest.FixtureRequest) -> int:
    """Which repetition of its test this is (`lab run --repeat N`; 0 when not repeated)."""
    return int(getattr(request, "param", 0))


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="session")
def lab_run_dir(pytestconfig: pytest.Config) -> Path:
    """This run's directory (results, console logs, reports)."""
    if RUN_DIR_KEY not in pytestconfig.stash:
        pytest.fail("kernel-lab fixtures need a lab run: give --lab-kernel or --lab-run-dir")
    return pytestconfig.stash[RUN_DIR_KEY]


@pytest.fixture(scope="session")
def lab_cache(pytestconfig: pytest.Config) -> Path:
    return cache_root(pytestconfig.getoption("lab_cache"))


def _stop(run_dir: Path, exit_code: int, reason: str) -> NoReturn:
    """End the session early; ``lab run`` exits with ``exit_code`` (lab.errors), not pytest's."""
    results.write_stop(run_dir, exit_code=exit_code, reason=reason)
    pytest.exit(f"kernel-lab: {reason}")


def _resolve(config: pytest.Config, cell: Cell, run_dir: Path) -> Kernel:
    """The kernel of ``cell``, fetched or built once per process.

    Shared by the ``kernel`` fixture and the requires_config check, which runs
    before any fixture so that a test the kernel cannot run boots no VM.
    """
    from lab.kernel.resolve import resolve_kernel

    done = config.stash.setdefault(KERNELS_KEY, {})
    if cell.label not in done:
        started = time.monotonic()
        try:
            done[cell.label] = resolve_kernel(cell.spec, variant=cell.variant,
                                              cache=cache_root(config.getoption("lab_cache")))
        except UserError as exc:
            _stop(run_dir, EXIT_USER_ERROR, str(exc))
        detail = {"kernel": cell.spec, **({"variant": cell.variant} if cell.variant else {})}
        if not results.has_phase(run_dir, "fetch", **detail):  # `lab run` fetched it
            results.append_phase(run_dir, "fetch", time.monotonic() - started, **detail)
    return done[cell.label]


@pytest.fixture(scope="session")
def kernel(request: pytest.FixtureRequest, lab_run_dir: Path) -> Kernel:
    """The kernel under test, fetched (or found in the cache)."""
    return _resolve(request.config, request.param, lab_run_dir)


@pytest.fixture(scope="session")
def lab_machine(kernel: Kernel, lab_cache: Path, lab_run_dir: Path,
                pytestconfig: pytest.Config) -> Iterator[Machine]:
    """The guest for ``kernel`` on this worker: booted once, replaced after a crash/hang."""
    from lab.vm.accel import choose

    guest = guest_options(pytestconfig)
    label = cell_label(kernel.spec, kernel.variant)
    write = terminal_writer(pytestconfig)
    try:
        accel = choose(lab_cache, image=kernel.image, requested=guest.accel)
    except UserError as exc:
        _stop(lab_run_dir, EXIT_USER_ERROR, str(exc))
    cfg = VmConfig(
        cpus=guest.cpus,
        memory=guest.memory,
        accel=accel.name,
        boot_timeout=guest.boot_timeout,
        ssh_port=pytestconfig.getoption("lab_ssh_port"),
        kernel_args=kernel_args(kernel, list(guest.append)),
    )
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
    where = label if worker == "main" else f"{label} {worker}"  # two workers boot one cell
    machine = Machine(kernel, run_dir=lab_run_dir, cache=lab_cache, config=cfg,
                      # Two variants of one source share a release: keep their consoles apart.
                      name=f"{worker}-{kernel.release}" + (
                          "" if kernel.variant == PREBUILT else f"-{kernel.variant}"),
                      call_timeout=guest.call_timeout, max_reboots=guest.max_reboots,
                      accel=accel, say=lambda text: write(f"kernel-lab: [{where}] {text}"))
    pytestconfig.stash.setdefault(MACHINES_KEY, {})[label] = machine
    # A guest replaced or stopped has its kernel log read a last time (lab.run.aftermath).
    machine.on_replace = lambda m, why: aftermath.final_window(pytestconfig, m, why)
    try:
        _boot(machine, lab_run_dir, first=True)
        yield machine
        stop = results.read_stop(lab_run_dir)
        # Another cell's stop (a crash loop) leaves this cell's last read to do; Ctrl-C not.
        if machine.vm is not None and (stop is None or stop["exit_code"] != EXIT_INTERRUPTED):
            aftermath.final_window(pytestconfig, machine, "the cell's tests are done")
    except UserError as exc:
        _stop(lab_run_dir, EXIT_USER_ERROR, str(exc))
    except ImageChanged as exc:  # rebuilt since it was resolved: stop, as at a later boot
        _stop(lab_run_dir, EXIT_INFRA_ERROR, str(exc))
    finally:
        machine.stop()


def kernel_args(kernel: Kernel, extra: list[str]) -> tuple[str, ...]:
    """The lab's kernel parameters for ``kernel``, then the user's."""
    args = list(DEFAULT_KERNEL_ARGS)
    if kernel.config_option("KASAN") == "y":
        # KASAN reports only the first bug of a boot without it.  With it the guest is
        # kept after a KASAN report (lab.results.splat.detectors_off), so every test
        # that hits the bug gets its own FAIL, and a test with two bugs shows both.
        args.append("kasan_multi_shot")
    return (*args, *extra)


def _boot(machine: Machine, run_dir: Path, *, first: bool) -> None:
    if first:
        machine.start()
    elif not machine.ensure():
        return
    assert machine.vm is not None
    wait = machine.slot_wait
    if wait.seconds >= slots.SHOWN_S:  # another guest held the host's cores
        results.append_phase(run_dir, "slot-wait", wait.seconds, kernel=machine.kernel.spec,
                             before="boot", held=wait.held)
    results.append_phase(run_dir, "boot", machine.boot_seconds, kernel=machine.kernel.spec,
                         cpus=machine.vm.cpus_online)
    results.append_phase(run_dir, "agent", machine.agent_seconds, kernel=machine.kernel.spec)


@pytest.fixture
def vm(lab_machine: Machine, lab_run_dir: Path) -> Vm:
    """The booted guest for this test's kernel (a fresh one after a crash or hang)."""
    try:
        _boot(lab_machine, lab_run_dir, first=False)
    except RebootLimit as exc:
        # A loop of the kernel's own crashes and hangs is its finding: CRASH/HANG records
        # and exit 1; any other cause (or an unknown one) is the machinery's: 3.
        _stop(lab_run_dir, EXIT_TEST_FAILED if exc.kernel else EXIT_INFRA_ERROR, str(exc))
    assert lab_machine.vm is not None
    return lab_machine.vm


@pytest.fixture
def agent(vm: Vm, lab_machine: Machine) -> Agent:
    """The guest agent: ``agent.call("aio.setup", nr_events=8)``."""
    assert lab_machine.agent is not None
    return lab_machine.agent


@pytest.fixture
def nvme(vm: Vm) -> dict[str, Any]:
    """The guest's NVMe devices by role ("fast", "slow")."""
    return vm.nvme


@pytest.fixture
def deviation(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record that the kernel disagrees with the API spec text (listed in the report)."""
    def note(text: str) -> None:
        request.node.user_properties.append(("lab_deviation", text))
    return note


@pytest.fixture
def inconclusive(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Say that the test, though every check held, could not decide (a race whose calls
    never overlapped): it is INCONCLUSIVE, never PASS; a failed check is still FAIL."""
    def note(reason: str) -> None:
        request.node.user_properties.append(("lab_inconclusive", reason))
    return note


@pytest.fixture
def observed(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a value measured on this kernel that no source confirms (listed, never
    asserted as truth): an expectation the lab could only observe."""
    def note(text: str) -> None:
        request.node.user_properties.append(("lab_observed", text))
    return note


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """Keep a measured value (counts, timings) in this test's result record."""
    def keep(key: str, value: Any) -> None:
        request.node.user_properties.append(("lab_data", {key: value}))
    return keep


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """After Ctrl-C, pytest tears down the interrupted test's fixtures at the session's
    end, where a failure (a scenario's fixture calling the agent whose call was cut
    short) would end pytest with a traceback and lose the summary: say it, go on."""
    try:
        return (yield)
    except (Exception, pytest.fail.Exception) as exc:
        if session.exitstatus != pytest.ExitCode.INTERRUPTED:
            raise
        log.warning("after Ctrl-C, a fixture's teardown failed: %s", exc)
        return None
    finally:
        _hand_over_aftermath(session.config)


def _hand_over_aftermath(config: pytest.Config) -> None:
    """A worker's aftermath entries that no report carried (the run stopped, or its last
    read came at the session's end) go to the run directory, where the controller's
    Recorder folds them into the held records (lab.run.records)."""
    run_dir = config.stash.get(RUN_DIR_KEY, None)
    if run_dir is None or not hasattr(config, "workerinput"):
        return
    for entry in aftermath.drain(config):
        results.append_aftermath(run_dir, entry)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """SKIP a test its kernel's config cannot run, before its fixtures boot anything.

    Only a kernel whose config is known decides here; one that came without a config
    is decided after its guest booted (lab.run.guard), never skipped for not knowing.
    """
    required = required_config(item)
    cell = item_cell(item)
    if not required or cell is None or RUN_DIR_KEY not in item.config.stash:
        return
    k = _resolve(item.config, cell, item.config.stash[RUN_DIR_KEY])
    if k.config is None:
        return
    facts = item.config.stash.setdefault(FACTS_KEY, {})
    if cell.label not in facts:  # read and parsed once per kernel, not once per test
        facts[cell.label] = facts_mod.ConfigFacts.from_text(
            k.config.read_text(errors="replace"), source=k.config_source)
    reason = facts_mod.mismatch(facts[cell.label], required,
                                label=f"{k.spec} ({k.release})")
    if reason is not None:
        pytest.skip(reason)
