"""A QEMU guest booted through virtme-ng, as a context manager.

Leaving the ``with`` block (normally, by exception or by Ctrl-C) always ends
QEMU and removes the VM's temporary files; ``lab.reaper`` ends it even when
the lab itself is killed.  The guest gets an allow-listed tree of the host read-only
over 9p (lab.vm.sandbox), 2 vCPUs, restricted user networking with SSH forwarded from
127.0.0.1, and two emulated NVMe controllers backed by sparse files: a fast one for
functional tests and a throttled one where I/O is slow enough to be observed in flight.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lab import proc
from lab.errors import InfraError, UserError
from lab.kernel.artifact import Kernel
from lab.paths import GUEST_DIR
from lab.vm import hostroot, sandbox, vmcore
from lab.vm import qmp as qmp_mod
from lab.vm.qmp import Qmp, QmpError
from lab.vm.ssh import ExecResult, KeyPair, Running, Ssh, free_port, port_is_free
from lab.vm.stage import REMOTE_BASE, staged_root
from lab.vm.timeline import Timeline
from lab.vm.vmconfig import VmConfig

log = logging.getLogger("lab.vm.vm")

GUEST_BOOT = GUEST_DIR / "boot.sh"
PORT_ATTEMPTS = 3
# Paths that reach QEMU's option syntax (a comma starts a new option), the kernel's command
# line (a space a new parameter) and virtme-ng's module unpacking (a shell command for a
# .ko.zst module) stay plain.
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@%=-]+$")
# virtme-ng-init runs the host's `systemd-tmpfiles --create --boot` before the lab's
# script: it makes the host's services' runtime files in the guest, over the uncached
# 9p root.  That took 2.2 s of a boot alone under TCG and 12.5 s with two guests
# booting at once (tmpfiles -> "basic initialization done").  The guest runs none of
# those services (boot.sh makes what sshd needs), so the init's PATH, which the kernel
# hands it from its command line, starts with a directory of the VM's own where that
# name is `true`.  The standard directories follow it: the initramfs's /init uses the
# same PATH, before the VM's directory is reachable.  guest/boot.sh takes the VM's
# directory off its PATH again and makes the two directories of /run it still uses.
#
# On a host with udev (every systemd host) the init also starts the host's
# systemd-udevd, then runs `udevadm trigger` (coldplug: every device's rules, module
# loads by alias) and `udevadm settle` (seconds under TCG: 7 s seen).  The guest needs
# none of it (boot.sh loads its drivers and stops udevd before it does), so `udevadm`
# is a no-op too; the init finds udevd itself by fixed paths, so that still starts.
NOOP_DIR = "noop-bin"
NOOPS = ("systemd-tmpfiles", "udevadm")
INIT_PATH_TAIL = "/usr/sbin:/usr/bin:/sbin:/bin"

# A dump's headers and notes beyond the guest's memory (lab.vm.vm._max_file_bytes).
DUMP_SLACK = 64 << 20

# The console events (lab.vm.timeline) after which the guest answers SSH at once.
SSH_READY_EVENTS = ("sshd", "network", "sshd listening")

@dataclass(frozen=True)
class NvmeDevice:
    """Where an emulated controller showed up in the guest."""

    role: str
    serial: str
    ctrl: str  # /dev/nvme0 (admin passthrough)
    ns: str  # /dev/nvme0n1 (block device)
    generic: str  # /dev/ng0n1 (I/O passthrough)


def cpu_count(online: str) -> int:
    """CPUs in a sysfs CPU list: "0-1,3" -> 3."""
    total = 0
    for part in online.strip().split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


def qemu_opts(cfg: VmConfig, *, vmdir: Path, port: int, export: Path | None = None,
              restrict: bool = True, qmp_socket: Path | None = None,
              gdb_socket: Path | None = None) -> list[str]:
    """QEMU arguments the lab adds to virtme-ng's, one device per group."""
    # A panicking guest reboots (virtme-ng passes panic=-1): exit instead, so a dead
    # kernel is seen as a dead QEMU and never silently boots again.
    opts: list[str] = ["-no-reboot"]
    if cfg.accel == "tcg-single":
        # The vCPUs take turns on one host thread: two guest threads are seldom inside
        # the kernel at the same instant (race tests then rarely race).
        opts += ["-accel", "tcg,thread=single"]
    elif cfg.accel == "tcg":
        # One host thread per vCPU, so guest threads really run at once.  An early-boot
        # oops while the kernel patches its own text was seen once under it (int3 in
        # sched_clock_cpu); lab.vm.session boots such a kernel again single-threaded.
        opts += ["-accel", "tcg,thread=multi"]
    # One CPU per socket.  QEMU's default puts all vCPUs in one socket, and the MP
    # table SeaBIOS writes lists only the first CPU of each socket: a kernel without
    # ACPI (the lab's base config) would come up with one CPU.  The same topology
    # for every kernel keeps Debian's and built kernels comparable.
    opts += ["-smp", f"{cfg.cpus},sockets={cfg.cpus},cores=1,threads=1"]
    # User networking, restricted: the forwarded SSH port comes in (from 127.0.0.1 only);
    # nothing goes out: not to the host (10.0.2.2 is its loopback), not to other guests'
    # forwarded ports, not to the internet.
    opts += ["-netdev", f"user,id=lab0,{'restrict=on,' if restrict else ''}"
                        f"hostfwd=tcp:127.0.0.1:{port}-:22"]
    opts += ["-device", "virtio-net-pci,netdev=lab0"]
    opts += hostroot.qemu_opts(export)  # what boot.sh mounts cached (lab.vm.hostroot)
    for i, nvme in enumerate(cfg.nvme):
        drive = f"file={vmdir / f'nvme-{nvme.role}.img'},if=none,id=nvm{i},format=raw"
        if nvme.iops_limit is not None:
            drive += f",throttling.iops-total={nvme.iops_limit}"
        opts += ["-drive", drive, "-device", f"nvme,serial={nvme.serial},drive=nvm{i}"]
    if qmp_socket is not None:
        # The lab's control of the machine (lab.vm.qmp): pause it, dump its memory.
        opts += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    if cfg.dump:
        # Where the guest's kernel writes its VMCOREINFO note (through its fw_cfg driver,
        # which guest/boot.sh loads), so a dump carries it: drgn and crash need it to
        # read the dump as a kernel's.
        opts += ["-device", "vmcoreinfo"]
    if gdb_socket is not None:
        # QEMU's gdbstub (--gdb) on a unix socket in a directory only the lab's user may
        # enter: a TCP port, even on loopback, would let every local user in, and the
        # stub passes `monitor` commands to QEMU's human monitor (which can run a
        # program as the lab's user).  lab.vm.gdbstub prints how to attach.
        opts += ["-gdb", f"unix:{gdb_socket},server=on,wait=off"]
    return opts


