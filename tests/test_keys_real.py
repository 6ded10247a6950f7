"""A key pair per guest, in real guests: two running at once, neither takes the other's key.

lab.vm.ssh.KeyPair; tests/test_vm_keys.py checks what a VM's directory holds without a boot.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from lab.kernel.resolve import resolve_kernel
from lab.paths import cache_root
from lab.vm.ssh import KeyPair
from lab.vm.vm import Vm, VmConfig
from tests.keyscan import files_with_private_keys, raw_private

pytestmark = [pytest.mark.vm, pytest.mark.network]

# Single-threaded TCG, as tests/test_vm_real.py boots a bare Vm (no Machine to boot again
# after multi-threaded TCG's rare early-boot oops); the keys do not depend on it.
CFG = VmConfig(accel="tcg-single")


def _login(port: int, *, key: KeyPair, host_key: KeyPair) -> str:
    """One SSH login as root with ``key``, ``host_key`` pinned: the guest's hostname."""
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
        tmp_path: Path) -> None:
    """Two guests at once: each authorizes exactly its own client key, refuses the other's
    (paramiko's AuthenticationException from its sshd) and presents only its own host key;
    no file the lab wrote (run directory, VM directories, the VMs' cache) holds a private
    key but each guest's host key, and none is left once the guests are gone."""
    kernel = resolve_kernel("debian:7.2", cache=cache_root())
    run = tmp_path / "run"
    vms = [Vm(kernel, run_dir=run, cache=tmp_path / "cache", config=CFG, name=name)
           for name in ("a", "b")]
    with contextlib.ExitStack() as stack:
        for vm in vms:
            stack.callback(vm.stop)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda vm: vm.start(), vms))  # both boot at once
        a, b = vms
        assert a.client_key and a.host_key and b.client_key and b.host_key
        assert a.ssh is not None and b.ssh is not None
        for vm in vms:
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
        assert files_with_private_keys(tmp_path, secrets=secrets) == sorted(
            vm.vmdir / "ssh_host_ed25519_key" for vm in vms)
    assert files_with_private_keys(tmp_path, secrets=secrets) == []
