#!/bin/sh
# kernel-lab guest boot script, run by virtme-ng as the guest's --exec command.
# Usage: boot.sh VMDIR   (VMDIR holds sshd_config, the host key and authorized_keys
# that the lab wrote for this VM; the guest sees the host root read-only over 9p).
#
# Why not virtme-ng's own --ssh: it always turns on DHCP, which waits for an eth0
# that never appears on a modular kernel without udev (virtio_net is not loaded),
# and it authorizes the user's ~/.ssh keys.  Here we load the drivers ourselves,
# configure QEMU's user network statically and start sshd with the lab's key only.
set -u
VMDIR=$1
log() { echo "<6>kernel-lab: $*" > /dev/kmsg; }
log "boot.sh started"  # the boot timeline's marks (lab/vm/timeline.py) are these lines

# A test seam, off unless asked for on the kernel command line (`lab run ... --
# --lab-append kernel_lab.crash_at_boot`): panic the kernel before SSH is up, as a
# kernel that dies while booting would, so the lab's boot-crash verdicts can be tested.
case " $(cat /proc/cmdline) " in
*" kernel_lab.crash_at_boot "*) log "crash_at_boot asked for"; echo c > /proc/sysrq-trigger ;;
esac

# Drivers: built in on lab-built kernels, modules on Debian's (modprobe is a no-op then).
# Three things run at once, since none needs another: the nvme module (the lab waits
# for the NVMe devices itself), the network (virtio_net, then QEMU's user network) and
# sshd (it listens on 0.0.0.0, which needs no eth0; it starts after the login setup
# below, so its first connection finds that done; one refused meanwhile is retried).
modprobe -q nvme 2>/dev/null &
mkdir -p /run/sshd
# -r: no re-exec of sshd for each connection.  Re-executing means loading sshd and its
# libraries over 9p again, which on a debug kernel under TCG on a loaded host takes
# longer than the lab's handshake timeout: the abandoned pre-auth children then pile
# up until MaxStartups refuses everyone.  An sshd without the option (OpenSSH 9.8+
# always re-executes) fails its test run, which runs while the rest goes on.
/usr/sbin/sshd -t -r -f "$VMDIR/sshd_config" 2>/dev/null &
sshd_test=$!
network() {
    modprobe -q virtio_net 2>/dev/null
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    [ -e /sys/class/net/eth0 ] || log "no eth0 after 10 s: SSH will not be reachable"
    # QEMU user networking: the guest is always 10.0.2.15, the gateway 10.0.2.2.
    # One ip process for the four changes: every exec loads its binary over 9p.
    ip -force -batch - <<IP
link set lo up
link set eth0 up
addr add 10.0.2.15/24 dev eth0
route add default via 10.0.2.2
IP
    log "network up"
}
network &

# Commands over SSH run through root's login shell: make it /bin/sh with an empty
# home so the host user's dotfiles (pyenv init and the like, slow under TCG) never run.
# /etc is a throwaway overlay in the guest, so this edit never reaches the host.
mkdir -p /run/kernel-lab/home
mount -t tmpfs -o mode=0700 kernel-lab /run/kernel-lab
mkdir -p /run/kernel-lab/home
# virtme-ng bind-mounts some /etc files (shadow among them): rewrite in place, since
# sed -i's rename onto a mount point fails.
rewrite() { sed "$2" "$1" > /run/kernel-lab/rewrite && cat /run/kernel-lab/rewrite > "$1"; }
rewrite /etc/passwd 's#^root:[^:]*:0:0:[^:]*:[^:]*:[^:]*$#root:x:0:0:root:/run/kernel-lab/home:/bin/sh#'
# sshd without PAM refuses a "locked" account ('*' or '!' as the hash); key-only
# logins need no password, so an unusable but unlocked hash is enough (and skips
# PAM's per-session work, slow under TCG).
rewrite /etc/shadow 's#^root:[^:]*:#root:unusable:#'
rm -f /run/kernel-lab/rewrite /run/nologin /etc/nologin

reexec=-r
wait "$sshd_test" || reexec=
log "guest ready ($(uname -r))"
/usr/sbin/sshd -D -e $reexec -f "$VMDIR/sshd_config"
log "sshd exited with status $?: rebooting so QEMU exits"
echo b > /proc/sysrq-trigger
