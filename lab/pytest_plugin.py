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
from typing import Any

import pytest

from lab import results
from lab.agent import Agent, AgentError, AgentTimeout
from lab.errors import InfraError, UserError
from lab.kernel import Kernel
from lab.paths import cache_root, default_results_root
from lab.vm import Vm, VmConfig

RUN_DIR_KEY = pytest.StashKey[Path]()
REPORTS_KEY = pytest.StashKey[dict[str, list[pytest.TestReport]]]()
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


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "claim(text): the API-spec claim a scenario checks",
        "requires_config(*options): kernel config options the scenario needs (else SKIP); "
        "'!NAME' means the option must be off",
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
    config.stash[REPORTS_KEY] = {}


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
        spec = getattr(item, "callspec", None)
        if spec is not None and "kernel" in spec.params:
            item.add_marker(pytest.mark.xdist_group(name=str(spec.params["kernel"])))


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


@pytest.fixture(scope="session")
def kernel(request: pytest.FixtureRequest, lab_cache: Path, lab_run_dir: Path) -> Kernel:
    """The kernel under test, fetched (or found in the cache)."""
    from lab.fetch import resolve_kernel

    spec = str(request.param)
    started = time.monotonic()
    try:
        k = resolve_kernel(spec, cache=lab_cache,
                           variant=request.config.getoption("lab_variant"))
    except UserError as exc:
        pytest.exit(f"kernel-lab: {exc}", returncode=2)
    results.append_phase(lab_run_dir, "fetch", time.monotonic() - started, kernel=spec)
    return k


@pytest.fixture(scope="session")
def vm(kernel: Kernel, lab_cache: Path, lab_run_dir: Path,
       pytestconfig: pytest.Config) -> Iterator[Vm]:
    """The booted guest for ``kernel`` (one per kernel per worker)."""
    from lab.doctor import choose_accel

    opt = pytestconfig.getoption
    cfg = VmConfig(
        cpus=opt("lab_cpus"),
        memory=opt("lab_memory"),
        accel=choose_accel(lab_cache, image=kernel.image, requested=opt("lab_accel")),
        boot_timeout=opt("lab_boot_timeout"),
        ssh_port=opt("lab_ssh_port"),
    )
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
    name = f"{worker}-{kernel.release}"
    try:
        with Vm(kernel, run_dir=lab_run_dir, cache=lab_cache, config=cfg, name=name) as machine:
            results.append_phase(lab_run_dir, "boot", machine.boot_seconds, kernel=kernel.spec)
            yield machine
    except UserError as exc:
        pytest.exit(f"kernel-lab: {exc}", returncode=2)


@pytest.fixture(scope="session")
def agent(vm: Vm, lab_cache: Path, lab_run_dir: Path,
          pytestconfig: pytest.Config) -> Iterator[Agent]:
    """The guest agent on ``vm``: ``agent.call("aio.setup", nr_events=8)``."""
    assert vm.ssh is not None
    started = time.monotonic()
    a = Agent.start(vm.ssh, cache=lab_cache)
    a.default_timeout = float(pytestconfig.getoption("lab_call_timeout"))
    results.append_phase(lab_run_dir, "agent", time.monotonic() - started, kernel=vm.kernel.spec)
    yield a
    a.close()


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


