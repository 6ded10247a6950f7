"""What a real guest can read and reach of the host: the lab's walls (lab.vm.sandbox), each
escape tried from inside a guest booted as every run boots them, and the same tries from a
guest with the walls down (``sandbox.OFF``), which must succeed: the control that shows each
try would see an escape.

Two guests run at once, so "another guest's SSH port" is a real one, and each one's key
pair is tried on the other (lab.vm.ssh.KeyPair; tests/test_vm_keys.py checks what a VM's
directory holds without a boot)."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import paramiko
import pytest

from lab.kernel.resolve import resolve_kernel
from lab.paths import cache_root
from lab.vm import sandbox
from lab.vm import vm as vm_mod
from lab.vm.hostroot import MOUNTPOINT
from lab.vm.ssh import KeyPair
from lab.vm.vmconfig import VmConfig
from tests.hostuser import normal_user
from tests.keyscan import files_with_private_keys, raw_private

pytestmark = [pytest.mark.vm, pytest.mark.network]

CFG = VmConfig(accel="tcg-single")  # as tests/test_vm_real.py says why
TOKEN = secrets.token_hex(12)


class Listener:
    """A TCP listener on the host that records every connection it accepts."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        self.sock.bind((address, 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.address, self.port = address, self.sock.getsockname()[1]
        self.accepted: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(peer)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _outside_address() -> str | None:
    """The host's address on its way out (a UDP socket's source: no packet is sent), as
    an outside machine the guest might reach; None on a host with no route out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Files holding TOKEN where a guest must not read them: root's home, another user's
    home (world-readable there), the lab's cache, another run's directory, /etc (0600, as
    the shadow file), the host's /run."""
    user = normal_user()
    places = [Path.home() / f".kernel-lab-canary-{os.getpid()}",
              user.home / f"kernel-lab-canary-{os.getpid()}",
              cache_root() / f"canary-{os.getpid()}",
              tmp_path_factory.mktemp("other-run") / "canary",
              Path(f"/etc/kernel-lab-canary-{os.getpid()}"),
              Path(f"/run/kernel-lab-canary-{os.getpid()}")]
    made = []
    try:
        for path in places:
            try:
                path.write_text(TOKEN)
            except OSError:
                continue  # not writable here (not root): fewer canaries
            os.chmod(path, 0o600 if path.parent == Path("/etc") else 0o644)
            made.append(path)
        yield made
    finally:
        for path in made:
            path.unlink()


@pytest.fixture(scope="module")
def guests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[vm_mod.Vm, vm_mod.Vm]]:
    """The lab's guest (the host's walls) and the control (walls down), booted at once."""
    if not sandbox.host_isolation().files:
        pytest.fail(f"this host refuses the guest's tree: {sandbox.host_isolation().reason}")
    cache = cache_root()
    kernel = resolve_kernel("debian:7.2", cache=cache)
    run_dir = tmp_path_factory.mktemp("isolation")
    walled = vm_mod.Vm(kernel, run_dir=run_dir, cache=cache, config=CFG, name="walled")
    control = vm_mod.Vm(kernel, run_dir=run_dir, cache=cache, config=CFG, name="control",
                        isolation=sandbox.OFF)
    with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        for vm in (walled, control):
            stack.callback(vm.stop)
        for fut in [pool.submit(vm.start) for vm in (walled, control)]:
            fut.result()
        yield walled, control


def _sh(vm: vm_mod.Vm, script: str) -> str:
    assert vm.ssh is not None
    res = vm.ssh.run(["/bin/sh", "-c", script], timeout=120)
    return res.stdout + res.stderr


def _reads(vm: vm_mod.Vm, paths: list[Path]) -> str:
    """What the guest gets reading each path where the host has it, directly and through
    the cached view of the host's export."""
    return _sh(vm, "; ".join(f"cat {p} {MOUNTPOINT}{p}" for p in paths) + "; true")


