"""Headless Chromium (Debian's chromium package) for the report tests: the DOM it builds."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

# Nothing but the file: no updates, no sync, no first-run pages, a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium package is missing: python -m lab.host.hostdeps chromium"
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="lab-chromium-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, check=True)


def dump_dom(page: Path) -> str:
    """The DOM Chromium built from ``page``, serialized."""
    return _run("--dump-dom", page.resolve().as_uri()).stdout


def screenshot(page: Path, png: Path, *, width: int = 1400, height: int = 1800) -> None:
    _run(f"--screenshot={png}", f"--window-size={width},{height}", page.resolve().as_uri())


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)

    def find_all(self, tag: str | None = None, *, id: str | None = None,
                 cls: str | None = None) -> list[Node]:
        out = []
        for c in self.children:
            if ((tag is None or c.tag == tag) and (id is None or c.attrs.get("id") == id)
                    and (cls is None or cls in c.attrs.get("class", "").split())):
                out.append(c)
            out += c.find_all(tag, id=id, cls=cls)
        return out

    def one(self, tag: str | None = None, *, id: str | None = None,
            cls: str | None = None) -> Node:
        found = self.find_all(tag, id=id, cls=cls)
        assert len(found) == 1, (tag, id, cls, len(found))
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(Node("#text", {}, text=data))


def parse(html: str) -> Node:
    b = _Builder()
    b.feed(html)
    return b.root
