"""The layout's import rules, read from the source with ast (see ARCHITECTURE.md).

- lab/ flows one way: kernel <- vm <- run -> results; results is plain data
  (no pytest, no paramiko, nothing from the packages that boot or run).
- guest/ is the agent pushed into the VM: it imports nothing from lab/.
- scenarios/ are fixtures and agent ops: of lab/ they import only the agent client's type.
- No import cycle among lab/ modules, nor among guest/ modules, counting
  imports inside functions too (a lazy import hides a cycle, it does not end it).
- No Python module in lab/, guest/, scenarios/ or tests/ is over 600 lines.
- guest/ is one folder per area (guest/areas/AREA/: its ops, named AREA.*, its C); each
  C declaration has one source (the C's marked section, or the kernel's via .cdef).
- An area whose ops module keeps a Table exports its reset steps (RESET), and agent.reset
  names no other area.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Which lab packages each may import ("base" is lab's top-level modules).
ALLOWED = {
    "base": {"base"},
    "results": {"base", "results"},
    "kernel": {"base", "kernel"},
    "vm": {"base", "kernel", "results", "vm"},
    "host": {"base", "kernel", "vm", "host"},
    "run": {"base", "kernel", "vm", "results", "host", "run"},
    "bench": {"base", "kernel", "vm", "results", "host", "run", "bench"},
    # `lab shell` and `lab exec`: a run's guest, booted for one command or program.
    "inside": {"base", "kernel", "vm", "results", "host", "run", "inside"},
    # Bisection drives `lab run` (or `lab exec`); nothing but the front may depend on it.
    "bisect": {"base", "kernel", "vm", "results", "host", "run", "inside", "bisect"},
    "front": {"base", "kernel", "vm", "results", "host", "run", "bench", "inside", "bisect",
              "front"},
}
FRONT = {"lab.cli", "lab.commands", "lab.__init__"}
PACKAGES = {"kernel", "vm", "run", "results", "host", "bench", "inside", "bisect"}


def _modules(top: str) -> dict[str, Path]:
    out = {}
    for path in sorted((REPO / top).rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


LAB = _modules("lab")
GUEST = _modules("guest")
SCENARIOS = _modules("scenarios")
# What a suite may import from lab/: the typed agent client, nothing of the machinery.
SCENARIOS_MAY_IMPORT = {"lab.vm.agent"}
KNOWN = {**LAB, **GUEST}


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from lab.results import splat": the module, when it is one.
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if f"{node.module}.{a.name}" in KNOWN)
    return found


def _layer(module: str) -> str:
    if module in FRONT or module == "lab":
        return "front"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in PACKAGES else (
        parts[1] if len(parts) == 2 and parts[1] in PACKAGES else "base")


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    # "from lab import proc" names the package too; its __init__ imports nothing
    # (test_top_packages_import_nothing), so it is no edge.
    return {m: {i for i in _imports(p) if i in modules and i not in (m, "lab", "guest")}
            for m, p in modules.items()}


def test_top_packages_import_nothing() -> None:
    for name in ("lab", "guest"):
        assert _imports(KNOWN[name]) <= {"__future__"}, name


def test_every_lab_module_sits_in_a_known_layer() -> None:
    assert {_layer(m) for m in LAB} <= set(ALLOWED)
    assert "lab.results.verdict" in LAB and _layer("lab.results.verdict") == "results"


@pytest.mark.parametrize("module", sorted(LAB))
def test_lab_imports_follow_the_flow(module: str) -> None:
    mine = _layer(module)
    bad = sorted(i for i in _graph(LAB)[module] if _layer(i) not in ALLOWED[mine])
    assert not bad, f"{module} ({mine}) may not import {bad}"


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        m = todo.pop()
        for i in graph.get(m, ()):
            if i not in seen:
                seen.add(i)
                todo.append(i)
    return seen


@pytest.mark.parametrize("module", sorted(m for m in LAB if _layer(m) == "results"))
def test_results_need_no_pytest_and_no_paramiko(module: str) -> None:
    graph = _graph(LAB)
    reach = {module, *_closure(graph, module)}
    third = {i.split(".")[0] for m in reach for i in _imports(LAB[m])}
    assert not third & {"pytest", "paramiko", "_pytest"}, (module, sorted(third))


@pytest.mark.parametrize("module", sorted(GUEST))
def test_guest_imports_nothing_from_lab(module: str) -> None:
    assert not {i for i in _imports(GUEST[module]) if i == "lab" or i.startswith("lab.")}


@pytest.mark.parametrize("module", sorted(SCENARIOS))
def test_scenarios_import_only_the_agent_client_from_lab(module: str) -> None:
    found = {i for i in _imports(SCENARIOS[module]) if i == "lab" or i.startswith("lab.")}
    assert found <= SCENARIOS_MAY_IMPORT, f"{module} may not import {found - SCENARIOS_MAY_IMPORT}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for i in sorted(graph[m]):
            if state.get(i) == 1:
                return [*stack[stack.index(i):], i]
            if i not in state and (found := visit(i)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


@pytest.mark.parametrize("name, modules", [("lab", LAB), ("guest", GUEST)])
def test_no_import_cycles(name: str, modules: dict[str, Path]) -> None:
    graph = _graph(modules)
    assert _cycle(graph) is None, f"import cycle in {name}/: {' -> '.join(_cycle(graph) or [])}"


def test_the_checks_can_fail() -> None:
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _layer("lab.results.splat") == "results" and _layer("lab.proc") == "base"
    assert "lab.vm.vm" not in ALLOWED["results"] and "vm" not in ALLOWED["results"]
    assert _layer("lab.bisect.driver") == "bisect"
    assert all("bisect" not in ALLOWED[layer] for layer in ALLOWED if layer not in (
        "bisect", "front"))


# Past this a module holds two concepts; it is split by what it holds.
MAX_LINES = 600
SIZED = ("lab", "guest", "scenarios", "tests")


def _too_long(paths: list[Path], limit: int = MAX_LINES) -> list[str]:
    counts = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in paths}
    return [f"{p.relative_to(REPO)}: {n} lines" for p, n in counts.items() if n > limit]


def test_no_module_is_over_600_lines() -> None:
    paths = [p for top in SIZED for p in sorted((REPO / top).rglob("*.py"))]
    assert len(paths) > 100
    long = _too_long(paths)
    assert not long, f"over {MAX_LINES} lines, split each by what it holds: {long}"
    assert _too_long([Path(__file__)], limit=10)  # the check can fail
# ---------------------------------------------------------------- guest/: one area, one folder

AREAS = REPO / "guest" / "areas"


def _area_dirs() -> list[Path]:
    return sorted(d for d in AREAS.iterdir() if d.is_dir() and d.name != "__pycache__")


def test_guest_areas_are_folders_and_nothing_else_holds_ops_or_c() -> None:
    """Each area is one folder of guest/areas/ with its ops module; no ops module, C
    source or declaration lives outside one (but the boot's own handoff.c)."""
    from guest.registry import areas

    assert [d.name for d in _area_dirs()] == areas()
    for d in _area_dirs():
        assert (d / "__init__.py").is_file() and (d / "ops.py").is_file(), d
    stray = [p.relative_to(REPO) for p in (REPO / "guest").rglob("*")
             if p.suffix in {".c", ".h", ".cdef"} and AREAS not in p.parents
             and p.name != "handoff.c"]
    stray += [p.relative_to(REPO) for p in (REPO / "guest").glob("ops_*.py")]
    assert not stray


def _op_names(path: Path) -> list[str]:
    """The op names an ``OPS = {...}`` of ``path`` holds (string keys)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "OPS" for t in targets) \
                    and isinstance(node.value, ast.Dict):
                names += [k.value for k in node.value.keys
                          if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return names


@pytest.mark.parametrize("area", [d.name for d in _area_dirs()])
def test_an_area_holds_its_ops_and_its_c_with_declarations(area: str) -> None:
    """Every op of an area's folder is named after it; its C declares what Python uses
    once: its own structs and functions in the C (marked), the kernel's names in .cdef
    files, whose structs the compiler lays out (``...;``) and which declare no function."""
    from guest import build_ffi

    d = AREAS / area
    names = [n for p in sorted(d.glob("*.py")) for n in _op_names(p)]
    assert names and all(n.startswith(f"{area}.") for n in names), names
    if list(d.glob("*.c")):
        assert build_ffi.cdef_of(d).strip(), f"{area}: C without declarations"
    for cdef in d.glob("*.cdef"):
        text = cdef.read_text()
        for struct in re.findall(r"struct \w+ \{.*?\};", text, re.S):
            assert "...;" in struct, f"{cdef.name}: a struct of the lab's own: {struct[:60]}"
        assert not re.search(r"^\s*[a-z][\w\s*]*\b\w+\s*\([^)]*\)\s*;", text, re.M), \
            f"{cdef.name} declares a function: it goes in the C's marked section"


def test_the_declarations_are_the_c_s_own(tmp_path: Path,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    """The cdef's own part is read out of the C (guest/build_ffi.py) and compiled there: a
    copy of an area builds and Python sees its struct whole; a marked prototype that
    differs from its definition, or a .cdef struct naming a field the C lacks, fails the
    build."""
    import shutil

    from cffi import VerificationError

    from guest import build_ffi

    own = ("/* cdef: begin */\nstruct lab_own { int a; long b; };\n"
           "static long lab_own_b(struct lab_own *o);\n/* cdef: end */\n"
           "static long lab_own_b(struct lab_own *o) { return o->b; }\n")

    def area(name: str, *edits: tuple[str, str, str]) -> Path:
        d = tmp_path / name
        shutil.copytree(AREAS / "sys", d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        (d / "own.c").write_text(own)
        for file, old, new in edits:
            assert old in (d / file).read_text()
            (d / file).write_text((d / file).read_text().replace(old, new))
        return d

    so = build_ffi.build(tmp_path / "ok", [area("same")], "_lab_same")
    spec = importlib.util.spec_from_file_location("_lab_same", so)
    assert spec is not None and spec.loader is not None
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    assert [f for f, _ in ext.ffi.typeof("struct lab_own").fields] == ["a", "b"]
    mismatched = {
        "proto": [("own.c", "lab_own_b(struct lab_own *o);", "lab_own_b(char *o);")],
        "field": [("own.c", "/* cdef: begin */\nstruct lab_own { int a; long b; };",
                   "struct lab_own { int a; long b; };\n/* cdef: begin */"),
                  ("raw.cdef", "#define __NR_io_setup ...",
                   "#define __NR_io_setup ...\nstruct lab_own { int c; ...; };")],
    }
    for name, edits in mismatched.items():
        capfd.readouterr()
        with pytest.raises(VerificationError):
            build_ffi.build(tmp_path / name, [area(name, *edits)], f"_lab_{name}")
        assert "lab_own" in capfd.readouterr().err  # the compiler names it


def _holds_table(tree: ast.Module) -> bool:
    """Whether a module's top level keeps a ``Table`` (guest/objects.py) of objects."""
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) \
                and value.func.id == "Table":
            return True
    return False


