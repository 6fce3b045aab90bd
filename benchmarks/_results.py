"""Shared by the benchmark scripts: print a result and keep it (a JSON-lines row or a whole JSON file), and name
the CPU it ran on."""

from __future__ import annotations

import json
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo), or the machine type."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.machine()


def write_result(result: dict, out: Path) -> None:
    """Write ``result`` as an indented JSON file (folder made if needed) and print it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def emit(row: dict, out: Path | None) -> None:
    """Print ``row`` as one JSON line and, if ``out`` is given, append the same line to it (one write)."""
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as fh:
            fh.write(line + "\n")
