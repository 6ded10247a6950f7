"""`python -m lab.bench`: the benchmarks `nox -s bench` runs."""

from __future__ import annotations

import sys

from lab.bench.main import main

sys.exit(main())
