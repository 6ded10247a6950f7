#!/bin/sh
# kernel-lab guest boot script, run by virtme-ng as the guest's --exec command.
# Usage: boot.sh VMDIR   (VMDIR holds sshd_config, the host key and authorized_keys
# that the lab wrote for this VM, the fstab of lab/vm/hostroot.py and the agent's
# interpreter; the guest sees the host root read-only over 9p).
#
# Why not virtme-ng's own --ssh: it always turns on DHCP, which waits for a network
# device that never appears on a modular kernel without udev (virtio_net not loaded),
# and it authorizes the user's ~/.ssh keys.  Here we load the drivers ourselves,
# configure QEMU's user network statically and start sshd with the lab's key only.
#
# Under TCG every exec costs a tenth of a second or more, so what is on the way to
# sshd uses shell builtins where it can, and what is not runs in the background.
set -u
VMDIR=$1
# The init's PATH began with the VM's no-ops (lab/vm/vm.py NOOPS): not for this script.
PATH=${PATH#"$VMDIR/noop-bin:"}
log() { echo "<6>kernel-lab: $*" > /dev/kmsg; }
log "boot.sh started"  # the boot timeline's marks (lab/vm/timeline.py) are these lines

# A test seam, off unless asked for on the kernel command line (`lab run ... --
# --lab-append kernel_lab.crash_at_boot`): panic the kernel before SSH is up, as a
# kernel that dies while booting would, so the lab's boot-crash verdicts can be tested.
read -r cmdline < /proc/cmdline
case " $cmdline " in
*" kernel_lab.crash_at_boot "*) log "crash_at_boot asked for"; echo c > /proc/sysrq-trigger ;;
esac

# Nothing of the host's services runs here.  virtme-ng-init starts the host's udevd
# when the host has one (every systemd host); its coldplug and settle are no-ops
# (lab/vm/vm.py NOOPS), and the guest needs none of its work: devtmpfs makes the
# device nodes, this script loads the drivers, and the interface is found by driver.
# Left running, udevd would rename the NIC under this script and re-read every NVMe
# namespace a test closes after writing (its blkid probes and inotify watches), on a
# controller throttled so that I/O in flight can be seen.  So it stops here, before
# any driver loads.  (virtme-ng-init starts nothing else of the host's: no networkd,
# resolved or NetworkManager; the seam kernel_lab.keep_udev keeps udevd, for the
# lab's test that a renamed interface is found.)
case " $cmdline " in
*" kernel_lab.keep_udev "*) ;;
*)
    for d in /proc/[0-9]*; do
        { read -r comm < "$d/comm"; } 2>/dev/null || continue
        case $comm in
        systemd-udevd|udevd) kill "${d#/proc/}" 2>/dev/null && log "stopped the host's udevd" ;;
        esac
    done ;;
esac

# The host root again, cached, bound over the uncached view (lab/vm/hostroot.py says
# why and which directories), and the lab's tmpfs (the agent is unpacked there): one
# mount process, before anything else runs, since every exec before the binds loads
# uncached.  Without the cached root the guest still works, only slower.
mount -a -T "$VMDIR/fstab" 2>/dev/null
mounted=$?
case $mounted in
0) log "host root cached" ;;
64) log "host root partly cached (mount -a -T $VMDIR/fstab: some mounts failed)" ;;
*) log "no cached host root (mount -a -T $VMDIR/fstab failed): the guest reads uncached" ;;
esac
if [ "$mounted" -ne 0 ] && ! mountpoint -q /run/kernel-lab; then
    mkdir -p /run/kernel-lab && mount -t tmpfs -o mode=0700 kernel-lab /run/kernel-lab
fi

# Drivers: built in on lab-built kernels, modules on Debian's (modprobe is a no-op then).
# What the lab's first connection waits for runs first and at once: the network
# (virtio_net, then QEMU's user network), sshd (it listens on 0.0.0.0, which needs no
# address yet) and the login setup below; the lab connects once the console shows all three
# (lab/vm/vm.py).  The nvme module, needed only after the connection, is loaded once
# virtio_net is, so as not to slow it.
network() {
    modprobe -q virtio_net 2>/dev/null
    modprobe -q nvme 2>/dev/null &  # the lab waits for the NVMe devices itself
    case " $cmdline " in
    *" kernel_lab.keep_udev "*) udevadm settle 2>/dev/null ;;  # its renaming done first
    esac
    # The interface is found by its driver, never by name: udev, where one runs, names
    # it by its own policy (enp0s9), and a renaming can race the lookup: then the ip
    # batch fails and the lookup runs again.
    i=0
    while [ "$i" -lt 200 ]; do
        nic=
        for n in /sys/bus/virtio/drivers/virtio_net/virtio*/net/*; do
            [ -e "$n" ] && { nic=${n##*/}; break; }
        done
        # QEMU user networking: the guest is always 10.0.2.15, the gateway 10.0.2.2.
        # One ip process for the four changes.
        if [ -n "$nic" ] && ip -force -batch - 2>/dev/null <<IP