@pytest.fixture(autouse=True)
def _lab_requirements(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("requires_config")
    if marker is None or "kernel" not in request.fixturenames:
        return
    k: Kernel = request.getfixturevalue("kernel")
    on = [o for o in marker.args if not o.startswith("!")]
    off = [o[1:] for o in marker.args if o.startswith("!")]
    missing = [o for o in on if k.config_option(o) not in ("y", "m")]
    if missing:
        pytest.skip(f"{k.spec} ({k.release}) lacks " + ", ".join(f"CONFIG_{o}" for o in missing))
    if off and k.config is None:
        pytest.skip(f"not applicable: the config of {k.spec} is unknown")
    present = [f"CONFIG_{o}={k.config_option(o)}" for o in off
               if k.config_option(o) in ("y", "m")]
    if present:
        pytest.skip("not applicable: " + ", ".join(present))


# -- per-test kernel log check ---------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Mark the kernel log around the test; a splat during it fails the test."""
    agent_obj = getattr(item, "funcargs", {}).get("agent")
    if not isinstance(agent_obj, Agent):
        return (yield)
    seq = agent_obj.call("sys.kmsg_seq")
    agent_obj.call("sys.kmsg_write", text=f"kernel-lab: begin {item.nodeid}")
    try:
        outcome = yield
    finally:
        _check_kmsg(item, agent_obj, seq)
    return outcome


def _check_kmsg(item: pytest.Item, agent_obj: Agent, seq: int) -> None:
    from lab.splat import parse

    if not agent_obj.alive():
        return
    try:
        agent_obj.call("sys.kmsg_write", text=f"kernel-lab: end {item.nodeid}")
        records = agent_obj.call("sys.kmsg_read", after_seq=seq)
    except (AgentError, OSError):
        return  # the test's own failure says more than a failed log read
    text = "\n".join(r["text"] for r in records)
    splats = parse(text)
    if not splats:
        return
    item.stash[SPLATS_KEY] = [
        {"kind": s.kind, "title": s.title, "fatal": s.fatal, "frames": list(s.frames),
         "excerpt": s.excerpt} for s in splats
    ]
    excerpt = "\n".join(f"{s.title}\n{s.excerpt}" for s in splats)
    pytest.fail(f"kernel splat during the test:\n{excerpt}", pytrace=False)


SPLATS_KEY = pytest.StashKey[list[dict[str, Any]]]()


# -- verdicts and records ----------------------------------------------------------


def _verdict_hint(call: pytest.CallInfo[None], item: pytest.Item) -> str | None:
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
        k = getattr(item, "funcargs", {}).get("kernel")
        if isinstance(k, Kernel):
            rep.user_properties.append(("lab_kernel", k.identity()))
        claim = item.get_closest_marker("claim")
        if claim is not None and claim.args:
            rep.user_properties.append(("lab_claim", str(claim.args[0])))
    if call.when == "call" and SPLATS_KEY in item.stash:
        rep.user_properties.append(("lab_splats", item.stash[SPLATS_KEY]))
    return rep


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if config is None or hasattr(config, "workerinput") or RUN_DIR_KEY not in config.stash:
        return
    reports = config.stash[REPORTS_KEY].setdefault(report.nodeid, [])
    reports.append(report)
    if report.when == "teardown":
        del config.stash[REPORTS_KEY][report.nodeid]
        results.append_record(config.stash[RUN_DIR_KEY], to_record(report.nodeid, reports))


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config
    session.config.stash[STARTED_KEY] = time.monotonic()


STARTED_KEY = pytest.StashKey[float]()


def to_record(nodeid: str, reports: list[pytest.TestReport]) -> results.Record:
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
    verdict, reason = "PASS", ""
    for rep in reports:
        if rep.skipped:
            verdict = "SKIP"
            longrepr = rep.longrepr
            reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
            reason = reason.removeprefix("Skipped: ")
            break
        if rep.failed:
            if hints:
                verdict = hints[0]
            elif rep.when == "call":
                verdict = "FAIL"
            else:
                verdict = "INFRA"  # a fixture (fetch, boot, agent) failed
            reason = _first_line(rep)
            break
    return results.Record(
        test=nodeid,
        verdict=verdict,
        duration=round(sum(r.duration for r in reports if r.when == "call"), 3),
        kernel=props.get("lab_kernel", {}),
        reason=reason,
        claim=props.get("lab_claim", ""),
        deviations=props["lab_deviation"],
        splats=props.get("lab_splats", []),
        data=props["lab_data"],
    )


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
    summary = results.summarize(run_dir, wall=wall)
    terminalreporter.section("kernel-lab")
    for line in results.summary_lines(summary):
        terminalreporter.write_line(line)
