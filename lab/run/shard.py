"""CI shards: ``--shard I/N`` runs a deterministic 1/N of the matrix's cells x tests.

A test's shard is a stable hash of its cell and test id modulo N (as
pytest-shard does), not its place in a list: the same arguments give every
shard runner the same split, and adding a test moves no other test.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from lab.errors import UserError


def stable_hash(text: str) -> int:
    """A hash that is the same in every process and on every machine (unlike hash())."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``total``."""

    index: int
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"

    def takes(self, cell: str, test: str) -> bool:
        """Whether this shard runs ``test`` of ``cell``."""
        return stable_hash(f"{cell}\0{test}") % self.total == self.index - 1


_FORM = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> Shard:
    """``"2/4"`` → Shard(2, 4); anything else is a UserError saying what is right."""
    m = _FORM.match(text)
    if m is None:
        raise UserError(f"--shard {text!r} is not I/N; write e.g. --shard 1/4 "
                        "(shard I of N, 1 <= I <= N)")
    index, total = int(m.group(1)), int(m.group(2))
    if total < 1 or not 1 <= index <= total:
        raise UserError(f"--shard {text} is out of range; I must be between 1 and N "
                        f"(1/{max(total, 1)} … {max(total, 1)}/{max(total, 1)})")
    return Shard(index, total)
