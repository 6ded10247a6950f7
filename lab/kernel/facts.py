"""What the lab knows of a kernel's config, and from where: a file, or the guest itself.

Scenarios declare the options they need (``requires_config("AIO")``, or
``"!AIO"`` for "must be off").  ``mismatch`` says why a kernel cannot run such
a test, and only from what is known: an option nobody could tell is never a
reason to SKIP.  Facts come from a whole .config (Debian's, the lab's build, the
image's own IKCONFIG, a file beside the image that names its release:
lab.kernel.imageconfig; /proc/config.gz in the guest), or, for a kernel that
carries none, from asking the booted kernel
(lab.vm.session: a syscall that answers ENOSYS is not built in).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lab.kernel.kconfig import parse_config


@dataclass(frozen=True)
class ConfigFacts:
    """Known option values: "y", "m", a string, or None for off."""

    source: str  # "package", "build", "file:PATH", "ikconfig", "guest:/proc/config.gz", "probe"
    values: Mapping[str, str | None] = field(default_factory=dict)
    complete: bool = False  # a whole .config: an option it does not name is off
    digest: str | None = None  # of the whole config text, when there is one

    @classmethod
    def from_text(cls, text: str, *, source: str) -> ConfigFacts:
        return cls(source=source, values=parse_config(text), complete=True,
                   digest=hashlib.sha256(text.encode()).hexdigest()[:16])

    @classmethod
    def from_probe(cls, found: Mapping[str, bool]) -> ConfigFacts:
        return cls(source="probe", values={f"CONFIG_{k}": ("y" if v else None)
                                           for k, v in found.items()})

    def known(self, option: str) -> bool:
        return self.complete or _key(option) in self.values

    def value(self, option: str) -> str | None:
        return self.values.get(_key(option))


def _key(option: str) -> str:
    return option if option.startswith("CONFIG_") else f"CONFIG_{option}"


def _on(facts: ConfigFacts, option: str) -> bool:
    return facts.value(option) not in (None, "n")


def unknown(facts: ConfigFacts | None, options: Iterable[str]) -> list[str]:
    """The options (without their "!") that ``facts`` cannot tell."""
    names = [o.removeprefix("!") for o in options]
    return names if facts is None else [o for o in names if not facts.known(o)]


def mismatch(facts: ConfigFacts | None, options: Iterable[str], *, label: str) -> str | None:
    """Why a kernel with ``facts`` cannot run a test that requires ``options``, else None.

    Only known values decide: an unknown option is left to the test itself.
    """
    if facts is None:
        return None
    options = list(options)
    on = [o for o in options if not o.startswith("!")]
    off = [o[1:] for o in options if o.startswith("!")]
    missing = [o for o in on if facts.known(o) and not _on(facts, o)]
    if missing:
        return f"{label} lacks " + ", ".join(f"CONFIG_{o}" for o in missing) + \
            f" (config from {facts.source})"
    present = [f"CONFIG_{o}={facts.value(o)}" for o in off if facts.known(o) and _on(facts, o)]
    return "not applicable: " + ", ".join(present) if present else None
