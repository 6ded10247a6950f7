"""A key pair per guest (lab.vm.ssh.KeyPair): what a VM's directory holds before it boots.
tests/test_isolation_real.py boots two guests and tries one's key on the other."""

from __future__ import annotations

import stat
from pathlib import Path

import paramiko

from lab.kernel.artifact import Kernel
from lab.vm.ssh import KeyPair
from lab.vm.vm import Vm
from tests.keyscan import files_with_private_keys, raw_private

KERNEL = Kernel(spec="debian:7.2", release="7.2.13+deb14-amd64", image=Path("/k/vmlinuz"))


def test_a_key_pair_signs_as_paramiko_and_prints_its_public_half() -> None:
    key = KeyPair()
    assert key.pkey.can_sign() and not key.public.can_sign()
    assert key.public == key.pkey
    kind, b64, comment = key.public_line().split()
    assert (kind, comment) == ("ssh-ed25519", "kernel-lab")
    assert b64 == key.pkey.get_base64()
    assert KeyPair().public != key.public


def test_each_vm_authorizes_its_own_key_and_writes_only_its_host_key(tmp_path: Path) -> None:
    """Two VMs: different client and host keys; each VM's directory authorizes exactly its
    own client key; the only private key on disk is each guest's host key (mode 0600,
    the one its pinned public half belongs to); no client key's private half anywhere."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    vms = [Vm(KERNEL, run_dir=run, cache=cache, name=name) for name in ("a", "b")]
    keys = [vm._prepare_files() for vm in vms]
    (a_client, a_host), (b_client, b_host) = keys
    assert a_client.public != b_client.public and a_host.public != b_host.public
    assert len({k.public.get_base64() for pair in keys for k in pair}) == 4
    for vm, (client, host) in zip(vms, keys, strict=True):
        assert (vm.client_key, vm.host_key) == (client, host)
        assert (vm.vmdir / "authorized_keys").read_text() == client.public_line()
        host_file = vm.vmdir / "ssh_host_ed25519_key"
        assert stat.S_IMODE(host_file.stat().st_mode) == 0o600
        assert paramiko.Ed25519Key.from_private_key_file(str(host_file)) == host.public
    secrets = tuple(raw_private(k) for pair in keys for k in pair)
    on_disk = files_with_private_keys(tmp_path, secrets=secrets)
    assert on_disk == sorted(vm.vmdir / "ssh_host_ed25519_key" for vm in vms)
    # And the scan finds a client key were it written (the check can fail).
    a_client.write_private(tmp_path / "leak")
    assert tmp_path / "leak" in files_with_private_keys(tmp_path, secrets=secrets)
    (tmp_path / "raw").write_bytes(b"x" + raw_private(b_client) + b"y")
    assert tmp_path / "raw" in files_with_private_keys(tmp_path, secrets=secrets)


def test_a_boot_makes_new_keys(tmp_path: Path) -> None:
    """A guest booted again in the same Vm is a new boot: its keys are new too."""
    vm = Vm(KERNEL, run_dir=tmp_path, cache=tmp_path / "cache", name="again")
    first = vm._prepare_files()
    second = vm._prepare_files()
    assert first[0].public != second[0].public and first[1].public != second[1].public
    assert (vm.vmdir / "authorized_keys").read_text() == second[0].public_line()