link set lo up
link set $nic up
addr replace 10.0.2.15/24 dev $nic
route replace default via 10.0.2.2
IP
        then
            log "network up on $nic"
            return
        fi
        sleep 0.05
        i=$((i + 1))
    done
    log "boot failed: no virtio_net interface came up in 10 s (interfaces: $(ls /sys/class/net | tr '\n' ' ')); SSH will not be reachable"
}

# The interpreter that becomes the agent when its verified archive hands over
# (guest/zygote.py), started first so that its own start (seconds under TCG) is over
# by the time the agent's archive arrives.  It serves one agent; the loop starts the
# next one when that agent ends.  No zygote (it failed before a handoff: exit 3) only
# means each agent starts its own interpreter.
zygote() {
    read -r python < "$VMDIR/agent-python" || return
    while :; do
        "$python" -S "${0%/*}/zygote.py" /run/kernel-lab/zygote.sock \
            </dev/null 2>>/run/kernel-lab/zygote.stderr &
        echo $! > /run/kernel-lab/zygote.sock.pid  # handoff.c waits for a zygote starting
        wait $!
        status=$?
        rm -f /run/kernel-lab/zygote.sock.pid  # no handoff waits for an exited zygote
        [ $status -ne 3 ] || break
        sleep 1  # never a busy loop, whatever the agent's status
    done
}

# -r: no re-exec of sshd for each connection.  Re-executing means loading sshd and its
# libraries again, which on a debug kernel under TCG on a loaded host takes longer
# than the lab's handshake timeout: the abandoned pre-auth children then pile up
# until MaxStartups refuses everyone.  An sshd without the option (OpenSSH 9.8+
# always re-executes) never starts listening (no pid file): then it runs without.
sshd_loop() {
    /usr/sbin/sshd -D -e -r -f "$VMDIR/sshd_config"
    status=$?
    # A failed start writes no pid file (sshd removes it on a clean SIGTERM: status 0).
    if [ "$status" -ne 0 ] && [ ! -e /run/kernel-lab-sshd.pid ]; then
        log "sshd -r did not start (status $status): starting sshd without -r"
        /usr/sbin/sshd -D -e -f "$VMDIR/sshd_config"
        status=$?
    fi
    log "sshd exited with status $status: rebooting so QEMU exits"
    echo b > /proc/sysrq-trigger
}

zygote &
network &
# A crash dump's VMCOREINFO (lab/vm/session.py kernel_args, when dumping): the fw_cfg
# driver writes the kernel's note where QEMU's vmcoreinfo device keeps it for the dump
# (a module on Debian's kernels; built in, or absent, on others: modprobe is a no-op).
case " $cmdline " in
*" kernel_lab.vmcoreinfo "*) modprobe -q qemu_fw_cfg 2>/dev/null & ;;
esac
# /run/lock and root's /run/user are what the host's tmpfiles made that anything here
# may use (/var/lock links to the first; the init points XDG_RUNTIME_DIR at the second).
mkdir -p /run/sshd /run/kernel-lab/home /run/lock /run/user/0
# sshd records a PTY login (lab shell's) in lastlog and complains on the terminal when
# it is missing; /var is the guest's throwaway overlay (virtme's), so this never reaches
# the host (and an existing lastlog is left as it is).
[ -e /var/log/lastlog ] || { mkdir -p /var/log && : > /var/log/lastlog; }
sshd_loop &

# Commands over SSH run through root's login shell: make it /bin/sh with an empty
# home so the host user's dotfiles (pyenv init and the like, slow under TCG) never run.
# sshd without PAM refuses a "locked" account ('*' or '!' as the hash); key-only
# logins need no password, so an unusable but unlocked hash is enough (and skips
# PAM's per-session work, slow under TCG).  /etc is a throwaway overlay in the guest,
# so these edits never reach the host.  virtme-ng bind-mounts some /etc files (shadow
# among them): rewritten in place.  sed reads the file (the shell's read would take
# it a byte per uncached 9p read: seconds); the copy back reads the lab's tmpfs.
rewrite() {
    sed "$2" "$1" > /run/kernel-lab/rewrite || return
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s\n' "$line"
    done < /run/kernel-lab/rewrite > "$1"
}
rewrite /etc/passwd 's#^root:[^:]*:0:0:[^:]*:[^:]*:[^:]*$#root:x:0:0:root:/run/kernel-lab/home:/bin/sh#'
rewrite /etc/shadow 's#^root:[^:]*:#root:unusable:#'
for f in /run/kernel-lab/rewrite /run/nologin /etc/nologin; do
    [ -e "$f" ] && rm -f "$f"
done

read -r _ _ release _ < /proc/version
log "guest ready ($release)"  # the login setup is done
wait
