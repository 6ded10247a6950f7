"""A test's requirements decided before its fixtures touch the guest: ``requires_config``
(every marker on the test, its class and its module, together)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from labrun import lab_run

from lab.kernel.resolve import resolve_kernel
from lab.paths import cache_root

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

pytestmark = pytest.mark.vm  # a real kernel image and `lab run`; no boot when all is well


def _debian_without(tmp_path: Path, option: str) -> Path:
    """Debian's 7.2 image, handed over as a bare image with a config beside it (as a
    kernel developer keeps one) that turns ``option`` off."""
    k = resolve_kernel("debian:7.2", cache=cache_root())
    assert k.config is not None and k.config_option(option) is not None
    image = tmp_path / "kernel" / "vmlinuz"
    image.parent.mkdir()
    shutil.copy2(k.image, image)
    lines = [f"# CONFIG_{option} is not set" if line.startswith(f"CONFIG_{option}=") else line
             for line in k.config.read_text().splitlines()]
    (image.parent / f"config-{k.release}").write_text("\n".join(lines) + "\n")
    return image


def test_a_function_s_requirement_adds_to_its_module_s(tmp_path: Path) -> None:
    """test_multishot_nobufs.py requires IO_URING and BLK_DEV_UBLK (two module markers):
    a kernel without ublk SKIPs both of its tests, without a boot (seen: FAIL twice,
    "Module ublk_drv not found", when only the first marker counted)."""
    image = _debian_without(tmp_path, "BLK_DEV_UBLK")
    res = lab_run(tmp_path, "--boot-timeout", "60", "--",
                  "scenarios/uring/test_multishot_nobufs.py", kernel=str(image))
    recs = res.records()
    assert len(recs) == 2 and {r["verdict"] for r in recs} == {"SKIP"}, res.out[-3000:]
    assert all("lacks CONFIG_BLK_DEV_UBLK" in r["reason"] for r in recs), recs
    phases = [json.loads(x)["phase"]
              for x in (res.run_dir / "phases.jsonl").read_text().splitlines()]
    assert "boot" not in phases, phases
    assert res.returncode == 4, res.out[-3000:]  # nothing was tested



def test_a_suite_s_requirement_covers_every_test_of_it(tmp_path: Path) -> None:
    """scenarios/aio/conftest.py says once that the suite needs CONFIG_AIO (it was a
    marker pasted into each of its 13 files): a kernel without it SKIPs every test of
    the suite, each with the config's reason, without a boot."""
    image = _debian_without(tmp_path, "AIO")
    res = lab_run(tmp_path, "--boot-timeout", "60", "--suite", str(SCENARIOS / "aio"),
                  kernel=str(image))
    recs = res.records()
    files = {r["test"].split("::")[0] for r in recs}
    assert len(files) == len(list(SCENARIOS.glob("aio/test_*.py"))), files
    assert {r["verdict"] for r in recs} == {"SKIP"}, res.out[-3000:]
    assert all("lacks CONFIG_AIO" in r["reason"] for r in recs), recs[0]["reason"]
    phases = [json.loads(x)["phase"]
              for x in (res.run_dir / "phases.jsonl").read_text().splitlines()]
    assert "boot" not in phases, phases
    assert res.returncode == 4, res.out[-3000:]

SUITE = '''
from pathlib import Path

import pytest


@pytest.fixture
def io(agent, request):
    Path(__file__).with_name(request.node.originalname + ".ran").write_text("the fixture ran")
    agent.call("sys.uname")


@pytest.mark.requires_feature("!uring_cmd")
def test_only_without_uring_cmd(agent, io):
    pass


@pytest.mark.requires_feature("uring_cmd")
def test_with_uring_cmd(agent, io):
    pass
'''


def test_a_feature_is_probed_before_the_test_s_fixtures(tmp_path: Path) -> None:
    """debian:7.2 has IORING_OP_URING_CMD: a test for kernels without it SKIPs, by the
    probe's answer, before its fixture does anything (seen: test_before_multishot wrote to
    NVMe, then skipped in its body, 4 times a run); one for kernels with it runs."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_probed.py").write_text(SUITE)
    res = lab_run(tmp_path, "--suite", str(suite))
    recs = {r["test"].split("::")[1].split("[")[0]: r for r in res.records()}
    skipped, ran = recs["test_only_without_uring_cmd"], recs["test_with_uring_cmd"]
    assert skipped["verdict"] == "SKIP", res.out[-3000:]
    assert skipped["reason"].startswith("not applicable: debian:7.2") and \
        "has uring_cmd (probed: IORING_REGISTER_PROBE" in skipped["reason"], skipped["reason"]
    assert not (suite / "test_only_without_uring_cmd.ran").exists()
    assert skipped["data"]["features"] == {"uring_cmd": True}, skipped["data"]
    assert ran["verdict"] == "PASS", res.out[-3000:]
    assert (suite / "test_with_uring_cmd.ran").exists()
