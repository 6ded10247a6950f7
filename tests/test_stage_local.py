"""The agent's push on the host: the archive sent on the start command's stdin, checked by
its SHA-256 before it is unpacked (lab.vm.stage, guest.zygote.unpack), run by a local shell
instead of the guest's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lab.vm.stage import archive, stage, start_command

NO_ZYGOTE = "/nonexistent/zygote.sock"  # the channel's own path: no zygote takes it


def _run(command: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", command], input=stdin, capture_output=True,
                          timeout=120, check=False)


def test_the_pushed_archive_is_verified_unpacked_and_started(tmp_path: Path) -> None:
    staged = stage(tmp_path / "cache")
    data = archive(staged)
    remote = tmp_path / "guest-run" / "agent-x"
    ping = b'{"id": 1, "op": "agent.ping", "args": {}}\n'
    res = _run(start_command(str(remote), data, handoff=staged / "handoff", zygote=NO_ZYGOTE),
               data + ping)
    lines = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert lines[0]["hello"]["protocol"] == 1 and "error" not in lines[0]["hello"]
    assert lines[1] == {"id": 1, "ok": True, "value": "pong", "elapsed_ns": lines[1]["elapsed_ns"]}
    assert (remote / "guest" / "protocol.py").is_file()


def test_an_archive_changed_on_the_way_never_runs(tmp_path: Path) -> None:
    staged = stage(tmp_path / "cache")
    data = archive(staged)
    changed = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
    remote = tmp_path / "guest-run" / "agent-x"
    res = _run(start_command(str(remote), data, handoff=staged / "handoff", zygote=NO_ZYGOTE),
               changed)
    assert res.returncode == 1
    assert json.loads(res.stdout)["hello"]["error"] == "agent archive differs after push"
    assert b"agent.tar: FAILED" in res.stderr  # guest.zygote.unpack's complaint
    assert not (remote / "guest").exists()  # nothing of it was unpacked


def test_one_function_verifies_and_unpacks_whoever_takes_the_channel(tmp_path: Path) -> None:
    """The channel's shell only hands the archive to guest/zygote.py's ``unpack``: it
    neither checks nor unpacks anything itself."""
    staged = stage(tmp_path / "cache")
    command = start_command("/run/x", archive(staged), handoff=staged / "handoff")
    assert "zygote.py --unpack" in command
    assert not {"sha256sum", "tar", "head"} & set(command.replace(";", " ").split())


def test_the_unpack_mode_refuses_a_short_archive(tmp_path: Path) -> None:
    staged = stage(tmp_path / "cache")
    data = archive(staged)
    remote = tmp_path / "guest-run" / "agent-x"
    res = _run(start_command(str(remote), data, handoff=tmp_path / "no-handoff"), data[:-512])
    assert res.returncode == 1
    assert json.loads(res.stdout)["hello"]["error"] == "agent archive differs after push"
    assert f"read {len(data) - 512} of {len(data)} bytes".encode() in res.stderr
    assert not remote.exists()


def test_without_the_handoff_helper_the_channel_still_starts_the_agent(tmp_path: Path) -> None:
    staged = stage(tmp_path / "cache")
    data = archive(staged)
    remote = tmp_path / "guest-run" / "agent-x"
    ping = b'{"id": 1, "op": "agent.ping", "args": {}}\n'
    res = _run(start_command(str(remote), data, handoff=tmp_path / "missing-handoff"), data + ping)
    lines = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert lines[0]["hello"]["zygote"] is False and lines[1]["value"] == "pong"
