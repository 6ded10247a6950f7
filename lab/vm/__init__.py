"""The guest: KVM or TCG, QEMU through virtme-ng, SSH, the agent, replacement after a crash."""
