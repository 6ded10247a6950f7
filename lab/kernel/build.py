"""Build a kernel from a source tree and a config variant, cached and incremental.

The result is cached under ``<cache>/kernels/built/<key>/`` keyed by (source
identity, composed config hash, compiler version): asking twice for the same
kernel costs no build.  The object tree lives in ``<cache>/build/<slot>/``, one
per (source, variant), out of the source tree (``O=``) and kept between
builds; its ``.config`` is replaced only when the resolved config changed, so
a rebuild after editing one file recompiles that file and relinks.

Phases (each logged with its duration): config (compose, check names against
the tree's Kconfig, resolve with ``allnoconfig`` + ``KCONFIG_ALLCONFIG``,
verify that every requested option stuck), make (``-jN``, ccache when
installed, a progress line every ``PROGRESS_EVERY`` seconds), publish.  The
full log is kept; a failure shows its last error lines and the log's path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path

from lab import atomic, proc
from lab.errors import InfraError, UserError
from lab.kernel import cache as kernel_cache
from lab.kernel import kconfig
from lab.kernel.artifact import METADATA, Kernel
from lab.kernel.source import SourceTree

log = logging.getLogger("lab.kernel.build")

PROGRESS_EVERY = 30.0  # seconds between progress lines during make
MAKE_TIMEOUT = 4 * 3600.0
TARGET = "bzImage"
IMAGE = Path("arch/x86/boot/bzImage")
_STEP = re.compile(rb"^  [A-Z][A-Z0-9_]{1,7} +\S")  # Kbuild's "  CC      fs/aio.o" lines
_ERROR = re.compile(r"(error|Error \d+|undefined reference|No rule to make target)")


class BuildError(InfraError):
    """make failed: the last error lines and the log path (exit 3, bisection's "skip")."""


def built_dir(cache: Path) -> Path:
    return cache / "kernels" / "built"


def compiler_version(cc: str = "gcc") -> str:
    """First line of ``cc --version``: part of the cache key (another gcc, another kernel)."""
    try:
        out = proc.run([cc, "--version"], phase="build:tools", timeout=60).stdout
    except proc.ProcessError:
        raise UserError(f"building kernels needs {cc}; install build-essential") from None
    return out.splitlines()[0].strip() if out else cc


def cache_key(source_identity: str, config_hash: str, compiler: str) -> str:
    """The name of a built kernel's cache entry."""
    text = f"{source_identity}\n{config_hash}\n{compiler}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _slot(source: SourceTree, variant: str) -> str:
    """The object-tree directory name: one per source and variant, readable in `ls`."""
    if source.slot is not None:  # a lab clone: one object tree for all its commits
        return f"{source.slot}-{variant}"
    ident = source.identity.split("#", 1)[0]  # a plain tree keeps its slot across edits
    digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
    return f"{source.kind}-{source.version}-{variant}-{digest}"


def make_jobs() -> int:
    """Cores + 1: one job waits on I/O while the others compile."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1) + 1


def make_argv(source: SourceTree, out: Path, *targets: str, jobs: int | None = None) -> list[str]:
    argv = ["make", "-C", str(source.path), f"O={out}"]
    if jobs is not None:
        argv.append(f"-j{jobs}")
    if shutil.which("ccache"):
        argv.append("CC=ccache gcc")
    return [*argv, *targets]


# Kbuild stamps each image with the time, user, host and a build counter
# (Documentation/kbuild/reproducible-builds.rst); fixed, two builds of the same
# code give the same bytes, so `lab bisect` can tell a no-op commit by its image
# and ccache can hit init/version.c.  A user's own setting wins.
REPRODUCIBLE = {
    "KBUILD_BUILD_TIMESTAMP": "Thu Jan  1 00:00:00 UTC 1970",
    "KBUILD_BUILD_USER": "kernel-lab",
    "KBUILD_BUILD_HOST": "kernel-lab",
    "KBUILD_BUILD_VERSION": "1",
}


def make_env(cache: Path) -> dict[str, str]:
    """ccache settings that let object trees share hits, and a reproducible stamp.

    Kbuild passes absolute source paths; with base_dir at the cache root ccache
    rewrites them relative to the object tree, so two trees at the same depth
    (another variant's, a re-created one) hash alike.  A user's own setting wins.
    """
    env = {k: v for k, v in REPRODUCIBLE.items() if k not in os.environ}
    if "CCACHE_BASEDIR" not in os.environ:
        env.update({"CCACHE_BASEDIR": str(cache), "CCACHE_NOHASHDIR": "1"})
    return env


def cached_builds(cache: Path) -> list[Kernel]:
    """Every published build (any source, variant or config revision), newest first."""
    found = kernel_cache.entries(built_dir(cache))
    found.sort(key=lambda ek: (ek[0] / METADATA).stat().st_mtime, reverse=True)
    return [k for _, k in found]


INPUTS = ".lab-config-inputs"  # in the object tree: what its .config was resolved from


def config_inputs(source: SourceTree, composed: kconfig.Composed, compiler: str) -> str:
    """A digest of what resolving the config depends on: the fragments, the toolchain, and
    each Kconfig file, scripts/kconfig/ file and top Makefile by name, size and mtime.

    A checkout that leaves them alone leaves their mtimes alone too, so a bisection
    step (or a rebuild of a Debian tree) skips Kconfig: ~15 s a step here.
    """
    h = hashlib.sha256(f"{composed.text()}\n{compiler}\n".encode())
    root = str(source.path)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        whole = rel == os.path.join("scripts", "kconfig") or rel.startswith(
            os.path.join("scripts", "kconfig") + os.sep)
        for name in sorted(filenames):
            if whole or name.startswith("Kconfig") or (rel == "." and name == "Makefile"):
                st = os.stat(os.path.join(dirpath, name))
                h.update(f"{rel}/{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def configure(source: SourceTree, composed: kconfig.Composed, out: Path, *,
              log_path: Path, compiler: str = "") -> bool:
    """Resolve the composed config into ``out/.config``; True when it changed.

    Kconfig writes the candidate to a side file (KCONFIG_CONFIG), so ``.config``
    keeps its mtime when nothing changed and make has nothing to redo.  When
    nothing Kconfig reads changed since ``.config`` was resolved (``config_inputs``),
    Kconfig does not run at all.
    """
    inputs = config_inputs(source, composed, compiler or compiler_version())
    stamp = out / INPUTS
    if (out / ".config").is_file() and stamp.is_file() and stamp.read_text().strip() == inputs:
        return False
    symbols = kconfig.tree_symbols(source.path)
    unknown = kconfig.unknown_options(composed, symbols)
    if unknown:
        named = "; ".join(f"{o.name} ({o.origin})" for o in unknown[:8])
        more = f"; and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise UserError(f"unknown option(s) for Linux {source.version} (no Kconfig symbol "
                        f"in {source.path}): {named}{more}")
    out.mkdir(parents=True, exist_ok=True)
    fragment = out / "lab-fragment.config"
    fragment.write_text(composed.text())
    candidate = out / ".config.lab-new"
    proc.run([*make_argv(source, out, "allnoconfig"), f"KCONFIG_ALLCONFIG={fragment}",
              f"KCONFIG_CONFIG={candidate.name}"],
             phase="build:config", log_path=log_path, timeout=600)
    text = candidate.read_text()
    try:
        kconfig.validate(composed, text, where=f"{out}/.config")
    except UserError:  # refused: .config and its stamp stay as they were
        candidate.unlink()
        raise
    current = out / ".config"
    changed = not (current.is_file() and current.read_text() == text)
    if changed:
        stamp.unlink(missing_ok=True)
        os.replace(candidate, current)
    else:
        candidate.unlink()
    stamp.write_text(inputs + "\n")
    return changed


def _progress(log_path: Path, start_size: int, done: threading.Event, *, label: str,
              expected: int | None, started: float) -> None:
    """Every PROGRESS_EVERY s: steps so far, and their share of a full build of this tree.

    An incremental build (a config change, a touched file) ends well short of 100%.
    """
    while not done.wait(PROGRESS_EVERY):
        steps = _count_steps(log_path, start_size)
        pct = f" (~{min(99, 100 * steps // expected)}% of a full build)" if expected else ""
        log.info("build %s: make %d steps%s, %s", label, steps, pct,
                 _elapsed(time.monotonic() - started))


def _count_steps(log_path: Path, start: int) -> int:
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            return sum(1 for line in f if _STEP.match(line))
    except OSError:
        return 0


def _elapsed(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s" if seconds >= 60 else f"{seconds:.1f}s"


def error_lines(log_text: str, limit: int = 12) -> list[str]:
    """The lines of a failed build a person should read first: errors, else the tail."""
    lines = log_text.splitlines()
    hits = [ln for ln in lines if _ERROR.search(ln) and not ln.startswith("+ ")]
    return (hits or lines)[-limit:]


def run_make(source: SourceTree, out: Path, *, log_path: Path, label: str,
             jobs: int | None = None, env: dict[str, str] | None = None) -> float:
    """make TARGET in ``out`` with progress lines; returns the seconds it took."""
    steps_file = out / ".lab-steps"
    expected = int(steps_file.read_text()) if steps_file.is_file() else None
    start_size = log_path.stat().st_size if log_path.exists() else 0
    started = time.monotonic()
    done = threading.Event()
    ticker = threading.Thread(target=_progress, args=(log_path, start_size, done),
                              kwargs={"label": label, "expected": expected, "started": started},
                              daemon=True)
    ticker.start()
    try:
        proc.run(make_argv(source, out, TARGET, jobs=jobs or make_jobs()), phase="build:make",
                 log_path=log_path, timeout=MAKE_TIMEOUT, env=env)
    except proc.ProcessError:
        tail = error_lines(log_path.read_text(errors="replace")[-200_000:])
        raise BuildError("make failed:\n  " + "\n  ".join(tail), phase="build:make",
                         log=log_path) from None
    finally:
        done.set()
        ticker.join(1)
    steps = _count_steps(log_path, start_size)
    if expected is None or steps > expected:  # a cold build sets the scale for percentages
        steps_file.write_text(str(steps))
    return time.monotonic() - started


def cached(identity: str, variant: str | None, *, cache: Path, spec_text: str) -> Kernel | None:
    """The published build of a source ``identity`` + ``variant``, None when not built yet.

    What ``build`` would return without building, for callers that can skip
    preparing the source on a hit (a git commit is not checked out for it).
    """
    composed = kconfig.compose(variant)
    entry = built_dir(cache) / cache_key(identity, composed.hash, compiler_version())
    return kernel_cache.load_entry(entry, spec=spec_text)


def build(source: SourceTree, variant: str | None, *, cache: Path, spec_text: str,
          jobs: int | None = None) -> Kernel:
    """The built Kernel for ``source`` + ``variant``: from the cache, or built and published."""
    composed = kconfig.compose(variant)  # unknown variant / bad fragment: before any work
    compiler = compiler_version()
    key = cache_key(source.identity, composed.hash, compiler)
    entry = built_dir(cache) / key
    hit = kernel_cache.load_entry(entry, spec=spec_text)
    if hit is not None:
        log.info("build: %s %s is cached (%s)", spec_text, composed.variant, entry)
        return hit
    out = cache / "build" / _slot(source, composed.fragments)
    logs = cache / "build" / "logs"
    log_path = logs / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    label = f"{source.identity} {composed.variant}"
    # One build per object tree at a time (two runs asking for one kernel wait).
    with atomic.locked(cache / "build" / f".{out.name}.lock"):
        # Another run may have built it meanwhile.
        hit = kernel_cache.load_entry(entry, spec=spec_text)
        if hit is not None:
            return hit
        t0 = time.monotonic()
        changed = configure(source, composed, out, log_path=log_path, compiler=compiler)
        log.info("build %s: config %s, %d options verified, %s", label,
                 "changed" if changed else "unchanged", len(composed.options),
                 _elapsed(time.monotonic() - t0))
        log.info("build %s: make %s -j%d%s (log %s)", label, TARGET, jobs or make_jobs(),
                 " with ccache" if shutil.which("ccache") else "", log_path)
        took = run_make(source, out, log_path=log_path, label=label, jobs=jobs,
                        env=make_env(cache))
        log.info("build %s: make done in %s", label, _elapsed(took))
        gdb = gdb_scripts(source, out, log_path=log_path, env=make_env(cache))
        kernel = _publish(source, composed, out, entry=entry, spec_text=spec_text,
                          cache=cache, log_path=log_path, gdb=gdb)
    log.info("build %s: published %s (%s), total %s", label, entry, kernel.release,
             _elapsed(time.monotonic() - t0))
    return kernel


def gdb_scripts(source: SourceTree, out: Path, *, log_path: Path,
                env: dict[str, str]) -> bool:
    """``make scripts_gdb``: the lx-* commands' Python (links into the source tree, and
    constants.py made from this config) in ``out/scripts/gdb``; False when the tree has
    none or it failed (the kernel is published without them: they are a help, not it)."""
    if not (source.path / "scripts" / "gdb" / "vmlinux-gdb.py").is_file():
        return False
    try:
        proc.run(make_argv(source, out, "scripts_gdb"), phase="build:gdb", log_path=log_path,
                 timeout=600, env=env)
    except proc.ProcessError as exc:
        log.warning("build: make scripts_gdb failed (published without gdb scripts): %s",
                    exc)
        return False
    return True


# What publishing keeps of the tree beside vmlinux (lab.kernel.symbols): the scripts
# that decode a trace, each run from the entry with the entry's vmlinux (decodecode:
# decode_stacktrace.sh disassembles a "Code:" line with it, from its own directory).
TREE_SCRIPTS = ("decode_stacktrace.sh", "decodecode", "faddr2line")


def _keep_symbols(source: SourceTree, out: Path, tmp: Path, *, gdb: bool) -> None:
    """vmlinux, the gdb scripts (dereferenced: the object tree's .py files are links
    into a source tree that the next commit's checkout rewrites) and the trace scripts."""
    shutil.copy2(out / "vmlinux", tmp / "vmlinux")
    built = out / "scripts" / "gdb"
    if gdb and (built / "linux" / "constants.py").is_file():
        shutil.copytree(built, tmp / "scripts" / "gdb", symlinks=False,
                        ignore=shutil.ignore_patterns(".*", "*.o", "*.pyc", "__pycache__",
                                                      "Makefile", "*.in"))
        shutil.copy2(source.path / "scripts" / "gdb" / "vmlinux-gdb.py",
                     tmp / "vmlinux-gdb.py")
    for name in TREE_SCRIPTS:
        if (source.path / "scripts" / name).is_file():
            (tmp / "scripts").mkdir(exist_ok=True)
            shutil.copy2(source.path / "scripts" / name, tmp / "scripts" / name)


def _publish(source: SourceTree, composed: kconfig.Composed, out: Path, *, entry: Path,
             spec_text: str, cache: Path, log_path: Path, gdb: bool = False) -> Kernel:
    release_file = out / "include" / "config" / "kernel.release"
    if not (out / IMAGE).is_file() or not release_file.is_file() or \
            not (out / "vmlinux").is_file():
        raise InfraError(f"make succeeded but {out / IMAGE}, vmlinux or kernel.release is "
                         "missing",
                         phase="build:publish", log=log_path)
    release = release_file.read_text().strip()
    atomic.clean_stale_temps(built_dir(cache))
    with atomic.temp_dir(built_dir(cache)) as tmp:
        shutil.copy2(out / IMAGE, tmp / "bzImage")
        shutil.copy2(out / ".config", tmp / "config")
        shutil.copy2(out / "System.map", tmp / "System.map")  # splat addresses → symbols
        _keep_symbols(source, out, tmp, gdb=gdb)  # gdb, decoded traces (lab.kernel.symbols)
        shutil.copy2(log_path, tmp / "build.log")
        (tmp / "fragment.config").write_text(composed.text())
        kernel = Kernel(spec=spec_text, release=release, image=entry / "bzImage",
                        modules=None, config=entry / "config", config_source="build",
                        source=source.kind,
                        variant=composed.variant, package_version=None,
                        packages=(source.identity,), vmlinux=entry / "vmlinux")
        (tmp / METADATA).write_text(kernel.to_json(entry))
        atomic.publish(tmp, entry)
    published = kernel_cache.load_entry(entry, spec=spec_text)
    if published is None:
        raise InfraError(f"{entry} has no {METADATA} after publishing", phase="build:publish")
    return published
