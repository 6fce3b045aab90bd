"""Shared by the benchmark scripts: print a result and append it to a JSON-lines file."""

from __future__ import annotations

import json
from pathlib import Path


def emit(row: dict, out: Path | None) -> None:
    """Print ``row`` as one JSON line and, if ``out`` is given, append the same line to it (one write)."""
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as fh:
            fh.write(line + "\n")