def test_the_guest_reads_none_of_the_hosts_secrets(
        guests: tuple[vm_mod.Vm, vm_mod.Vm], canaries: list[Path]) -> None:
    walled, control = guests
    assert len(canaries) >= 4, canaries
    assert walled.isolation is not None and walled.isolation.files
    seen = _reads(walled, canaries)
    assert TOKEN not in seen
    # The control reads every one of them: each try above would have seen an escape.
    for path in canaries:
        assert TOKEN in _reads(control, [path]), path


def test_the_guests_shadow_and_proc_are_not_the_hosts(
        guests: tuple[vm_mod.Vm, vm_mod.Vm]) -> None:
    """The password hashes (the lab's shadow locks every account) and the host's /proc
    (other processes' environments, /proc/kcore: the host kernel's memory)."""
    walled, control = guests
    shadow = _sh(walled, f"cat /etc/shadow {MOUNTPOINT}/etc/shadow")
    hashes = {line.split(":")[1] for line in shadow.splitlines() if line.count(":") >= 8}
    assert hashes and hashes <= {"!", "unusable"}, shadow
    probe = f"ls {MOUNTPOINT}/proc | wc -l"
    assert _sh(walled, probe).split() == ["0"]  # an empty mount point
    assert int(_sh(control, probe).split()[0]) > 10  # the host's processes, walls down


def _connect(vm: vm_mod.Vm, address: str, port: int) -> str:
    """"connected" or why not, from a socket in the guest (5 s timeout)."""
    return _sh(vm, "python3 -c \"import socket\ntry:\n socket.create_connection(("
                   f"'{address}', {port}), timeout=5); print('connected')\n"
                   "except OSError as e: print('refused', e)\"").strip()


def test_the_guest_reaches_nothing_over_ipv6(guests: tuple[vm_mod.Vm, vm_mod.Vm]) -> None:
    """QEMU's user network shows the host's loopback as fec0::2 too."""
    walled, control = guests
    try:
        loopback = Listener("::1")
    except OSError as exc:
        pytest.skip(f"this host has no IPv6 loopback to listen on: {exc}")
    try:
        assert _connect(walled, "fec0::2", loopback.port).startswith("refused")
        assert not loopback.accepted
        assert _connect(control, "fec0::2", loopback.port) == "connected"
    finally:
        loopback.close()


def test_the_guests_return_code_port_fills_no_host_disk(
        guests: tuple[vm_mod.Vm, vm_mod.Vm]) -> None:
    """virtme-ng gives the guest a port (virtme.ret) that QEMU writes to a host file: behind
    the walls, a tmpfs of the namespace's (lab.vm.sandbox.TMP_BYTES), so a guest writing
    without end blocks there and nothing reaches the host's disk; the control's lands in
    its VM directory (under the file-size limit)."""
    find = ("for d in /sys/class/virtio-ports/*; do [ \"$(cat $d/name)\" = virtme.ret ] && "
            "p=/dev/${d##*/}; done; ")
    walled, control = guests
    _sh(walled, find + f"timeout 5 head -c {sandbox.TMP_BYTES + (8 << 20)} /dev/zero > $p")
    assert _sh(walled, "echo alive").strip() == "alive"
    assert sum(f.stat().st_size for f in (walled.vmdir / sandbox.TMP_DIR).iterdir()) == 0
    _sh(control, find + "head -c 3000000 /dev/zero > $p")
    landed = [f.stat().st_size for f in (control.vmdir / sandbox.TMP_DIR).iterdir()
              if f.name.startswith("virtme_ret")]
    assert landed and max(landed) >= 3000000


