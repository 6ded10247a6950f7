"""kernel-lab: test Linux kernels' async-I/O syscalls inside QEMU."""

from __future__ import annotations

__version__ = "0.1.0"
