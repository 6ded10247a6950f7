"""The lab's pytest plugin: kernel/vm/agent fixtures, kernel-log checks, result records.

Registered as the ``lab`` pytest11 entry point, so ``pytest scenarios/
--lab-kernel debian:7.2`` works without ``lab run``.  One VM boots per kernel
per worker and serves every test of that kernel; with pytest-xdist tests are
grouped by kernel (``--dist loadgroup``).
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

from lab.errors import EXIT_INFRA_ERROR, EXIT_USER_ERROR, InfraError, UserError
from lab.kernel.artifact import Kernel
from lab.paths import cache_root, default_results_root
from lab.results import record as results
from lab.results import summary as summary_mod
from lab.results.record import Record
from lab.results.verdict import Diagnosis, PhaseOutcome, fold
from lab.run import watch
from lab.vm.agent import Agent, AgentError, AgentTimeout
from lab.vm.session import Machine, RebootLimit
from lab.vm.vm import Vm, VmConfig

RUN_DIR_KEY = pytest.StashKey[Path]()
KERNELS_KEY = pytest.StashKey[dict[str, Kernel]]()
DEFAULT_KERNEL = "debian:7.2"
log = logging.getLogger("lab.plugin")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("lab", "kernel-lab")
    g.addoption("--lab-kernel", action="append", default=[], metavar="SPEC",
                help=f"kernel to test (repeatable; default {DEFAULT_KERNEL})")
    g.addoption("--lab-variant", default=None, metavar="NAME[+NAME]",
                help="config variant for kernels the lab builds (kernels/*.config)")
    g.addoption("--lab-cache", default=None, help="cache root (default $KERNEL_LAB_CACHE "
                "or $XDG_CACHE_HOME/kernel-lab)")
    g.addoption("--lab-results", default=None, help="where run directories go (./results)")
    g.addoption("--lab-run-dir", default=None, help="use exactly this run directory")
    g.addoption("--lab-accel", default="auto", choices=("auto", "kvm", "tcg"))
    g.addoption("--lab-cpus", type=int, default=2)
    g.addoption("--lab-memory", default="2G")
    g.addoption("--lab-boot-timeout", type=float, default=180.0)
    g.addoption("--lab-ssh-port", type=int, default=None)
    g.addoption("--lab-call-timeout", type=float, default=120.0,
                help="seconds an agent call may take before the test is a HANG")
    g.addoption("--lab-max-reboots", type=int, default=3,
                help="guest replacements allowed per kernel before the run stops")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "claim(text): the API-spec claim a scenario checks",
        "requires_config(*options): kernel config options the scenario needs (else SKIP); "
        "'!NAME' means the option must be off",
        "flaky(reason): the scenario fails only sometimes; `lab bisect` goes statistical",
    ):
        config.addinivalue_line("markers", line)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get("lab_run_dir"):
            _activate(config, Path(workerinput["lab_run_dir"]))
        return
    if not _wanted(config):
        return  # e.g. the project's own unit tests: no run directory, no summary
    if config.getoption("lab_run_dir"):
        run_dir = Path(config.getoption("lab_run_dir")).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(config.getoption("lab_results") or default_results_root())
        run_dir = results.new_run_dir(root, "+".join(map(short_label, _kernel_specs(config))))
    _activate(config, run_dir)
    config.pluginmanager.register(_Recorder(config), "lab-recorder")
    cmd = run_dir / "command.txt"
    if not cmd.exists():
        cmd.write_text(f"cd {shlex.quote(str(Path.cwd()))} && "
                       f"{shlex.join([sys.executable, '-m', 'pytest', *sys.argv[1:]])}\n")
    if not config.option.xmlpath:
        config.option.xmlpath = str(run_dir / "junit.xml")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "lab-xdist")


def _wanted(config: pytest.Config) -> bool:
    """A lab run: lab options given, or scenario suites among the paths to test."""
    if config.getoption("lab_kernel") or config.getoption("lab_run_dir"):
        return True
    return any("scenarios" in Path(str(arg).split("::")[0]).resolve().parts
               for arg in config.args)


def _activate(config: pytest.Config, run_dir: Path) -> None:
    config.stash[RUN_DIR_KEY] = run_dir


class _XdistHooks:
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["lab_run_dir"] = str(node.config.stash[RUN_DIR_KEY])


def short_label(spec: str) -> str:
    """A test-id / directory-name friendly label for a kernel spec."""
    if len(spec) <= 32:
        return spec
    image = spec.partition(",modules=")[0]
    return f"{Path(image).parent.name}-{Path(image).name}"[-32:]


def _kernel_specs(config: pytest.Config) -> list[str]:
    return list(config.getoption("lab_kernel")) or [DEFAULT_KERNEL]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel" in metafunc.fixturenames:
        specs = _kernel_specs(metafunc.config)
        metafunc.parametrize("kernel", specs, indirect=True, scope="session",
                             ids=[short_label(s) for s in specs])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Group by kernel so that xdist's loadgroup gives each kernel's tests to one worker.
    for item in items:
        spec = _kernel_spec(item)
        if spec is not None:
            item.add_marker(pytest.mark.xdist_group(name=spec))


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


def _resolve(config: pytest.Config, spec: str, run_dir: Path) -> Kernel:
    """The kernel for ``spec``, fetched or built once per process.

    Shared by the ``kernel`` fixture and the requires_config check, which runs
    before any fixture so that a test the kernel cannot run boots no VM.
    """
    from lab.kernel.resolve import resolve_kernel

    done = config.stash.setdefault(KERNELS_KEY, {})
    if spec not in done:
        started = time.monotonic()
        try:
            done[spec] = resolve_kernel(spec, cache=cache_root(config.getoption("lab_cache")),
                                        variant=config.getoption("lab_variant"))
        except UserError as exc:
            _stop(run_dir, EXIT_USER_ERROR, str(exc))
        if not results.has_phase(run_dir, "fetch", kernel=spec):  # `lab run` fetched it
            results.append_phase(run_dir, "fetch", time.monotonic() - started, kernel=spec)
    return done[spec]


@pytest.fixture(scope="session")
def kernel(request: pytest.FixtureRequest, lab_run_dir: Path) -> Kernel:
    """The kernel under test, fetched (or found in the cache)."""
    return _resolve(request.config, str(request.param), lab_run_dir)


@pytest.fixture(scope="session")
def lab_machine(kernel: Kernel, lab_cache: Path, lab_run_dir: Path,
                pytestconfig: pytest.Config) -> Iterator[Machine]:
    """The guest for ``kernel`` on this worker: booted once, replaced after a crash/hang."""
    from lab.vm.accel import choose_accel

    opt = pytestconfig.getoption
    cfg = VmConfig(
        cpus=opt("lab_cpus"),
        memory=opt("lab_memory"),
        accel=choose_accel(lab_cache, image=kernel.image, requested=opt("lab_accel")),
        boot_timeout=opt("lab_boot_timeout"),
        ssh_port=opt("lab_ssh_port"),
    )
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
    machine = Machine(kernel, run_dir=lab_run_dir, cache=lab_cache, config=cfg,
                      name=f"{worker}-{kernel.release}",
                      call_timeout=float(opt("lab_call_timeout")),
                      max_reboots=int(opt("lab_max_reboots")))
    try:
        _boot(machine, lab_run_dir, first=True)
        yield machine
    except UserError as exc:
        _stop(lab_run_dir, EXIT_USER_ERROR, str(exc))
    finally:
        machine.stop()


def _boot(machine: Machine, run_dir: Path, *, first: bool) -> None:
    if first:
        machine.start()
    elif not machine.ensure():
        return
    assert machine.vm is not None
    results.append_phase(run_dir, "boot", machine.boot_seconds, kernel=machine.kernel.spec,
                         cpus=machine.vm.cpus_online)
    results.append_phase(run_dir, "agent", machine.agent_seconds, kernel=machine.kernel.spec)


@pytest.fixture
def vm(lab_machine: Machine, lab_run_dir: Path) -> Vm:
    """The booted guest for this test's kernel (a fresh one after a crash or hang)."""
    try:
        _boot(lab_machine, lab_run_dir, first=False)
    except RebootLimit as exc:
        _stop(lab_run_dir, EXIT_INFRA_ERROR, str(exc))
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
def record(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """Keep a measured value (counts, timings) in this test's result record."""
    def keep(key: str, value: Any) -> None:
        request.node.user_properties.append(("lab_data", {key: value}))
    return keep


def config_mismatch(k: Kernel, options: tuple[str, ...]) -> str | None:
    """Why ``k`` cannot run a test marked requires_config(*options), or None if it can."""
    on = [o for o in options if not o.startswith("!")]
    off = [o[1:] for o in options if o.startswith("!")]
    missing = [o for o in on if k.config_option(o) not in ("y", "m")]
    if missing:
        return f"{k.spec} ({k.release}) lacks " + ", ".join(f"CONFIG_{o}" for o in missing)
    if off and k.config is None:
        return f"not applicable: the config of {k.spec} is unknown"
    present = [f"CONFIG_{o}={k.config_option(o)}" for o in off
               if k.config_option(o) in ("y", "m")]
    return "not applicable: " + ", ".join(present) if present else None


def _kernel_spec(item: pytest.Item) -> str | None:
    """The kernel spec a test is parametrized with, if it takes the ``kernel`` fixture."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "kernel" not in callspec.params:
        return None
    return str(callspec.params["kernel"])


def _item_kernel(item: pytest.Item) -> Kernel | None:
    """The kernel a test ran on, or would have: a config SKIP happens before its fixtures."""
    spec = _kernel_spec(item)
    return None if spec is None else item.config.stash.get(KERNELS_KEY, {}).get(spec)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """SKIP a test its kernel's config cannot run, before its fixtures boot anything."""
    marker = item.get_closest_marker("requires_config")
    spec = _kernel_spec(item)
    if marker is None or spec is None or RUN_DIR_KEY not in item.config.stash:
        return
    k = _resolve(item.config, spec, item.config.stash[RUN_DIR_KEY])
    reason = config_mismatch(k, marker.args)
    if reason is not None:
        pytest.skip(reason)


# -- per-test kernel log check ---------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Mark the kernel log around the test; a splat or new taint during it fails the test.

    A call that fails because the guest died or hung is diagnosed here, while the
    evidence is fresh, and the guest is marked for replacement before the next test.
    """
    funcargs = getattr(item, "funcargs", {})
    machine, agent_obj = funcargs.get("lab_machine"), funcargs.get("agent")
    if not isinstance(machine, Machine) or not isinstance(agent_obj, Agent):
        return (yield)
    mark = watch.begin(machine, agent_obj, item.nodeid)
    try:
        outcome = yield
    except (AgentError, InfraError) as exc:
        item.stash[DIAGNOSIS_KEY] = machine.diagnose(exc, console_offset=mark.console_offset)
        raise
    except BaseException:
        # The test's own failure says more; what the log shows is kept in the record.
        _keep_findings(item, watch.end(agent_obj, mark, item.nodeid))
        raise
    found = watch.end(agent_obj, mark, item.nodeid)
    _keep_findings(item, found)
    problem = found.problem() if found is not None else ""
    if problem:
        pytest.fail(problem, pytrace=False)
    return outcome


def _keep_findings(item: pytest.Item, found: watch.Findings | None) -> None:
    if found is None:
        return
    if found.taint_changed:
        item.stash[TAINT_KEY] = (found.taint_before, found.taint_after)
    if found.splats:
        item.stash[SPLATS_KEY] = found.splat_dicts()


SPLATS_KEY = pytest.StashKey[list[dict[str, Any]]]()
DIAGNOSIS_KEY = pytest.StashKey[Diagnosis]()
TAINT_KEY = pytest.StashKey[tuple[str, str]]()


# -- verdicts and records ----------------------------------------------------------


def _verdict_hint(call: pytest.CallInfo[None], item: pytest.Item) -> str | None:
    if call.when == "call" and DIAGNOSIS_KEY in item.stash:
        return item.stash[DIAGNOSIS_KEY].verdict
    splats = item.stash.get(SPLATS_KEY, [])
    if any(s["fatal"] for s in splats):
        return "CRASH"
    if call.excinfo is None:
        return None
    if call.excinfo.errisinstance(AgentTimeout):
        return "HANG"
    if call.excinfo.errisinstance(InfraError):
        return "INFRA"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    hint = _verdict_hint(call, item)
    if hint:
        rep.user_properties.append(("lab_hint", hint))
    if call.when == "setup":
        k = _item_kernel(item)
        if k is not None:
            rep.user_properties.append(("lab_kernel", k.identity()))
        claim = item.get_closest_marker("claim")
        if claim is not None and claim.args:
            rep.user_properties.append(("lab_claim", str(claim.args[0])))
    if call.when == "call":
        diag = item.stash.get(DIAGNOSIS_KEY, None)
        if diag is not None:
            rep.user_properties.append(("lab_splats", diag.splats))
            rep.user_properties.append(("lab_reason", f"{diag.verdict}: {diag.summary}"))
            rep.user_properties.append(("lab_excerpt", diag.excerpt))
            rep.sections.append(("kernel-lab diagnosis",
                                 f"{diag.verdict}: {diag.summary}\n{diag.excerpt}"))
        elif SPLATS_KEY in item.stash:
            rep.user_properties.append(("lab_splats", item.stash[SPLATS_KEY]))
        if TAINT_KEY in item.stash:
            before, after = item.stash[TAINT_KEY]
            rep.user_properties.append(("lab_data", {"taint_before": before,
                                                     "taint_after": after}))
    return rep


class _Recorder:
    """Writes one record per test as its teardown report arrives (controller only).

    With xdist the reports of every worker arrive here, so the run's results.jsonl
    has a single writer.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.run_dir = config.stash[RUN_DIR_KEY]
        self.pending: dict[str, list[pytest.TestReport]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        reports = self.pending.setdefault(report.nodeid, [])
        reports.append(report)
        if report.when == "teardown":
            del self.pending[report.nodeid]
            results.append_record(self.run_dir, to_record(report.nodeid, reports))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[STARTED_KEY] = time.monotonic()


STARTED_KEY = pytest.StashKey[float]()


def to_record(nodeid: str, reports: list[pytest.TestReport]) -> Record:
    """One test's reports (setup, call, teardown) folded into its verdict record."""
    props: dict[str, Any] = {"lab_deviation": [], "lab_data": {}}
    hints: list[str] = []
    seen: set[str] = set()
    for rep in reports:
        for key, value in rep.user_properties:
            # Reports share the item's user_properties list: take each entry once.
            tag = f"{key}|{value!r}"
            if tag in seen:
                continue
            seen.add(tag)
            if key == "lab_deviation":
                props["lab_deviation"].append(value)
            elif key == "lab_data":
                props["lab_data"].update(value)
            elif key == "lab_hint":
                hints.append(str(value))
            else:
                props[key] = value
    verdict, reason = fold([_phase(rep) for rep in reports], hints=hints,
                           reason=props.get("lab_reason", ""))
    return Record(
        test=nodeid,
        verdict=verdict,
        duration=round(sum(r.duration for r in reports if r.when == "call"), 3),
        kernel=props.get("lab_kernel", {}),
        reason=reason,
        claim=props.get("lab_claim", ""),
        deviations=props["lab_deviation"],
        splats=props.get("lab_splats", []),
        data=props["lab_data"],
        excerpt=props.get("lab_excerpt", ""),
    )


def _phase(rep: pytest.TestReport) -> PhaseOutcome:
    if rep.skipped:
        longrepr = rep.longrepr
        message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    elif rep.failed:
        message = _first_line(rep)
    else:
        message = ""
    return PhaseOutcome(when=rep.when, outcome=rep.outcome, message=message,
                        duration=rep.duration)


def _first_line(rep: pytest.TestReport) -> str:
    crash = getattr(rep.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300]
    text = str(rep.longrepr).strip().splitlines()
    return text[-1][:300] if text else ""


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or RUN_DIR_KEY not in config.stash:
        return
    run_dir = config.stash[RUN_DIR_KEY]
    records = results.read_records(run_dir)
    suite = sum(r.duration for r in records)
    if records:
        results.append_phase(run_dir, "suite", suite)
    wall = time.monotonic() - config.stash.get(STARTED_KEY, time.monotonic())
    summary = summary_mod.summarize(run_dir, wall=wall)
    terminalreporter.section("kernel-lab")
    for line in summary_mod.summary_lines(summary):
        terminalreporter.write_line(line)