def write_noops(directory: Path) -> None:
    """The init's no-ops (NOOPS) in ``directory``: links to the host's `true`, which
    the guest sees where the host does (not under /run: the guest's is its own)."""
    true = "/bin/true" if os.path.exists("/bin/true") else shutil.which("true")
    if true is None or true.startswith("/run/"):
        return  # no no-op: the init runs the real tmpfiles, only slower
    directory.mkdir()
    for name in NOOPS:
        (directory / name).symlink_to(true)


# What virtme-ng lays a writable overlay (tmpfs over the export) on in the guest: vng's own
# list, so the guest can write where programs expect to (nothing reaches the host).
OVERLAYS = ("/etc", "/lib", "/home", "/opt", "/srv", "/usr", "/var", "/tmp")


def virtme_run() -> str:
    """virtme-ng's virtme-run: beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "virtme-run"
    return str(beside) if beside.exists() else (shutil.which("virtme-run") or "virtme-run")


def virtme_argv(kernel_image: Path, cfg: VmConfig, *, vmdir: Path, port: int,
             export: Path | None = None, restrict: bool = True,
             qmp_socket: Path | None = None, gdb_socket: Path | None = None) -> list[str]:
    """The virtme-run command line that boots ``kernel_image`` for the lab.

    virtme-run itself, with an argv list: ``vng`` would join the same options into one
    string for a shell (``--memory``, ``--qemu-opts``, the image's path unquoted).
    ``export`` is the guest's root (lab.vm.sandbox); None exports the host's ``/``.
    """
    argv = [virtme_run(), "--name", "kernel-lab",
            "--script-sh", f"{GUEST_BOOT} {vmdir}"]
    for d in OVERLAYS:
        argv += ["--overlay-rwdir", d]
    argv += [
        "--kimg", str(kernel_image),
        "--mods", "auto",
        "--force-9p",  # virtiofsd is not installed; skip the 10 s wait for it
        "--show-boot-console", "--verbose",  # kernel messages on the console from byte one
        "--cpus", str(cfg.cpus),
        "--memory", cfg.memory,
    ]
    if export is not None:
        argv += ["--root", str(export)]
    argv += ["--kopt", f"PATH={vmdir / NOOP_DIR}:{INIT_PATH_TAIL}"]  # see NOOPS
    for arg in cfg.kernel_args:
        argv += ["--kopt", arg]
    if cfg.accel != "kvm":
        argv.append("--disable-kvm")
    argv += ["--qemu-opts", *qemu_opts(cfg, vmdir=vmdir, port=port, export=export,
                                       restrict=restrict, qmp_socket=qmp_socket,
                                       gdb_socket=gdb_socket)]
    return argv


SSHD_CONFIG = """\
# Written by kernel-lab for one VM; read by guest/boot.sh.
Port 22
ListenAddress 0.0.0.0
HostKey {vmdir}/ssh_host_ed25519_key
AuthorizedKeysFile {vmdir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# No PAM: guest/boot.sh unlocks root's shadow entry instead (PAM sessions are slow
# under TCG).
UsePAM no
StrictModes no
PrintMotd no
UseDNS no
PidFile /run/kernel-lab-sshd.pid
Subsystem sftp internal-sftp
"""


class Vm:
    """A booted guest reachable over SSH; use as ``with Vm(...) as vm:``."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        run_dir: Path,
        cache: Path,
        config: VmConfig | None = None,
        name: str = "vm",
        isolation: sandbox.Isolation | None = None,
    ) -> None:
        self.kernel = kernel
        # A file name: a variant's added option may hold "/" or quotes (CONFIG_X="a/b").
        self.name = name = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", name)
        self.cfg = config or VmConfig()
        self.cache = cache
        self.vmdir = run_dir / name
        self.console_log = run_dir / f"console-{name}.log"
        self.process: proc.Spawned | None = None
        self.ssh: Ssh | None = None
        self.port = 0
        self.gdb_socket: Path | None = None  # QEMU's gdbstub's, when the config asks for one
        self.nvme: dict[str, NvmeDevice] = {}
        self.boot_seconds = 0.0
        self.cpus_online = 0
        self.timeline = Timeline()
        # None: the host's (lab.vm.sandbox.host_isolation); sandbox.OFF: the walls' control.
        self.isolation = isolation
        # This boot's keys (lab.vm.ssh): made by _prepare_files, so each boot has its own.
        # The client key's private half is only here; reconnect with ``client_key.pkey``,
        # pinning ``host_key.public``.
        self.client_key: KeyPair | None = None
        self.host_key: KeyPair | None = None
        # Called once SSH is up, while the guest runs the probe (lab.vm.session starts the
        # agent there: its push and start overlap the wait for the NVMe devices).
        self.while_probing: Callable[[Ssh], None] | None = None
        # QEMU's QMP socket (lab.vm.qmp): in the VM's directory, or in a directory of its
        # own under the system's temporary directory when that path is too long for a
        # socket address.  The guest sees the VM's directory (read-only, over 9p), where
        # the socket is a name only: a 9p client cannot connect to a host's socket.
        self.qmp_socket: Path | None = None
        self._qmp_dir: Path | None = None
        self.dumped = ""  # the dump of this boot's memory, once written (``dump``)

    def __enter__(self) -> Vm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if not SAFE_PATH.match(str(self.vmdir)):
            raise UserError(
                f"run directory {self.vmdir} has characters virtme-ng cannot pass to QEMU; "
                "use a path of letters, digits and ./_-"
            )
        if self.cfg.ssh_port is not None and not port_is_free(self.cfg.ssh_port):
            raise UserError(
                f"port {self.cfg.ssh_port} on 127.0.0.1 is busy; choose another "
                "--ssh-port or omit it to pick a free one"
            )
        modules = self.kernel.modules
        if modules is not None and not SAFE_PATH.match(os.path.realpath(modules)):
            raise UserError(f"kernel modules at {os.path.realpath(modules)}: a path with "
                            "characters virtme-ng cannot pass on; use a --cache (or modules "
                            "directory) path of letters, digits and ./_-")
        if self.isolation is None:
            self.isolation = sandbox.host_isolation()
        if not self.isolation.accepted:
            raise UserError(f"guests cannot be isolated from this host ({self.isolation.reason})"
                            f": {sandbox.REFUSED_FIX}")
        started = time.monotonic()
        self.timeline = Timeline()
        client_key, host_key = self._prepare_files()
        self.qmp_socket = self._socket_path("qmp.sock")
        self.gdb_socket = self._socket_path("gdb.sock") if self.cfg.gdb else None
        image = self._kernel_root()
        export = sandbox.export_root(self.vmdir) if self.isolation.files else None
        env = {
            # virtme-run finds QEMU and its helpers on PATH (its venv's bin first).
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            # Keep virtme-ng's own cache and config out of the user's home.
            "HOME": str(self.cache / "vng-home"),
        }
        (self.cache / "vng-home").mkdir(parents=True, exist_ok=True)
        staged = staged_root(self.cache)
        staged.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            # A free port can be taken by another worker's QEMU before ours binds it.
            self.port = self.cfg.ssh_port or free_port()
            argv = virtme_argv(image, self.cfg, vmdir=self.vmdir, port=self.port, export=export,
                            restrict=self.isolation.network, qmp_socket=self.qmp_socket,
                            gdb_socket=self.gdb_socket)
            argv = sandbox.wrap(argv, vmdir=self.vmdir, isolation=self.isolation,
                                modules=self.kernel.modules, staged=staged, cache=self.cache,
                                max_file_bytes=self._max_file_bytes())
            log.info("boot %s (%s) on port %d, console %s", self.kernel.spec,
                     self.kernel.release, self.port, self.console_log)
            console_start = self.console_log.stat().st_size if self.console_log.exists() else 0
            self.timeline.mark("qemu")
            self.process = proc.spawn(argv, log_path=self.console_log, env=env,
                                      on_line=self.timeline.on_console,
                                      log_cap=self.cfg.console_cap)
            try:
                self.ssh = Ssh.connect(
                    port=self.port,
                    client_key=client_key.pkey,
                    host_key=host_key.public,
                    deadline=started + self.cfg.boot_timeout,
                    alive=lambda: self.process is not None and self.process.poll() is None,
                    phase="boot",
                    log_path=self.console_log,
                    slowdown=self.cfg.slowdown,
                    # boot.sh's login setup done, its network up, sshd listening.
                    ready=lambda: all(self.timeline.seen(e) for e in SSH_READY_EVENTS),
                    # A panic under panic=0 leaves QEMU running: the console says it.
                    failed=lambda: self.timeline.failure or self.timeline.dead(),
                )
                self.timeline.mark("ssh")
                break
            except InfraError:
                if self.cfg.ssh_port is not None or attempt == PORT_ATTEMPTS or \
                        not self._port_was_taken(console_start):
                    raise
                log.warning("the SSH port %d was taken before QEMU bound it; retrying "
                            "with another", self.port)
                self.process.stop()
                self.process = None
        probe = self._start_probe()
        if self.while_probing is not None:
            assert self.ssh is not None
            self.while_probing(self.ssh)
        self.nvme = self._probe_result(probe.wait())
        self.timeline.mark("probe")
        self.boot_seconds = time.monotonic() - started
        log.info("guest up in %.1f s: %s; host view: %s", self.boot_seconds,
                 ", ".join(f"{d.role}={d.ctrl}" for d in self.nvme.values()),
                 self.isolation.describe() if self.isolation else "?")

    def stop(self) -> None:
        """End QEMU and remove the VM's temporary files (idempotent)."""
        if self.ssh is not None:
            self.ssh.close()
            self.ssh = None
        if self.process is not None:
            self.process.stop()
            self.process = None
        shutil.rmtree(self.vmdir, ignore_errors=True)
        if self._qmp_dir is not None:
            shutil.rmtree(self._qmp_dir, ignore_errors=True)
            self._qmp_dir = None

    def alive(self) -> bool:
        """QEMU runs and its kernel has not panicked (under panic=0 QEMU outlives it)."""
        return self.running() and self.timeline.dead() is None

    def running(self) -> bool:
        """QEMU runs (its guest may be dead: ``alive``)."""
        return self.process is not None and self.process.poll() is None

    def dump(self, path: Path, fmt: str, *, timeout: float = 600.0) -> int:
        """Pause the guest and write its memory to ``path`` in ``fmt`` (lab.vm.qmp); its
        size.  The guest stays paused: it is about to be replaced."""
        if self.qmp_socket is None or not self.running():
            raise QmpError("QEMU is not running: nothing to dump")
        with Qmp(self.qmp_socket) as qmp:
            qmp.stop()
            qmp.dump(path, fmt, timeout=timeout)
        self.dumped = str(path)
        if fmt.startswith("kdump"):
            # QEMU 7.2's kdump is flattened, its utsname empty: drgn cannot read it.
            try:
                vmcore.finish(path, release=self.kernel.release)
            except (OSError, vmcore.VmcoreError) as exc:
                log.warning("%s: kept as QEMU wrote it (flattened, no utsname): %s",
                            path, exc)
        return path.stat().st_size

    def _socket_path(self, name: str) -> Path:
        """Where QEMU listens on socket ``name``: in the VM's directory (0700) when the path
        fits a socket address, else in a 0700 directory of its own under /tmp."""
        path = self.vmdir / name
        if qmp_mod.fits(path):
            return path
        if self._qmp_dir is None:
            self._qmp_dir = Path(tempfile.mkdtemp(prefix="kernel-lab-qmp-"))  # 0700
        return self._qmp_dir / name

    @property
    def flooded(self) -> proc.Flood | None:
        """When the console passed its cap (the log stopped growing), else None."""
        return None if self.process is None else self.process.flooded

    # -- pieces ----------------------------------------------------------------

    def _prepare_files(self) -> tuple[KeyPair, KeyPair]:
        """The VM's directory as guest/boot.sh reads it; this boot's (client, host) keys."""
        shutil.rmtree(self.vmdir, ignore_errors=True)
        self.vmdir.parent.mkdir(parents=True, exist_ok=True)
        # The lab's user's only: it holds QEMU's QMP socket (whoever connects controls
        # the machine) and the guest's host key.
        self.vmdir.mkdir(mode=0o700)
        # A key pair per boot: the guest authorizes only its own client key, whose private
        # half stays in memory; its sshd reads the host key's from here.
        self.client_key, self.host_key = KeyPair(), KeyPair()
        self.host_key.write_private(self.vmdir / "ssh_host_ed25519_key")
        (self.vmdir / "authorized_keys").write_text(self.client_key.public_line())
        (self.vmdir / "sshd_config").write_text(SSHD_CONFIG.format(vmdir=self.vmdir))
        (self.vmdir / "fstab").write_text(hostroot.fstab(
            self.kernel.modules, tmpfs=REMOTE_BASE,
            release=self.kernel.release if self.isolation and self.isolation.files else None))
        # The interpreter guest/zygote.py runs in: the one the agent's channel would exec.
        (self.vmdir / "agent-python").write_text(f"{sys.executable}\n")
        write_noops(self.vmdir / NOOP_DIR)
        for nvme in self.cfg.nvme:
            with open(self.vmdir / f"nvme-{nvme.role}.img", "wb") as f:
                f.truncate(nvme.size)  # sparse: costs no disk until written
        return self.client_key, self.host_key

    def _max_file_bytes(self) -> int:
        """The largest file QEMU may write (RLIMIT_FSIZE): its largest NVMe image; the
        console goes through a pipe (lab.proc), not a file of QEMU's.  When it may dump
        the guest's memory, that too: all of it (an ELF dump; a kdump-zlib one of memory
        that does not compress is as large, plus a bitmap and a descriptor per page) and
        DUMP_SLACK for the headers."""
        sizes = [n.size for n in self.cfg.nvme] + [64 << 20]
        if self.cfg.dump:
            memory = self.cfg.memory_bytes
            sizes.append(memory + memory // 64 + DUMP_SLACK)
        return max(sizes)

    def _kernel_root(self) -> Path:
        """A rootfs-shaped dir of symlinks so virtme-ng finds image and modules together."""
        root = self.vmdir / "kroot"
        root.mkdir()
        image = root / "vmlinuz"
        image.symlink_to(self.kernel.image.resolve())
        if self.kernel.modules is not None:
            mods = root / "lib" / "modules"
            mods.mkdir(parents=True)
            (mods / self.kernel.release).symlink_to(self.kernel.modules.resolve())
        return image

    def _port_was_taken(self, console_start: int) -> bool:
        """QEMU said it could not forward the SSH port (another process bound it first)."""
        with open(self.console_log, "rb") as f:
            f.seek(console_start)
            said = f.read()
        return b"Could not set up host forwarding rule" in said

    def _check_cpus(self, online: str) -> None:
        """The guest must run on every vCPU asked for: the race suites need two."""
        self.cpus_online = cpu_count(online)
        if self.cpus_online != self.cfg.cpus:
            raise InfraError(
                f"the guest brought up {self.cpus_online} of {self.cfg.cpus} vCPUs (online: "
                f"{online}); a kernel without ACPI needs CONFIG_X86_MPPARSE, and any kernel "
                "CONFIG_SMP", phase="boot", log=self.console_log)

    def _start_probe(self) -> Running:
        """Start mapping each emulated controller (by serial) to its device nodes (all must
        exist) and reading the guest's online CPUs; ``_probe_result`` reads the answer.

        One exec, one round trip under TCG: wait (up to 10 s, longer under TCG) until every
        controller's three nodes exist, then print "name serial nodes" per controller (nodes is
        "ok" or the first missing node) and "cpus-online LIST".
        """
        assert self.ssh is not None
        serials = " ".join(n.serial for n in self.cfg.nvme)
        script = (
            "nodes() { n=${1##*/nvme}; for p in /dev/nvme$n /dev/nvme${n}n1 /dev/ng${n}n1; "
            "do [ -e $p ] || { echo $p; return 1; }; done; echo ok; }; "
            "ready() { for s in " + serials + "; do found=; "
            # read trims the padding NVMe puts after a serial; no fork per check.
            "for c in /sys/class/nvme/nvme*; do ser=; read -r ser < $c/serial 2>/dev/null; "
            "[ \"$ser\" = \"$s\" ] && nodes $c >/dev/null && found=1; done; "
            "[ -n \"$found\" ] || return 1; done; }; "
            f"i=0; until ready || [ $i -ge {int(100 * self.cfg.slowdown)} ]; do sleep 0.1; "
            "i=$((i+1)); done; "
            "for c in /sys/class/nvme/nvme*; do read -r ser < $c/serial; "
            "echo \"${c##*/} $ser $(nodes $c)\"; "
            "done; read -r on < /sys/devices/system/cpu/online; echo \"cpus-online $on\""
        )
        return self.ssh.start(["/bin/sh", "-c", script], timeout=30 * self.cfg.slowdown)

    def _probe_result(self, res: ExecResult) -> dict[str, NvmeDevice]:
        """The probe's answer: the devices by role; the online CPUs checked (``_check_cpus``)."""
        found: dict[str, tuple[str, str]] = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "cpus-online":
                self._check_cpus(parts[1])
            elif len(parts) == 3:
                found[parts[1]] = (parts[0], parts[2])
        devices: dict[str, NvmeDevice] = {}
        for nvme in self.cfg.nvme:
            name, nodes = found.get(nvme.serial, (None, ""))
            if name is None:
                raise InfraError(
                    f"emulated NVMe controller {nvme.serial} not found in the guest "
                    f"(saw {sorted(found) or 'none'}); is CONFIG_BLK_DEV_NVME set?",
                    phase="boot",
                    log=self.console_log,
                )
            if nodes != "ok":
                raise InfraError(f"NVMe controller {nvme.serial} ({name}): device node "
                                 f"{nodes} never appeared", phase="boot", log=self.console_log)
            idx = name.removeprefix("nvme")
            devices[nvme.role] = NvmeDevice(nvme.role, nvme.serial, f"/dev/{name}",
                                            f"/dev/{name}n1", f"/dev/ng{idx}n1")
        return devices
