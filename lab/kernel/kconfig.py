"""Kernel config fragments as data: parse, compose base + variants, verify the result.

``kernels/<name>.config`` are commented fragments.  A variant spec such as
``debug+aio-off`` composes ``base`` with each named fragment, and then the
options added by hand (``--kconfig-add CONFIG_X=y``, carried in the spec as
``debug+CONFIG_X=y``: one name for the cell, the record and the cache); after Kconfig has
resolved the composition (``allnoconfig`` with ``KCONFIG_ALLCONFIG``), every
requested option must be in the result, or the build stops with the list of
options that did not stick (KUnit's ``kunit_config.py`` does the same check).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UserError
from lab.paths import KERNELS_DIR

BASE = "base"

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
# A comment that looks like an option the author meant to write ("#CONFIG_X=y",
# "# CONFIG_X=n"): silently ignoring it would build something else than asked.
_NEAR_MISS = re.compile(r"^#\s*CONFIG_[A-Za-z0-9_]+\s*(=|is not set)")


@dataclass(frozen=True)
class Option:
    """One requested option: ``value`` None means "is not set"; ``origin`` is file:line."""

    name: str
    value: str | None
    origin: str

    def line(self) -> str:
        return f"# {self.name} is not set" if self.value is None else f"{self.name}={self.value}"


def parse_fragment(text: str, *, origin: str) -> list[Option]:
    """The options of a fragment; any other non-comment line is a UserError naming file:line."""
    options: list[Option] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{origin}:{number}"
        m = _SET.match(line)
        if m:
            value = m.group(2)
            if value == "n":  # Kconfig's own spelling of off is "is not set"
                options.append(Option(m.group(1), None, where))
            elif value:
                options.append(Option(m.group(1), value, where))
            else:
                raise UserError(f"{where}: {line!r} has no value; write "
                                f"{m.group(1)}=y or '# {m.group(1)} is not set'")
            continue
        m = _UNSET.match(line)
        if m:
            options.append(Option(m.group(1), None, where))
            continue
        if not line or (line.startswith("#") and not _NEAR_MISS.match(line)):
            continue
        raise UserError(f"{where}: {raw.strip()!r} is not CONFIG_NAME=VALUE or "
                        "'# CONFIG_NAME is not set'")
    return options


def variant_names(kernels_dir: Path = KERNELS_DIR) -> list[str]:
    """Fragments a variant spec may name (every kernels/*.config but base)."""
    return sorted(p.stem for p in kernels_dir.glob("*.config") if p.stem != BASE)


def _tokens(spec: str) -> list[str]:
    """A variant spec split at each "+" outside a quoted value (``CONFIG_X="a+b"``)."""
    tokens, current, quoted, escaped = [], "", False, False
    for ch in spec:
        if ch == "+" and not quoted:
            tokens.append(current.strip())
            current = ""
            continue
        current += ch
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
    return [*tokens, current.strip()]


def _parts(spec: str | None, kernels_dir: Path) -> tuple[tuple[str, ...], list[Option]]:
    """A variant spec's fragment names (checked) and its ``CONFIG_X=V`` additions (parsed)."""
    if spec is None or spec.strip() in ("", BASE):
        return (), []
    names: list[str] = []
    additions: list[Option] = []
    valid = variant_names(kernels_dir)
    for token in _tokens(spec):
        if token.startswith("CONFIG_") or "=" in token:
            additions.append(parse_addition(token))
        elif token == BASE:
            continue
        elif token not in valid:
            raise UserError(f"unknown variant {token!r} in {spec!r}; valid variants: "
                            f"{', '.join([BASE, *valid])} (combine with '+')")
        else:
            names.append(token)
    return tuple(sorted(set(names))), additions


def split_variant(spec: str | None, kernels_dir: Path = KERNELS_DIR) -> tuple[str, ...]:
    """``"debug+aio-off"`` → ``("aio-off", "debug")``: known names, sorted, no duplicates.

    Sorted because composition is order-free (a conflict is an error), so
    ``debug+aio-off`` and ``aio-off+debug`` are one kernel and one cache entry.
    ``CONFIG_X=V`` parts (``--kconfig-add``) are not names: ``compose`` reads them.
    """
    return _parts(spec, kernels_dir)[0]


ADDED = "--kconfig-add"  # the origin of an option the user added, in messages
# y, m, n; a number (decimal or 0x hex, as Kconfig writes them); a quoted string with
# \" and \\ escaped as in .config.
_ADDITION = re.compile(r'^(CONFIG_[A-Za-z0-9_]+)=(y|m|n|-?[0-9]+|0x[0-9a-fA-F]+|'
                       r'"(?:[^"\\]|\\.)*")$')


def parse_addition(text: str) -> Option:
    """One ``--kconfig-add`` value: ``CONFIG_X=y|m|n``, ``=NUMBER`` or ``="TEXT"``."""
    text = text.strip()
    form = 'write CONFIG_NAME=y, m or n, CONFIG_NAME=NUMBER or CONFIG_NAME="TEXT"'
    name, sep, value = text.partition("=")
    if not name.startswith("CONFIG_"):
        fix = f" (CONFIG_{text}?)" if re.fullmatch(r"[A-Za-z0-9_]+=.+", text) else ""
        raise UserError(f"{ADDED} {text!r} has no CONFIG_ prefix{fix}; {form}")
    if not sep or not value:
        raise UserError(f"{ADDED} {text!r} has no value; {form}")
    m = _ADDITION.match(text)
    if m is None:
        raise UserError(f"{ADDED} {text!r}: bad name or value; {form}")
    return Option(m.group(1), None if m.group(2) == "n" else m.group(2), ADDED)


def addition_text(opt: Option) -> str:
    """How an addition reads in a variant's name: ``CONFIG_X=n`` for off, as it was asked."""
    return f"{opt.name}={'n' if opt.value is None else opt.value}"


def with_additions(spec: str | None, additions: Sequence[str]) -> str | None:
    """A variant spec with ``--kconfig-add`` values joined on (``debug+CONFIG_X=y``)."""
    if not additions:
        return spec
    return "+".join([spec.strip() if spec and spec.strip() else BASE, *additions])


@dataclass(frozen=True)
class Composed:
    """base + variants (+ options added by hand) as one option list, ready for Kconfig."""

    # Canonical: "base", "aio-off", "aio-off+debug", "base+CONFIG_KASAN=y": the fragments'
    # names (sorted), then what was added (sorted by name).  The cell's label shows it.
    variant: str
    options: tuple[Option, ...]
    # The fragments' part alone ("base", "aio-off+debug"): it names the object tree, so
    # an added option rebuilds, in its variant's tree, only what the option touches.
    fragments: str = BASE

    def text(self) -> str:
        """The KCONFIG_ALLCONFIG file: one line per option, with where it came from."""
        head = f"# kernel-lab variant {self.variant}: composed by lab/kernel/kconfig.py\n"
        return head + "".join(f"{o.line()}\n" for o in self.options)

    @property
    def hash(self) -> str:
        """Identity of the request (not of comments), a part of the build cache key."""
        body = "".join(f"{o.line()}\n" for o in self.options)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def compose(spec: str | None, kernels_dir: Path = KERNELS_DIR) -> Composed:
    """base + the named variants + the spec's ``CONFIG_X=V`` additions.

    A variant may override base, two variants may not disagree; an addition
    overrides them all, two additions may not disagree, and one that changes
    nothing is dropped (the same kernel keeps one name and one cache entry).
    """
    names, additions = _parts(spec, kernels_dir)
    merged: dict[str, Option] = {}
    from_variant: dict[str, Option] = {}
    for name in (BASE, *names):
        path = kernels_dir / f"{name}.config"
        try:
            text = path.read_text()
        except OSError as exc:
            raise UserError(f"cannot read config fragment {path}: {exc.strerror}") from None
        for opt in parse_fragment(text, origin=_rel(path)):
            other = from_variant.get(opt.name)
            if name != BASE and other is not None and other.value != opt.value:
                raise UserError(f"variants disagree on {opt.name}: {other.line()!r} at "
                                f"{other.origin}, {opt.line()!r} at {opt.origin}")
            if name != BASE:
                from_variant[opt.name] = opt
            merged.pop(opt.name, None)  # re-insert: a later setting goes after its base
            merged[opt.name] = opt
    added: dict[str, Option] = {}
    for opt in additions:
        other = added.get(opt.name)
        if other is not None and other.value != opt.value:
            raise UserError(f"{ADDED} {addition_text(other)} and {addition_text(opt)} "
                            "disagree; give one value")
        added[opt.name] = opt
    kept = []
    for name in sorted(added):
        opt = added[name]
        have = merged.get(name)
        if have is not None and have.value == opt.value:
            continue
        merged.pop(name, None)
        merged[name] = opt
        kept.append(addition_text(opt))
    fragments = "+".join(names) or BASE
    return Composed(variant="+".join([fragments, *kept]) if kept else fragments,
                    options=tuple(merged.values()), fragments=fragments)


def parse_config(text: str) -> dict[str, str | None]:
    """A full .config: option → value, None for "is not set"; other lines ignored."""
    values: dict[str, str | None] = {}
    for line in text.splitlines():
        m = _SET.match(line)
        if m:
            values[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            values[m.group(1)] = None
    return values


@dataclass(frozen=True)
class Mismatch:
    """A requested option the resolved config does not have."""

    option: Option
    got: str | None
    present: bool  # the symbol is in the result at all (else: unknown or its menu is off)

    def describe(self) -> str:
        if not self.present:
            got = "absent (unmet dependencies, or not a symbol of this tree)"
        else:
            got = "is not set" if self.got is None else f"={self.got}"
        return f"{self.option.line()} ({self.option.origin}): {got}"


def mismatches(composed: Composed, config_text: str) -> list[Mismatch]:
    """Requested options whose value did not stick; empty when the config is as asked."""
    result = parse_config(config_text)
    bad: list[Mismatch] = []
    for opt in composed.options:
        present = opt.name in result
        got = result.get(opt.name)
        # Absent counts as off: Kconfig omits symbols whose menu is invisible.
        ok = got is None if opt.value is None else got == opt.value
        if not ok:
            bad.append(Mismatch(opt, got, present))
    return bad


def validate(composed: Composed, config_text: str, *, where: str) -> None:
    """Raise a UserError listing every requested option that did not stick."""
    bad = mismatches(composed, config_text)
    if bad:
        raise UserError(f"variant {composed.variant}: {len(bad)} option(s) did not stick in "
                        f"{where}: " + "; ".join(m.describe() for m in bad))


_SYMBOL = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$", re.MULTILINE)


def tree_symbols(tree: Path) -> set[str]:
    """Every Kconfig symbol a source tree defines (``CONFIG_`` prefixed); ~1 s on a full tree."""
    symbols: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("Kconfig"):
                text = Path(dirpath, name).read_text(errors="replace")
                symbols.update(f"CONFIG_{s}" for s in _SYMBOL.findall(text))
    return symbols


def unknown_options(composed: Composed, symbols: set[str]) -> list[Option]:
    """Requested options no Kconfig file of the tree defines (typos, removed symbols)."""
    return [o for o in composed.options if o.name not in symbols]
