"""Install the Debian packages the lab drives, if they are missing.

Called by the nox sessions (`python -m lab.host.hostdeps PKG...`), so a fresh
machine needs no manual step.  Without root it only names what is missing, in
the one command that root (sudo) must run.
"""

from __future__ import annotations

import os
import sys

from lab import proc
from lab.errors import EXIT_USER_ERROR


def missing(packages: list[str]) -> list[str]:
    out = proc.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *packages],
                   phase="host packages", check=False, timeout=60).stdout
    installed = {line.split()[0] for line in out.splitlines()
                 if len(line.split()) > 1 and line.split()[1].startswith("ii")}
    return [p for p in packages if p not in installed]


def main(packages: list[str]) -> int:
    todo = missing(packages)
    if not todo:
        return 0
    command = ["apt-get", "install", "-y", "--no-install-recommends", *todo]
    if os.geteuid() != 0:
        # Only root installs packages; the rest of the lab runs as this user.
        print(f"lab: missing Debian packages; root must install them: sudo {' '.join(command)}",
              file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"lab: installing host packages: {' '.join(todo)}", flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    proc.run(["apt-get", "update"], phase="apt-get update", env=env, timeout=600)
    proc.run(command, phase="apt-get install", env=env, timeout=1200)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