def _exports(tree: ast.Module, name: str) -> bool:
    targets = [t for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
               for t in (node.targets if isinstance(node, ast.Assign) else [node.target])]
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


def _areas_named(tree: ast.Module, names: set[str]) -> set[str]:
    """The areas of ``names`` a module names: imports of their folders, or their names
    as strings (``loaded("uring")``)."""
    found = {node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and node.value in names}
    for node in ast.walk(tree):
        modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found |= {m.split(".")[2] for m in modules
                  if m.startswith("guest.areas.") and m.split(".")[2] in names}
    return found


@pytest.mark.parametrize("area", [d.name for d in _area_dirs()])
def test_an_area_holding_objects_exports_its_reset(area: str) -> None:
    """An area whose ops module keeps a Table of objects exports its reset steps
    (``RESET``, guest/objects.py), which agent.reset finds without naming the area."""
    tree = ast.parse((AREAS / area / "ops.py").read_text())
    assert not _holds_table(tree) or _exports(tree, "RESET"), \
        f"guest/areas/{area}/ops.py holds a Table but exports no RESET (guest/objects.py)"


def test_agent_reset_names_no_area() -> None:
    """agent.reset iterates over the areas the registry loaded: a new area with objects
    is reset without an edit to guest/areas/agent/."""
    others = {d.name for d in _area_dirs()} - {"agent"}
    assert not _areas_named(ast.parse((AREAS / "agent" / "ops.py").read_text()), others)
    # The checks can fail.
    assert _areas_named(ast.parse('from guest.areas.fs import ops\nloaded("uring")'),
                        others) == {"fs", "uring"}
    held = ast.parse('from guest.objects import Table\nJOBS: Table[int] = Table("job")')
    assert _holds_table(held) and not _exports(held, "RESET")
