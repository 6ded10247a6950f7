"""The sdist and the wheel carry every file the lab needs (derived from `git ls-files`)."""

from __future__ import annotations

import ast
import stat
import zipfile
from pathlib import Path

import pytest
from dists import (
    EXECUTABLE,
    PACKAGES,
    REPO,
    build,
    check_sdist,
    expected_in_wheel,
    tracked,
    unplaced,
    wheel_files,
)

if not (REPO / ".git").exists():
    pytest.skip("not a git checkout: what must be packaged is read from git ls-files",
                allow_module_level=True)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build(tmp_path_factory.mktemp("dist"))


def test_every_tracked_file_is_packaged_or_left_out_on_purpose() -> None:
    assert not unplaced(tracked()), (
        "new top-level files: package them (pyproject.toml, tests/dists.py MAPPED) or "
        "name them in tests/dists.py LEFT_OUT")


def test_the_wheel_holds_every_file_of_the_lab(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    files = wheel_files(wheel)
    want = expected_in_wheel(tracked())
    # Not only Python: the catalogue, the fragments, the C sources, boot.sh, templates.
    assert {"lab/data/kernels/debian.toml", "guest/handoff.c", "guest/boot.sh",
            "lab/data/known-issues.toml"} <= set(want.values())
    missing = sorted(f"{src} (as {dest})" for src, dest in want.items() if dest not in files)
    assert not missing, f"{wheel.name} lacks {missing}"
    for path in EXECUTABLE:
        assert files[path] & stat.S_IXUSR, f"{path} is not executable in {wheel.name}"


def test_the_wheel_adds_no_other_import_names(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    files = wheel_files(wheel)
    tops = {f.split("/", 1)[0] for f in files}
    info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - info == set(PACKAGES)
    # Built things and bytecode stay out (the agent builds its own, per interpreter).
    assert not [f for f in files if f.endswith((".so", ".pyc")) or "__pycache__" in f]
    (dist_info,) = info
    assert f"{dist_info}/licenses/LICENSE" in files
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(f"{dist_info}/METADATA").decode()
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert "License-Expression: GPL-2.0-only" in metadata
    assert "lab = lab.cli:main" in entry_points


def test_the_sdist_holds_every_tracked_file(dists: tuple[Path, Path]) -> None:
    sdist, _ = dists
    check_sdist(sdist, tracked())


def _nox_list(name: str) -> list[str]:
    """A list of strings that noxfile.py assigns to ``name`` (read, not imported)."""
    for node in ast.parse((REPO / "noxfile.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return [str(ast.literal_eval(e)) for e in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError(f"noxfile.py assigns no {name}")


def test_readme_install_line_is_what_the_lab_needs() -> None:
    """The README's one line for root names every package `nox -s lab` would install, and
    the venv module its install commands use."""
    line = next(ln.strip() for ln in (REPO / "README.md").read_text().splitlines()
                if ln.startswith("    sudo apt-get install -y --no-install-recommends qemu"))
    named = line.split()[5:]
    assert set(named) == {*_nox_list("HOST_PACKAGES"), "python3-venv"}
