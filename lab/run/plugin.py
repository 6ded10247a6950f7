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

from lab.errors import (
    EXIT_INFRA_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TEST_FAILED,
    EXIT_USER_ERROR,
    UserError,
)
from lab.kernel import facts as facts_mod
from lab.kernel.artifact import Kernel
from lab.paths import KNOWN_ISSUES, REPO, cache_root, default_results_root, in_scenarios
from lab.results import known as known_mod
from lab.results.cell import cell_label, repeat_id, short_label
from lab.results.record import (
    append_aftermath,
    append_phase,
    has_phase,
    new_run_dir,
    read_stop,
    write_stop,
)
from lab.run import aftermath, collection
from lab.run import config as run_config
from lab.run import select as select_mod
from lab.run.cells import Cell
from lab.run.cells import matrix as cell_matrix
from lab.run.keys import (
    KERNELS_KEY,
    MACHINES_KEY,
    RUN_DIR_KEY,
    add_evidence,
    config_of,
    evidence_so_far,
    item_cell,
    required_config,
)
from lab.run.progress import terminal_writer
from lab.run.records import Recorder
from lab.run.schedule import CellScheduler
from lab.vm import slots
from lab.vm.agent import Agent
from lab.vm.session import ImageChanged, Machine, RebootLimit
from lab.vm.vm import Vm
from lab.vm.vmconfig import console_cap

pytest_plugins = ["lab.run.guard", "lab.run.records", "lab.run.keep"]

FACTS_KEY = pytest.StashKey[dict[str, facts_mod.ConfigFacts]]()
CELLS_KEY = pytest.StashKey[list[Cell]]()
log = logging.getLogger("lab.plugin")


def pytest_addoption(parser: pytest.Parser) -> None:
    # The run's options, from the one table (lab.run.config), checked as `lab run` checks them.
    run_config.add_pytest_options(parser.getgroup("lab", "kernel-lab"))


# The scenarios' markers (the quick tier, lab.run.quick, registers the same).
MARKERS = (
    "claim(id): the API-spec claim a scenario checks (an id of a suite's claims.toml)",
    "requires_config(*options): kernel config options the scenario needs (else SKIP); "
    "'!NAME' means the option must be off",
    "requires_feature(*names): kernel features the scenario needs, probed in the guest "
    "before its fixtures run (guest/areas/probe/; else SKIP); '!NAME' means it must be "
    "absent",
    "flaky(reason): the scenario fails only sometimes; `lab bisect` goes statistical",
    "saturates_cpus(reason): the scenario keeps every vCPU busy; it holds one of the "
    "host's CPU slots while it runs (lab.vm.slots)",
    "guest_only(reason): the scenario never runs on the host's own kernel (the quick tier, "
    "lab.run.quick, SKIPs it): it changes what the whole kernel does (sysctls, mounts, "
    "devices) or needs what only the guest is set up with",
    "needs_root(reason): the scenario needs the agent to be root, as it is in the guest; "
    "the quick tier SKIPs it when the host's user is not",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get("lab_run_dir"):
            _activate(config, Path(workerinput["lab_run_dir"]))
            _register_matrix(config)
        return
    if not _wanted(config):
        return  # e.g. the project's own unit tests: no run directory, no summary
    cfg = config_of(config)
    try:
        slots.configured()  # a bad KERNEL_LAB_CPU_SLOTS once, not as every test's error
        console_cap()  # a bad KERNEL_LAB_CONSOLE_CAP too
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    if cfg.run_dir is not None:
        run_dir = cfg.run_dir.resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        root = cfg.results or default_results_root()
        run_dir = new_run_dir(root, "+".join(map(short_label, cfg.kernel_specs)))
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
            cfg = config_of(config)
            config.stash[CELLS_KEY] = cell_matrix(cfg.kernel_specs, cfg.variants,
                                                  cfg.kconfig_add)
        except UserError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[CELLS_KEY]


def _register_matrix(config: pytest.Config) -> None:
    """The collection hooks: the node ids' choice (lab.run.select), then the matrix's
    (lab.run.collection: matrix.json, this shard's part)."""
    cfg = config_of(config)
    try:
        nodes = [select_mod.check(text, roots=[Path.cwd(), config.rootpath])
                 for text in cfg.select]
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    run_dir = config.stash[RUN_DIR_KEY]
    if nodes:
        config.pluginmanager.register(select_mod.Chooser(config, nodes, run_dir=run_dir),
                                      "lab-chooser")
    config.pluginmanager.register(collection.Selection(config, run_dir=run_dir,
                                                   cells=_cells(config), shard=cfg.shard,
                                                   nodes=nodes, options=run_options(config)),
                                  "lab-selection")


def run_options(config: pytest.Config) -> dict[str, Any]:
    """What matrix.json keeps of how the run ran, beside its tests (lab.results.matrixfile):
    the guest's options, the repetitions, pytest's extra arguments, the known issues ("" the
    lab's own list) and whether the tests are the lab's own scenarios/ (their ids then name
    them in whichever lab reads the run)."""
    cfg = config_of(config)
    try:
        known = cfg.known_issues.resolve() if cfg.known_issues else known_mod.path_for(None)
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None
    where = config.invocation_params.dir
    collected = [where / str(arg).split("::")[0] for arg in config.args]
    return {"guest": cfg.guest.to_dict(),
            "repeat": cfg.repeat,
            "pytest_args": list(cfg.pytest_args),
            "known_issues": "" if known == KNOWN_ISSUES.resolve() else str(known),
            "lab_suite": bool(collected) and all(in_scenarios(p) for p in collected)
                         and config.rootpath.resolve() == REPO.resolve()}


class _XdistHooks:
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["lab_run_dir"] = str(node.config.stash[RUN_DIR_KEY])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel" in metafunc.fixturenames:
        cells = _cells(metafunc.config)
        metafunc.parametrize("kernel", cells, indirect=True, scope="session",
                             ids=[c.label for c in cells])
        repeat = config_of(metafunc.config).repeat
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
    return cache_root(config_of(pytestconfig).cache)


def _stop(run_dir: Path, exit_code: int, reason: str) -> NoReturn:
    """End the session early; ``lab run`` exits with ``exit_code`` (lab.errors), not pytest's."""
    write_stop(run_dir, exit_code=exit_code, reason=reason)
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
                                              cache=cache_root(config_of(config).cache))
        except UserError as exc:
            _stop(run_dir, EXIT_USER_ERROR, str(exc))
        detail = {"kernel": cell.spec, **({"variant": cell.variant} if cell.variant else {})}
        if not has_phase(run_dir, "fetch", **detail):  # `lab run` fetched it
            append_phase(run_dir, "fetch", time.monotonic() - started, **detail)
    return done[cell.label]


