"""The QEMU/virtme-ng command line the lab builds, and the guest facts it parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.vm.vm import cpu_count, qemu_opts
from lab.vm.vmconfig import DEFAULT_KERNEL_ARGS, VmConfig


@pytest.mark.parametrize(("online", "count"), [("0", 1), ("0-1", 2), ("0-1,3", 3),
                                                ("0,2-5\n", 5)])
def test_cpu_count_reads_sysfs_cpu_lists(online: str, count: int) -> None:
    assert cpu_count(online) == count


def test_one_cpu_per_socket_so_the_mp_table_lists_every_cpu() -> None:
    opts = qemu_opts(VmConfig(cpus=3, accel="tcg"), vmdir=Path("/v"), port=2222)
    assert opts[opts.index("-smp") + 1] == "3,sockets=3,cores=1,threads=1"
    assert "-no-reboot" in opts
    assert "user,id=lab0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22" in opts



def test_the_init_path_puts_the_vms_noop_tmpfiles_first(tmp_path: Path) -> None:
    """virtme-ng-init finds `systemd-tmpfiles` on the PATH the kernel hands it: the VM's
    directory of no-ops comes first, the standard directories (the initramfs's) after."""
    import subprocess

    from lab.vm.vm import INIT_PATH_TAIL, NOOP_DIR, virtme_argv, write_noops

    argv = virtme_argv(Path("/k/vmlinuz"), VmConfig(), vmdir=tmp_path, port=2222)
    appended = [argv[i + 1] for i, a in enumerate(argv) if a == "--kopt"]
    paths = [a for a in appended if a.startswith("PATH=")]
    assert paths == [f"PATH={tmp_path / NOOP_DIR}:{INIT_PATH_TAIL}"]
    write_noops(tmp_path / NOOP_DIR)
    # The init's lookup, done by a shell with that PATH, finds the no-op, and it succeeds
    # without doing anything.
    found = subprocess.run(["sh", "-c", "command -v systemd-tmpfiles && systemd-tmpfiles "
                            "--create --boot --exclude-prefix=/dev"],
                           env={"PATH": paths[0].removeprefix("PATH=")},
                           capture_output=True, text=True, check=True)
    assert found.stdout.strip() == str(tmp_path / NOOP_DIR / "systemd-tmpfiles")
    # udev's coldplug and settle, which the init runs when the host has udevd, likewise.
    udevadm = subprocess.run(["sh", "-c", "command -v udevadm && udevadm settle --timeout=300"],
                             env={"PATH": paths[0].removeprefix("PATH=")},
                             capture_output=True, text=True, check=True)
    assert udevadm.stdout.strip() == str(tmp_path / NOOP_DIR / "udevadm")


def test_the_kernel_keeps_its_name_for_the_nic() -> None:
    """Where the host's udevd runs in the guest, it must not rename the NIC (boot.sh finds
    it by driver anyway: tests/test_vm_real.py)."""
    from lab.vm.vm import virtme_argv

    argv = virtme_argv(Path("/k/vmlinuz"), VmConfig(), vmdir=Path("/v"), port=2222)
    appended = [argv[i + 1] for i, a in enumerate(argv) if a == "--kopt"]
    assert "net.ifnames=0" in appended


def test_every_guest_has_a_log_buffer_a_flood_of_reports_does_not_overrun() -> None:
    """Prebuilt and built kernels alike (tests/test_logbuf_real.py floods one for real)."""
    from lab.kernel.artifact import Kernel
    from lab.vm.session import kernel_args
    from lab.vm.vm import virtme_argv

    argv = virtme_argv(Path("/k/vmlinuz"), VmConfig(), vmdir=Path("/v"), port=2222)
    appended = [argv[i + 1] for i, a in enumerate(argv) if a == "--kopt"]
    assert "log_buf_len=8M" in appended
    debian = Kernel(spec="debian:7.2", release="7.2.13+deb14-amd64", image=Path("/k/vmlinuz"))
    assert "log_buf_len=8M" in kernel_args(debian, [])


def test_boot_sh_takes_the_noops_off_its_own_path(tmp_path: Path) -> None:
    """guest/boot.sh's first lines, run by a shell with the init's PATH: what it runs
    later is looked up in the standard directories only."""
    import subprocess

    from lab.paths import GUEST_DIR
    from lab.vm.vm import INIT_PATH_TAIL, NOOP_DIR

    lines = (GUEST_DIR / "boot.sh").read_text().splitlines()
    head = "\n".join(lines[:lines.index('PATH=${PATH#"$VMDIR/noop-bin:"}') + 1])
    out = subprocess.run(["sh", "-c", head + '\necho "$PATH"', "boot.sh", str(tmp_path)],
                         env={"PATH": f"{tmp_path / NOOP_DIR}:{INIT_PATH_TAIL}"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == INIT_PATH_TAIL
    assert NOOP_DIR == "noop-bin"  # the name boot.sh strips


def test_qemu_is_started_by_virtme_run_with_an_argv_list_never_a_shell(tmp_path: Path) -> None:
    """vng joins its options into one string for a shell; the lab calls virtme-run with a
    list, so a value reaches QEMU as one argument whatever it holds (the values are also
    checked where they are made: tests/test_options.py)."""
    from lab.vm.vm import virtme_argv

    argv = virtme_argv(Path("/k/vmlinuz"), VmConfig(), vmdir=Path("/v"), port=2222,
                       export=Path("/v/export"))
    assert Path(argv[0]).name == "virtme-run"
    assert argv[argv.index("--memory") + 1] == "2G"
    assert argv[argv.index("--root") + 1] == "/v/export"
    opts = argv[argv.index("--qemu-opts") + 1:]
    fsdev = opts[opts.index("-fsdev") + 1]
    assert "path=/v/export," in fsdev  # the cached view exports the same tree
    netdev = opts[opts.index("-netdev") + 1]
    assert "restrict=on" in netdev
    open_net = virtme_argv(Path("/k/vmlinuz"), VmConfig(), vmdir=Path("/v"), port=2222,
                           restrict=False)
    assert "--root" not in open_net and all("restrict" not in a for a in open_net)


# What a VmConfig built in code (not through lab.options' options) may not hold: each
# would reach QEMU's command line, and virtme-ng handed some of it to a shell.
BAD_CONFIGS = [
    {"memory": "2G;touch X"}, {"memory": "2G touch"}, {"memory": "$(reboot)"},
    {"memory": "128M"}, {"memory": 2048},
    {"cpus": 0}, {"cpus": 65}, {"cpus": "2;touch X"}, {"cpus": 2.5}, {"cpus": True},
    {"kernel_args": ("quiet;touch X",)}, {"kernel_args": ("a $(touch X)",)},
    {"kernel_args": ("a`touch X`",)}, {"kernel_args": ("a$(touch${IFS}X)",)},
    {"kernel_args": ("nokaslr", "")}, {"kernel_args": ("a\nb",)}, {"kernel_args": ("-a",)},
    {"boot_timeout": 0}, {"boot_timeout": -1.0}, {"boot_timeout": float("nan")},
    {"ssh_port": 0}, {"ssh_port": 65536}, {"ssh_port": "22;x"},
]


@pytest.mark.parametrize("bad", BAD_CONFIGS, ids=[repr(b) for b in BAD_CONFIGS])
def test_a_config_built_in_code_is_checked_as_the_options_are(bad: dict[str, object]) -> None:
    from lab.errors import UserError

    with pytest.raises(UserError) as exc:
        VmConfig(**bad)  # type: ignore[arg-type]
    assert "\n" not in str(exc.value)
    # The options' own wording (lab.options), naming the option a user would have given.
    (name,) = bad
    flag = {"kernel_args": "--append", "ssh_port": "--ssh-port",
            "boot_timeout": "--boot-timeout"}.get(name, f"--{name}")
    assert str(exc.value).startswith(f"{flag} ")


def test_a_config_keeps_what_the_options_take() -> None:
    cfg = VmConfig(cpus="3", memory=" 4G ", ssh_port=2222,  # type: ignore[arg-type]
                   boot_timeout=60, kernel_args=("nokaslr", "console=ttyS0,115200"))
    assert (cfg.cpus, cfg.memory, cfg.ssh_port, cfg.boot_timeout) == (3, "4G", 2222, 60.0)
    assert VmConfig().kernel_args == DEFAULT_KERNEL_ARGS


@pytest.mark.parametrize(("spec", "message"), [
    (("fast;x", "s0", 1), "NVMe role 'fast;x'"), (("fast", "s 0", 1), "NVMe serial 's 0'"),
    (("fast", "", 1), "NVMe serial ''"), (("fast", "s" * 21, 1), "NVMe serial"),
    (("fast", "s0", 0), "NVMe fast size 0"), (("fast", "s0", "1G"), "NVMe fast size '1G'"),
    (("fast", "s0", 1, 0), "NVMe fast iops_limit 0"),
    (("fast", "s0", 1, "25;x"), "NVMe fast iops_limit '25;x'"),
])
def test_an_nvme_spec_is_plain_names_and_positive_numbers(spec: tuple[object, ...],
                                                          message: str) -> None:
    from lab.errors import UserError
    from lab.vm.vmconfig import NvmeSpec

    with pytest.raises(UserError, match=re.escape(message)):
        NvmeSpec(*spec)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="NVMe roles"):
        VmConfig(nvme=(NvmeSpec("fast", "a0", 1), NvmeSpec("fast", "b0", 1)))
    with pytest.raises(UserError, match="NVMe serials"):
        VmConfig(nvme=(NvmeSpec("fast", "a0", 1), NvmeSpec("slow", "a0", 1)))
