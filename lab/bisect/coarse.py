"""The coarse pass: `lab bisect --versions` over Debian's prebuilt kernels, in version order.

Each point is a usable versioned kernel (lab.kernel.versions: the main suites
and the backports, about 30); fetching one takes seconds, building none.  The
search is a binary search over the list (lab.bisect.search.ListSearch); the
result is the last good and the first bad release, and the `lab bisect
--repo … --good vA --bad vB` command that goes on from there on a kernel tree.
Versions the lists hold but the lab cannot boot (an image without its modules)
are not points; the result names those that fall between the two releases.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from lab.bisect.decision import THRESHOLD
from lab.bisect.driver import Driver, Plan, Setup
from lab.bisect.journal import guest_of
from lab.bisect.ports import KernelBuilder, Tester, exec_reproducer
from lab.bisect.result import Result
from lab.bisect.search import ListSearch
from lab.errors import UserError
from lab.kernel.apt import Apt
from lab.kernel.catalogue import load_catalogue
from lab.kernel.deb822 import compare_versions, in_series, split_version
from lab.kernel.versions import Versioned, versioned_kernels
from lab.results import reproduce


def kernels(cache: Path) -> list[Versioned]:
    """Every versioned kernel in the lists (updated when older than a day), oldest first."""
    apt = Apt(cache, load_catalogue())
    apt.ensure_lists()
    return versioned_kernels(apt)


def _matches(k: Versioned, text: str) -> bool:
    return text in (k.package_version, k.upstream) or in_series(k.package_version, text)


def tag(version: str) -> str:
    """The upstream tag of a Debian package version: 7.3~rc7-1~exp1 → v7.3-rc7."""
    upstream = split_version(version)[1].replace("~", "-")
    return "v" + upstream


def validate(from_version: str | None, to_version: str | None, *,
             cache: Path) -> tuple[dict[str, Any], list[str]]:
    """The start record and the ordered points (package versions) from --from to --to."""
    listed = kernels(cache)
    usable = [k for k in listed if k.usable]
    if len(usable) < 2:
        raise UserError("fewer than two bootable versioned kernels in the apt lists; "
                        "`lab kernels` shows what there is")
    lo, hi = 0, len(usable) - 1
    if from_version:
        hits = [i for i, k in enumerate(usable) if _matches(k, from_version)]
        if not hits:
            raise UserError(f"--from {from_version}: no bootable versioned kernel; "
                            f"known: {', '.join(k.upstream for k in usable)}")
        lo = hits[0]
    if to_version:
        hits = [i for i, k in enumerate(usable) if _matches(k, to_version)]
        if not hits:
            raise UserError(f"--to {to_version}: no bootable versioned kernel; "
                            f"known: {', '.join(k.upstream for k in usable)}")
        hi = hits[-1]
    if lo >= hi:
        raise UserError(f"--from {usable[lo].upstream} is not older than --to "
                        f"{usable[hi].upstream}: nothing to bisect")
    points = [k.package_version for k in usable[lo:hi + 1]]
    start = {"mode": "versions", "repo": "", "good": from_version or points[0],
             "bad": to_version or points[-1], "good_point": points[0],
             "bad_point": points[-1], "points": points,
             "spec_example": f"debian:{points[-1]}",
             "unusable": [k.upstream for k in listed if not k.usable]}
    return start, points


def setup(start: dict[str, Any], plan: Plan, points: list[str], *, cache: Path,
          tester: Tester) -> Setup:
    def describe(point: str) -> str:
        return f"{split_version(point)[1]} ({point})"

    builder = KernelBuilder(lambda p: f"debian:{p}", cache=cache, variant=None)
    return Setup(start=start, plan=plan, search=ListSearch(points), builder=builder,
                 tester=tester, describe=describe, count=max(0, len(points) - 2))


def result(setup: Setup, driver: Driver, first: str, confidence: float,
           base: dict[str, Any]) -> Result:
    points: list[str] = setup.start["points"]
    i = points.index(first)
    good = [s.point for s in driver.steps if s.verdict == "good" and points.index(s.point) < i]
    last_good = max(good, key=points.index) if good else points[0]
    up_good, up_bad = split_version(last_good)[1], split_version(first)[1]
    warnings = []
    between = [v for v in setup.start.get("unusable", []) if _between(v, up_good, up_bad)]
    if between:
        warnings.append(f"listed but unbootable between them (image without modules): "
                        f"{', '.join(between)}; prebuilt kernels cannot narrow it further")
    target = setup.start.get("exec")
    command = ["lab", "bisect", "--repo", "LINUX", "--good", tag(last_good), "--bad",
               tag(first), *(["--timeout", f"{target['timeout']:g}", "--exec",
                              target["program"], *target["args"]] if target else
                             ["-k", str(setup.start["keyword"])])]
    repro = reproduce.Command(kernels=[f"debian:{first}"],  # an exact package version: pinned
                              guest=guest_of(setup.start),
                              keyword=str(setup.start["keyword"])).text()
    if target:
        repro = exec_reproducer(target, kernel=f"debian:{first}", variants=[],
                                guest=guest_of(setup.start))
    kind = "culprit" if confidence >= THRESHOLD else "inconclusive"
    message = (f"last good release {up_good}, first bad release {up_bad}" if kind == "culprit"
               else f"inconclusive: {up_bad} would be the first bad release, but the "
                    f"confidence {confidence:.2f} is below {THRESHOLD}")
    return Result(kind=kind, message=message, first_bad=first, last_good=last_good,
                  subject=f"Debian {first}", confidence=confidence, warnings=warnings,
                  reproducer=repro,
                  next_command=shlex.join(command) + "   # LINUX: a kernel tree with "
                  "the stable tags (Debian's patches are not in it)", **base)


def _between(v: str, lo: str, hi: str) -> bool:
    return compare_versions(lo, v) < 0 < compare_versions(hi, v)