@pytest.fixture(scope="session")
def kernel(request: pytest.FixtureRequest, lab_run_dir: Path) -> Kernel:
    """The kernel under test, fetched (or found in the cache)."""
    return _resolve(request.config, request.param, lab_run_dir)


@pytest.fixture(scope="session")
def lab_machine(kernel: Kernel, lab_cache: Path, lab_run_dir: Path,
                pytestconfig: pytest.Config) -> Iterator[Machine]:
    """The guest for ``kernel`` on this worker: booted once, replaced after a crash/hang."""
    from lab.vm.session import machine_for

    run = config_of(pytestconfig)
    label = cell_label(kernel.spec, kernel.variant)
    write = terminal_writer(pytestconfig)
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
    where = label if worker == "main" else f"{label} {worker}"  # two workers boot one cell
    try:
        machine = machine_for(kernel, run.guest, cache=lab_cache, run_dir=lab_run_dir,
                              worker=worker, ssh_port=run.ssh_port, keep=run.keep_on_failure,
                              say=lambda text: write(f"kernel-lab: [{where}] {text}"))
    except UserError as exc:
        _stop(lab_run_dir, EXIT_USER_ERROR, str(exc))
    pytestconfig.stash.setdefault(MACHINES_KEY, {})[label] = machine
    # A guest replaced or stopped has its kernel log read a last time (lab.run.aftermath).
    machine.on_replace = lambda m, why: aftermath.final_window(pytestconfig, m, why)
    try:
        _boot(machine, lab_run_dir, first=True)
        yield machine
        stop = read_stop(lab_run_dir)
        # Another cell's stop (a crash loop) leaves this cell's last read to do; Ctrl-C not.
        if machine.vm is not None and (stop is None or stop["exit_code"] != EXIT_INTERRUPTED):
            aftermath.final_window(pytestconfig, machine, "the cell's tests are done")
    except UserError as exc:
        _stop(lab_run_dir, EXIT_USER_ERROR, str(exc))
    except ImageChanged as exc:  # rebuilt since it was resolved: stop, as at a later boot
        _stop(lab_run_dir, EXIT_INFRA_ERROR, str(exc))
    finally:
        machine.stop()


def _boot(machine: Machine, run_dir: Path, *, first: bool) -> None:
    if first:
        machine.start()
    elif not machine.ensure():
        return
    assert machine.vm is not None
    wait = machine.slot_wait
    if wait.seconds >= slots.SHOWN_S:  # another guest held the host's cores
        append_phase(run_dir, "slot-wait", wait.seconds, kernel=machine.kernel.spec,
                             before="boot", held=wait.held)
    append_phase(run_dir, "boot", machine.boot_seconds, kernel=machine.kernel.spec,
                         cpus=machine.vm.cpus_online)
    append_phase(run_dir, "agent", machine.agent_seconds, kernel=machine.kernel.spec)


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
        said = evidence_so_far(request.node).deviations
        if text not in said:
            add_evidence(request.node, deviations=(*said, text))
    return note


@pytest.fixture
def inconclusive(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Say that the test, though every check held, could not decide (a race whose calls
    never overlapped): it is INCONCLUSIVE, never PASS; a failed check is still FAIL."""
    def note(reason: str) -> None:
        add_evidence(request.node, inconclusive=reason)
    return note


@pytest.fixture
def observed(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a value measured on this kernel that no source confirms (listed, never
    asserted as truth): an expectation the lab could only observe."""
    def note(text: str) -> None:
        said = evidence_so_far(request.node).observed
        if text not in said:
            add_evidence(request.node, observed=(*said, text))
    return note


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """Keep a measured value (counts, timings) in this test's result record."""
    def keep(key: str, value: Any) -> None:
        add_evidence(request.node, data={**evidence_so_far(request.node).data, key: value})
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
        append_aftermath(run_dir, entry)


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
