"""Entry point: ``python3 -m guest`` speaks JSON lines on stdin/stdout."""

from __future__ import annotations

import sys

from guest.protocol import main

sys.exit(main())
