"""kernel-lab guest agent: runs inside the QEMU guest as ``python3 -m guest``.

Self-contained on purpose (imports nothing from ``lab``): only this package
and its compiled ``_labsys`` extension are pushed into the guest.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