def test_the_guest_reaches_no_host_service_no_guest_and_nothing_outside(
        guests: tuple[vm_mod.Vm, vm_mod.Vm]) -> None:
    walled, control = guests
    loopback = Listener("127.0.0.1")  # a service of the host's own, on its loopback
    outside = _outside_address()
    away = Listener(outside) if outside else None
    try:
        # QEMU's user network shows the host's loopback as 10.0.2.2.
        targets = [("10.0.2.2", loopback.port, "the host's 127.0.0.1")]
        if away is not None:
            targets.append((away.address, away.port, "an outside address"))
        else:
            pytest.fail("this host has no route out: an outside address cannot be tried")
        for address, port, what in targets:
            assert _connect(walled, address, port).startswith("refused"), what
        assert _connect(walled, "10.0.2.2", control.port).startswith("refused")
        assert not loopback.accepted and not (away and away.accepted)
        # The control reaches each: the walled guest's tries would have seen a way out.
        for address, port, what in targets:
            assert _connect(control, address, port) == "connected", what
        assert _connect(control, "10.0.2.2", walled.port) == "connected"
        assert loopback.accepted
    finally:
        loopback.close()
        if away is not None:
            away.close()


def test_the_guests_own_work_goes_on_behind_the_walls(
        guests: tuple[vm_mod.Vm, vm_mod.Vm]) -> None:
    """The agent starts from its pushed archive and calls the kernel (the suites run
    behind the same walls in every other real test)."""
    from lab.vm.agent import Agent

    walled, _ = guests
    assert walled.ssh is not None
    agent = Agent.start(walled.ssh, cache=cache_root(), slowdown=walled.cfg.slowdown,
                        timeline=walled.timeline)
    try:
        assert agent.call("agent.ping") == "pong"
        assert "kernel-lab-root" in _sh(walled, "cat /proc/self/mountinfo")  # cached view
    finally:
        agent.close()


def _login(port: int, *, key: KeyPair, host_key: KeyPair) -> str:
    """One SSH login as root with ``key``, ``host_key`` pinned: the guest's boot id."""
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[127.0.0.1]:{port}", "ssh-ed25519", host_key.public)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect("127.0.0.1", port=port, username="root", pkey=key.pkey,
                       allow_agent=False, look_for_keys=False, timeout=10,
                       banner_timeout=60, auth_timeout=60)
        _, out, _ = client.exec_command("cat /proc/sys/kernel/random/boot_id")
        return str(out.read().decode().strip())
    finally:
        client.close()


def test_a_guest_refuses_another_guests_key_and_no_client_key_touches_disk(
        guests: tuple[vm_mod.Vm, vm_mod.Vm]) -> None:
    """Each guest authorizes exactly its own client key, refuses the other's (paramiko's
    AuthenticationException from its sshd) and presents only its own host key; no file
    the lab wrote for them (the run directory, the VM directories, virtme-ng's home in the
    cache) holds a private key but each guest's host key."""
    a, b = guests
    assert a.client_key and a.host_key and b.client_key and b.host_key
    for vm in guests:
        assert vm.client_key and vm.ssh
        authorized = vm.ssh.run(["cat", f"{vm.vmdir}/authorized_keys"]).stdout
        assert authorized == vm.client_key.public_line()
    # Each login with the guest's own key works, before and after the refusals.
    boot_a = _login(a.port, key=a.client_key, host_key=a.host_key)
    boot_b = _login(b.port, key=b.client_key, host_key=b.host_key)
    assert boot_a != boot_b
    with pytest.raises(paramiko.AuthenticationException):
        _login(b.port, key=a.client_key, host_key=b.host_key)
    with pytest.raises(paramiko.AuthenticationException):
        _login(a.port, key=b.client_key, host_key=a.host_key)
    # The host key is pinned per boot: the other guest's is not accepted for this one.
    with pytest.raises(paramiko.BadHostKeyException):
        _login(b.port, key=b.client_key, host_key=a.host_key)
    assert _login(b.port, key=b.client_key, host_key=b.host_key) == boot_b
    secrets = tuple(raw_private(k) for k in (a.client_key, b.client_key))
    run_dir = a.vmdir.parent  # both guests' run directory
    found = files_with_private_keys(run_dir, secrets=secrets)
    assert found == sorted(vm.vmdir / "ssh_host_ed25519_key" for vm in guests)
    assert files_with_private_keys(cache_root() / "vng-home", secrets=secrets) == []
