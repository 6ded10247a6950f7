"""sys.*: the kernel's identity, /proc and /sys, its log, its config, raw syscalls."""
